"""The journal keeps intents and outcomes, and counts failed attempts across restarts."""

from __future__ import annotations

import contextlib
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from reconciler.core import plan
from reconciler.core.state import Operation
from reconciler.engine import journal, state_dir

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
FAILOVER = plan.Action("finance", "sql01", Operation.PLANNED_FAILOVER, "rtm")


def double(failures: int) -> float:
    return 2.0 * 2.0 ** (failures - 1)


def fail_once(j: journal.Journal, revision: str, at: datetime, error: str = "disk busy") -> None:
    entry = j.record_intent(FAILOVER, revision, at).id
    j.record_started(entry, f"job-{at.timestamp()}", at)
    j.record_outcome(entry, journal.FAILED, at, error)


def test_failed_attempts_survive_a_restart(tmp_path: Path) -> None:
    j = journal.Journal(tmp_path)
    fail_once(j, "rev1", T0)
    fail_once(j, "rev1", T0 + timedelta(seconds=5), "host down")
    j.close()
    attempts = journal.Journal(tmp_path).attempts("rev1", double)
    got = attempts[("sql01", Operation.PLANNED_FAILOVER)]
    assert got.failures == 2
    assert got.last_error == "host down"
    assert got.retry_at == T0 + timedelta(seconds=5 + 4)


def test_attempts_are_counted_per_revision(tmp_path: Path) -> None:
    j = journal.Journal(tmp_path)
    fail_once(j, "rev1", T0)
    assert j.attempts("rev2", double) == {}


def test_a_success_resets_the_failure_count(tmp_path: Path) -> None:
    j = journal.Journal(tmp_path)
    fail_once(j, "rev1", T0)
    entry = j.record_intent(FAILOVER, "rev1", T0).id
    j.record_outcome(entry, journal.SUCCEEDED, T0)
    assert j.attempts("rev1", double) == {}


def test_open_entries_are_intents_and_running_jobs(tmp_path: Path) -> None:
    j = journal.Journal(tmp_path)
    intent = j.record_intent(FAILOVER, "rev1", T0).id
    running = j.record_intent(FAILOVER, "rev1", T0).id
    j.record_started(running, "job-7", T0)
    done = j.record_intent(FAILOVER, "rev1", T0).id
    j.record_outcome(done, journal.SUCCEEDED, T0)
    assert [(e.id, e.job_id, e.result) for e in j.open_entries()] == [
        (intent, None, journal.INTENDED),
        (running, "job-7", journal.RUNNING),
    ]


def defer_once(
    j: journal.Journal, revision: str, at: datetime, retry_after: float | None = None
) -> None:
    entry = j.record_intent(FAILOVER, revision, at).id
    j.record_deferred(entry, at, "timed out", retry_after)


def test_a_deferred_call_backs_off_without_spending_an_attempt(tmp_path: Path) -> None:
    j = journal.Journal(tmp_path)
    defer_once(j, "rev1", T0)
    defer_once(j, "rev1", T0 + timedelta(seconds=2))
    j.close()
    got = journal.Journal(tmp_path).attempts("rev1", double)[("sql01", Operation.PLANNED_FAILOVER)]
    assert (got.failures, got.last_error) == (0, "timed out")
    assert got.retry_at == T0 + timedelta(seconds=2 + 4)


def test_a_throttled_call_waits_as_long_as_the_fabric_asked(tmp_path: Path) -> None:
    j = journal.Journal(tmp_path)
    defer_once(j, "rev1", T0, retry_after=30.0)
    got = j.attempts("rev1", double)[("sql01", Operation.PLANNED_FAILOVER)]
    assert got.retry_at == T0 + timedelta(seconds=30)


def test_after_a_failure_a_deferral_keeps_the_failure_and_the_later_retry(tmp_path: Path) -> None:
    j = journal.Journal(tmp_path)
    fail_once(j, "rev1", T0, "host down")
    fail_once(j, "rev1", T0 + timedelta(seconds=1), "host down")
    defer_once(j, "rev1", T0 + timedelta(seconds=2))
    got = j.attempts("rev1", double)[("sql01", Operation.PLANNED_FAILOVER)]
    assert (got.failures, got.last_error) == (2, "host down")
    assert got.retry_at == T0 + timedelta(seconds=1 + 4)


