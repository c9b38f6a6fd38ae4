"""A damaged, foreign, replaced, busy or lost journal: refused with what to do, or warned about.

Real SQLite files in a temporary state dir; what is asserted is what drctl
says (the error's one line, the warning) and what it leaves on disk (the
damaged file untouched, a copy of it as evidence, the state dir's record).
"""

from __future__ import annotations

import multiprocessing
import shutil
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import builders
import disk
import pytest

from reconciler import errors
from reconciler.core import plan
from reconciler.core.state import Operation
from reconciler.engine import execute, journal, journal_file
from reconciler.engine import state_dir as layout
from reconciler.kits.clock import VirtualClock

AT = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def action(vm: str, operation: Operation) -> plan.Action:
    return plan.Action("finance", vm, operation, None)


def used_journal(state: Path, intents: int = 3) -> Path:
    """A journal drctl wrote `intents` actions into, closed (checkpointed); its path."""
    j = journal.Journal(state)
    for n in range(intents):
        j.record_intent(action(f"vm{n:02d}", Operation.STOP_VM), "rev1", AT)
    j.close()
    return layout.journal_path(state)


def refusal(state: Path) -> str:
    with pytest.raises(errors.StateDirError) as caught:
        journal.Journal(state)
    assert caught.value.exit_code == errors.EXIT_RUNTIME
    message = str(caught.value)
    assert "\n" not in message  # one line
    return message


def test_a_journal_of_garbage_is_refused_and_a_copy_kept_as_evidence(tmp_path: Path) -> None:
    path = layout.journal_path(tmp_path)
    garbage = bytes(range(256)) * 32
    path.write_bytes(garbage)
    message = refusal(tmp_path)
    assert f"the journal {path} is damaged (file is not a database)" in message
    assert "drctl acts on nothing until it is dealt with" in message
    assert "check the fabric's job list (`drctl fabric show`" in message
    (kept,) = tmp_path.glob("journal.db.damaged-*")
    assert f"A copy is kept at {kept}" in message
    assert kept.read_bytes() == garbage
    assert path.read_bytes() == garbage  # never started afresh over it
    refusal(tmp_path)
    assert len(list(tmp_path.glob("journal.db.damaged-*"))) == 1  # one copy per content


