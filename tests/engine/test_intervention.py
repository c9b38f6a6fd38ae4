"""`drctl retry`'s record in the journal: the attempts it cleared count nothing, in SQLite and
in etcd (a real member on 127.0.0.1), and nothing it did not clear is forgotten."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import etcdproc
import pytest

from reconciler.core import plan
from reconciler.core.state import Operation
from reconciler.engine import (
    etcd_gateway,
    intervention,
    journal,
    journal_backend,
    journal_etcd,
)
from reconciler.engine.lease import etcd as election_

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
REV = "rev1"


def failover(vm: str) -> plan.Action:
    return plan.Action("finance", vm, Operation.PLANNED_FAILOVER, "rtm", source_site="ams")


def backoff(failures: int) -> float:
    return 2.0 * failures


def fail(history: journal_backend.Backend, vm: str, at: datetime, rev: str = REV) -> None:
    entry = history.record_intent(failover(vm), rev, at)
    history.record_started(entry.id, f"job-{vm}-{at.timestamp()}", at)
    history.record_outcome(entry.id, journal.FAILED, at, "disk busy")


def retry(history: journal_backend.Backend, *vms: str, rev: str = REV) -> intervention.Intervention:
    spent = (("PlannedFailover", 3),)
    return history.record_intervention(
        intervention.Intervention(
            intervention.RETRY,
            rev,
            "alice",
            "ops1",
            T0 + timedelta(minutes=1),
            tuple(("finance", vm, spent) for vm in vms),
        )
    )


class Journals:
    """The journal the daemon writes, and the one `drctl retry` writes its record to."""

    def __init__(self, leader: journal_backend.Backend, person: journal_backend.Backend) -> None:
        self.leader = leader
        self.person = person


@pytest.fixture(params=["sqlite", "etcd"])
def journals(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Journals]:
    if request.param == "sqlite":
        # The daemon's writer, and `drctl retry`'s (a reader of intents) on the same file.
        yield Journals(journal.Journal(tmp_path), journal.Journal(tmp_path, writer=False))
        return
    with etcdproc.running(tmp_path / "etcd", 1) as cluster:
        target = etcd_gateway.parse_target(cluster.url())
        gateway = etcd_gateway.Gateway(target.endpoints)
        election = election_.Election(gateway, target.prefix, "ams", 3)
        election.tick()
        leader = journal_etcd.EtcdJournal(gateway, target, election.fence, election.lost)
        try:
            # `drctl retry` holds no lease: a journal that reads only, but for its record.
            yield Journals(leader, journal_etcd.EtcdJournal(gateway, target))
        finally:
            gateway.close()


def test_a_retry_clears_the_failed_attempts_of_its_vms_under_its_revision_only(
    journals: Journals,
) -> None:
    history = journals.leader
    for n in range(3):
        fail(history, "sql01", T0 + timedelta(seconds=n))
        fail(history, "web01", T0 + timedelta(seconds=n))
        fail(history, "sql01", T0 + timedelta(seconds=n), rev="rev0")
    retry(journals.person, "sql01")
    # The daemon's own journal (never refreshed in etcd) sees the record at its next pass.
    attempts = history.attempts(REV, backoff)
    assert ("sql01", Operation.PLANNED_FAILOVER) not in attempts
    assert attempts[("web01", Operation.PLANNED_FAILOVER)].failures == 3
    assert history.attempts("rev0", backoff)[("sql01", Operation.PLANNED_FAILOVER)].failures == 3
    # A failure after the retry spends the new budget.
    fail(history, "sql01", T0 + timedelta(minutes=2))
    assert history.attempts(REV, backoff)[("sql01", Operation.PLANNED_FAILOVER)].failures == 1


def test_an_attempt_still_running_at_the_retry_counts_when_it_fails_after_it(
    journals: Journals,
) -> None:
    history = journals.leader
    for n in range(2):
        fail(history, "sql01", T0 + timedelta(seconds=n))
    running = history.record_intent(failover("sql01"), REV, T0 + timedelta(seconds=5))
    history.record_started(running.id, "job-running", T0 + timedelta(seconds=5))
    kept = retry(journals.person, "sql01")
    assert kept.still_open == {running.id}
    history.record_outcome(running.id, journal.FAILED, T0 + timedelta(minutes=2), "host down")
    got = history.attempts(REV, backoff)[("sql01", Operation.PLANNED_FAILOVER)]
    assert (got.failures, got.last_error) == (1, "host down")


def test_the_record_reads_back_as_kept_for_the_audit(journals: Journals) -> None:
    fail(journals.leader, "sql01", T0)
    kept = retry(journals.person, "sql01", "web01")
    asked = journals.person.record_intervention(
        intervention.Intervention(
            intervention.RECONCILE, REV, "bob", "ops2", T0, detail="SIGUSR1 to the daemon, pid 7"
        )
    )
    assert journals.leader.interventions() == [kept, asked]
    cleared = "attempts cleared by alice@ops1 at 2026-11-26T12:01:00+00:00"
    assert list(kept.lines("web01")) == [f"{cleared} (drctl retry: 3 failed PlannedFailover)"]
    requested = "reconcile requested by bob@ops2 at 2026-11-26T12:00:00+00:00"
    assert list(asked.lines()) == [f"{requested} (SIGUSR1 to the daemon, pid 7)"]