def test_a_refused_call_neither_counts_nor_backs_off(tmp_path: Path) -> None:
    j = journal.Journal(tmp_path)
    entry = j.record_intent(FAILOVER, "rev1", T0).id
    j.record_outcome(entry, journal.REFUSED, T0, "a job is running on this VM")
    assert j.attempts("rev1", double) == {}
    assert j.entries()[0].result == journal.REFUSED


def test_a_journal_from_before_deferrals_gains_the_column(tmp_path: Path) -> None:
    j = journal.Journal(tmp_path)
    fail_once(j, "rev1", T0)
    j.close()
    with contextlib.closing(sqlite3.connect(state_dir.journal_path(tmp_path))) as db:
        db.execute("ALTER TABLE actions DROP COLUMN retry_after")
        db.commit()
    reopened = journal.Journal(tmp_path)
    defer_once(reopened, "rev1", T0 + timedelta(seconds=1), retry_after=9.0)
    got = reopened.attempts("rev1", double)[("sql01", Operation.PLANNED_FAILOVER)]
    assert (got.failures, got.retry_at) == (1, T0 + timedelta(seconds=10))


def test_each_intent_gets_an_intent_id_of_its_own_and_older_rows_have_none(
    tmp_path: Path,
) -> None:
    j = journal.Journal(tmp_path)
    fail_once(j, "rev1", T0)
    j.close()
    with contextlib.closing(sqlite3.connect(state_dir.journal_path(tmp_path))) as db:
        db.execute("ALTER TABLE actions DROP COLUMN intent_id")  # a journal from before them
        db.commit()
    reopened = journal.Journal(tmp_path)
    first = reopened.record_intent(FAILOVER, "rev1", T0)
    second = reopened.record_intent(FAILOVER, "rev1", T0)
    # Unique beyond this file: a state dir made again counts its rows from 1 again.
    again = journal.Journal(tmp_path / "again").record_intent(FAILOVER, "rev1", T0)
    ids = [first.intent_id, second.intent_id, again.intent_id]
    assert all(i is not None and len(i) == 32 for i in ids)
    assert len(set(ids)) == 3
    assert again.id == reopened.entries()[0].id == 1  # row ids of two files collide
    assert [e.intent_id for e in reopened.entries()] == [None, first.intent_id, second.intent_id]
    assert reopened.entries()[1] == first


def test_an_unsettled_call_stays_open_and_holds_its_vm_under_its_revision_only(
    tmp_path: Path,
) -> None:
    j = journal.Journal(tmp_path)
    entry = j.record_unsettled(j.record_intent(FAILOVER, "rev1", T0), "cannot tell")
    assert j.open_entries() == [entry]
    assert (entry.result, entry.error) == (journal.UNSETTLED, "cannot tell")
    assert j.unsettled("rev1") == {"sql01": "cannot tell"}
    assert j.unsettled("rev2") == {}
    assert j.abandon_open(T0, "the fabric was replaced") == 1
    assert j.unsettled("rev1") == {}


def test_a_reader_beside_a_busy_writer_opens_without_waiting_for_its_lock(tmp_path: Path) -> None:
    """`drctl status` beside a daemon in the middle of a write: it reads, it never waits out
    the busy timeout for the write lock (seen failing under load before readers skipped it)."""
    writer = journal.Journal(tmp_path)
    fail_once(writer, "rev1", T0)
    busy = sqlite3.connect(state_dir.journal_path(tmp_path), isolation_level=None)
    busy.execute("BEGIN IMMEDIATE")  # the daemon's write transaction, held
    try:
        reader = journal.Journal(tmp_path, writer=False, busy_timeout=0.1)
        attempts = reader.attempts("rev1", double)
        assert attempts[("sql01", Operation.PLANNED_FAILOVER)].failures == 1
        reader.close()
    finally:
        busy.execute("ROLLBACK")
        busy.close()
        writer.close()