def test_a_journal_cut_short_is_refused_as_damaged(tmp_path: Path) -> None:
    path = used_journal(tmp_path, intents=200)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    message = refusal(tmp_path)
    assert "is damaged (database disk image is malformed)" in message
    (kept,) = tmp_path.glob("journal.db.damaged-*")
    assert kept.read_bytes() == whole[: len(whole) // 2]


def test_a_directory_at_the_journal_path_is_refused(tmp_path: Path) -> None:
    path = layout.journal_path(tmp_path)
    path.mkdir()
    message = refusal(tmp_path)
    assert message.startswith(f"the journal {path} is a directory, not drctl's journal: move it")


def test_another_program_s_database_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    path = layout.journal_path(tmp_path)
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    before = path.read_bytes()
    message = refusal(tmp_path)
    assert "is not drctl's journal (an SQLite database with tables invoices)" in message
    assert path.read_bytes() == before
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA application_id = 42")
    assert "(an SQLite database with application id 0x2a)" in refusal(tmp_path)


def test_a_journal_replaced_while_drctl_was_stopped_is_refused_until_accepted(
    tmp_path: Path,
) -> None:
    ours, other = tmp_path / "ours", tmp_path / "other"
    used_journal(ours, intents=4)
    used_journal(other, intents=1)
    shutil.copyfile(layout.journal_path(other), layout.journal_path(ours))
    message = refusal(ours)
    assert "is not the one this state dir last used" in message
    assert "with 4 actions): it was replaced while drctl was stopped" in message
    assert f"then remove {layout.journal_record_path(ours)}" in message
    layout.journal_record_path(ours).unlink()  # the operator accepts this journal
    accepted = journal.Journal(ours)
    assert [e.vm for e in accepted.entries()] == ["vm00"]
    assert accepted.lost is None


def test_a_journal_written_before_journals_had_ids_is_taken_as_it_is(tmp_path: Path) -> None:
    path = layout.journal_path(tmp_path)
    with sqlite3.connect(path) as db:  # an older drctl's journal: no id, application id 0
        db.execute(
            "CREATE TABLE actions (id INTEGER PRIMARY KEY AUTOINCREMENT, plan TEXT NOT NULL, "
            "vm TEXT NOT NULL, operation TEXT NOT NULL, target_site TEXT, revision TEXT NOT "
            "NULL, intended_at TEXT NOT NULL, started_at TEXT, finished_at TEXT, job_id TEXT, "
            "result TEXT NOT NULL DEFAULT 'intended', error TEXT, data_loss_seconds REAL)"
        )
        db.execute(
            "INSERT INTO actions (plan, vm, operation, revision, intended_at) "
            "VALUES ('finance', 'sql01', 'StopVM', 'rev0', ?)",
            (AT.isoformat(),),
        )
    opened = journal.Journal(tmp_path)
    assert [e.vm for e in opened.entries()] == ["sql01"]
    assert opened.lost is None
    assert journal_file.read_record(tmp_path) is not None
    opened.close()
    assert journal.Journal(tmp_path).lost is None


def test_a_reader_never_writes_the_state_dir_s_record(tmp_path: Path) -> None:
    used_journal(tmp_path)
    layout.journal_record_path(tmp_path).unlink()
    journal.Journal(tmp_path, writer=False).close()
    assert not layout.journal_record_path(tmp_path).exists()


@pytest.mark.parametrize("how", ["deleted", "truncated to zero bytes"])
def test_a_journal_lost_while_drctl_was_stopped_is_used_with_a_loud_warning(
    tmp_path: Path, how: str
) -> None:
    path = used_journal(tmp_path, intents=5)
    record = journal_file.read_record(tmp_path)
    assert record is not None
    if how == "deleted":
        path.unlink()
    else:
        path.write_bytes(b"")
    opened = journal.Journal(tmp_path)
    assert opened.lost == (
        f"the journal {path} is new, but this state dir last used journal {record.journal_id} "
        "with 5 actions: it was deleted, truncated or lost its -wal file while drctl was stopped"
    )
    warning = journal_file.lost_warning(opened.lost)
    assert "audit, git notes and retry budgets do not know what happened" in warning
    assert "a backup that took the -wal file too" in warning
    opened.close()
    assert journal.Journal(tmp_path).lost is None  # said once: the record follows the new one


WRITE_AND_DIE = """
import os, sys
from datetime import UTC, datetime
from pathlib import Path
from reconciler.core import plan
from reconciler.core.state import Operation
from reconciler.engine import journal
j = journal.Journal(Path(sys.argv[1]))
for n in range(int(sys.argv[2])):
    late = plan.Action("finance", f"late{n}", Operation.STOP_VM, None)
    j.record_intent(late, "rev2", datetime.now(UTC))
os._exit(0)  # killed: no checkpoint, the newest records only in journal.db-wal
"""


def test_a_journal_whose_wal_was_deleted_is_used_with_a_loud_warning(tmp_path: Path) -> None:
    used_journal(tmp_path, intents=3)  # checkpointed into journal.db
    subprocess.run(
        [sys.executable, "-c", WRITE_AND_DIE, str(tmp_path), "4"], check=True, timeout=60
    )
    wal = layout.journal_path(tmp_path).with_name("journal.db-wal")
    assert wal.stat().st_size > 0
    wal.unlink()
    opened = journal.Journal(tmp_path)
    assert opened.lost is not None
    # The record is noted at most once a second: the killed writer's first intent is in it.
    assert "holds 3 actions, but drctl had written 4 into it: its newest records are gone" in (
        opened.lost
    )
    assert [e.vm for e in opened.entries()] == ["vm00", "vm01", "vm02"]


def test_a_backup_of_journal_db_alone_misses_what_only_the_wal_held(tmp_path: Path) -> None:
    """Why the README says a backup takes the -wal file too, or follows a checkpoint."""
    state, restored = tmp_path / "state", tmp_path / "restored"
    used_journal(state, intents=2)
    subprocess.run([sys.executable, "-c", WRITE_AND_DIE, str(state), "3"], check=True, timeout=60)
    restored.mkdir()
    shutil.copyfile(layout.journal_path(state), layout.journal_path(restored))  # no -wal
    shutil.copyfile(layout.journal_record_path(state), layout.journal_record_path(restored))
    lost = journal.Journal(restored).lost
    assert lost is not None
    assert "holds 2 actions, but drctl had written 3" in lost
    whole = tmp_path / "whole"
    whole.mkdir()
    for name in ("journal.db", "journal.db-wal", "journal.id"):
        shutil.copyfile(state / name, whole / name)
    complete = journal.Journal(whole)
    assert complete.lost is None
    assert len(complete.entries()) == 5


def test_a_journal_locked_by_another_process_is_busy_with_the_reason(tmp_path: Path) -> None:
    used_journal(tmp_path)
    j = journal.Journal(tmp_path, busy_timeout=0.1)
    with disk.journal_locked(layout.journal_path(tmp_path)):
        with pytest.raises(errors.JournalBusyError) as caught:
            j.record_intent(action("sql01", Operation.STOP_VM), "rev1", AT)
        assert str(caught.value).startswith(
            f"the journal {layout.journal_path(tmp_path)} is locked by another process "
            "(database is locked): drctl waits for it and starts nothing until it can journal"
        )
        assert len(j.entries()) == 3  # reads go on
    j.record_intent(action("sql01", Operation.STOP_VM), "rev1", AT)  # and writes, once released
    assert len(j.entries()) == 4


def test_apply_stops_with_the_refusal_when_the_journal_takes_no_more_writes(
    tmp_path: Path,
) -> None:
    """Intent before call: the first intent that cannot be journaled starts nothing (exit 3)."""
    clock = VirtualClock()
    fabric = builders.sim_fabric(
        tmp_path / "fabric", builders.inventory(builders.inventory_vm("sql01", "ams")), clock
    )
    with disk.small_tmpfs(tmp_path / "state") as state:
        executor = execute.Executor(fabric, journal.Journal(state), clock)
        disk.fill(state)
        with pytest.raises(errors.StateWriteError) as caught:
            execute.apply(executor, builders.desired(builders.want("sql01", "rtm")), "rev1", 60)
        assert str(caught.value).startswith(f"cannot write {layout.journal_path(state)}: ")
        assert "database or disk is full" in str(caught.value)
        executor.journal.close()
    assert fabric.list_jobs() == []


def _open_at_once(state_dir: str, start: Any) -> None:
    start.wait()
    journal.Journal(Path(state_dir)).close()


def test_drctls_that_open_a_new_journal_at_the_same_moment_all_succeed(tmp_path: Path) -> None:
    """A `drctl status` beside a daemon that is making the journal: one id, no refusal
    (it was "UNIQUE constraint failed: journal_meta.key", exit 3, seen in CI, and then
    "database is locked" from the change into WAL mode, which SQLite does not wait for)."""
    context = multiprocessing.get_context("fork")
    for attempt in range(60):
        state = tmp_path / f"state{attempt}"
        state.mkdir()
        start = context.Barrier(8)
        workers = [
            context.Process(target=_open_at_once, args=(str(state), start)) for _ in range(8)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(30)
        assert [w.exitcode for w in workers] == [0] * 8
