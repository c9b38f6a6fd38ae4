"""The daemon on a damaged state dir: it keeps running, starts nothing it cannot journal,
says so (log, `drctl_state_writable`, `drctl_journal_usable`, its status), and goes on by
itself once the state dir can be used again; never an operation twice, never a record lost.

Passes on a virtual clock, as tests/daemon/test_loop.py; the simulated fabric lives
outside the state dir (as a real one does) where the state dir is a small tmpfs that
fills up or a directory made read-only (tests/disk.py).
"""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import disk
import pytest

from reconciler.cli import main as cli
from reconciler.daemon import loop
from reconciler.engine import execute, journal, metrics
from reconciler.engine import state_dir as layout
from reconciler.fabric.sim import inventory
from reconciler.fabric.sim import provider as sim
from reconciler.kits.clock import VirtualClock

PLAN = """\
apiVersion: drctl/v1
kind: RecoveryPlan
metadata: {name: finance}
spec:
  sites: [ams, rtm]
  defaults: {activeSite: SITE}
  policy: {commitAfterSeconds: 0}
  groups:
    - {name: db, vms: [sql01]}
    - {name: web, after: [db], vms: [web01]}
  vms:
    - name: sql01
    - name: web01
"""

INVENTORY = """\
sites: [ams, rtm]
vms:
  - {name: sql01, activeSite: ams, replication: ams->rtm}
  - {name: web01, activeSite: ams, replication: ams->rtm}
timings: {plannedFailover: 3, commit: 1, reverseReplicate: 2, stopVM: 1, replicationInterval: 5}
"""


@pytest.fixture
def said() -> Iterator[list[str]]:
    """What the daemon logs, line by line (its logger does not propagate once configured)."""
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    handler = Keep()
    logger = logging.getLogger("drctl")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


class Setup:
    def __init__(self, tmp_path: Path, state: Path | None = None, *, outside: bool = True) -> None:
        """A daemon on `state` (tmp_path/state); the fabric outside it unless `outside` False."""
        self.clock = VirtualClock()
        self.daemon: loop.Daemon | None = None
        self.specs = tmp_path / "specs"
        self.specs.mkdir()
        self.state = state or tmp_path / "state"
        self.want("ams")
        (tmp_path / "inv.yaml").write_text(INVENTORY)
        where = tmp_path / "fabric" if outside else self.state
        sim.init_fabric(where, inventory.load_inventory(tmp_path / "inv.yaml"), self.clock)
        self.fabric = sim.SimFabric(where, self.clock)

    def start(self) -> loop.Daemon:
        if self.daemon is not None:
            self.daemon.close()
        self.daemon = loop.Daemon(
            loop.Config(
                self.specs,
                self.state,
                settings=execute.Settings(backoff_base=1.0),
                journal_busy_timeout=0.1,
            ),
            self.fabric,
            self.clock,
            metrics.Metrics(),
        )
        self.daemon.prepare()
        return self.daemon

    def sample(self, name: str, **labels: str) -> float | None:
        assert self.daemon is not None
        return self.daemon.metrics.registry.get_sample_value(name, labels)

    def want(self, site: str) -> None:
        (self.specs / "finance.yaml").write_text(PLAN.replace("SITE", site))
        if self.daemon is not None:
            self.daemon.notice_change()

    def passes(self, seconds: float, until: Callable[[], object] = lambda: False) -> None:
        """Passes as the loop makes them, for `seconds` of virtual time or until `until()`."""
        assert self.daemon is not None
        end = self.clock.now().timestamp() + seconds
        while self.clock.now().timestamp() < end and not until():
            wait = self.daemon.reconcile_once()
            self.clock.advance(max(0.1, min(wait, 1.0)))

    def mid_move(self) -> None:
        """Start the daemon, converged at ams, and move finance to rtm until sql01 fails over."""
        self.start()
        self.passes(2)
        self.want("rtm")
        self.passes(20, until=lambda: ("sql01", "PlannedFailover") in self.jobs())

    def jobs(self) -> list[tuple[str, str]]:
        return [(j.vm, str(j.operation)) for j in self.fabric.list_jobs()]

    def at(self, site: str) -> bool:
        """Every VM runs, committed and protected, at `site`, as the daemon last saw it."""
        vms = self.fabric.observe().vms.values()
        placed = all(vm.active_site == site and not vm.job for vm in vms)
        return placed and self.sample("drctl_plan_converged", plan="finance") == 1

    def status(self) -> dict[str, object]:
        data: dict[str, object] = json.loads(layout.daemon_status_path(self.state).read_text())
        return data


def moved_to_rtm_then_stopped(tmp_path: Path) -> Setup:
    """A daemon that moved finance to rtm, then stopped (its journal closed)."""
    s = Setup(tmp_path)
    s.start()
    s.passes(2)
    s.want("rtm")
    s.passes(60, until=lambda: s.at("rtm"))
    assert s.daemon is not None
    s.daemon.close()
    return s


def assert_each_operation_once_and_journaled(s: Setup) -> None:
    """No operation twice; every job drctl started is in the journal, by its intent id, ended."""
    jobs = s.fabric.list_jobs()
    assert set(Counter((j.vm, j.operation) for j in jobs).values()) == {1}
    with sqlite3.connect(layout.journal_path(s.state)) as db:
        rows = db.execute(
            "SELECT intent_id, job_id, result FROM actions WHERE job_id IS NOT NULL"
        ).fetchall()
    assert {j.intent_id: j.id for j in jobs} == {intent: job for intent, job, _ in rows}
    assert {result for *_, result in rows} == {"succeeded"}  # each outcome journaled


def test_a_state_dir_that_fills_up_mid_move_starts_nothing_more_until_freed(
    tmp_path: Path, said: list[str]
) -> None:
    with disk.small_tmpfs(tmp_path / "state") as state:
        s = Setup(tmp_path, state)
        s.mid_move()
        filler = disk.fill(state)
        started = s.jobs()
        s.passes(20)
        assert s.jobs() == started  # the jobs in flight ran on; nothing more started
        assert s.sample("drctl_state_writable") == 0
        assert s.sample("drctl_journal_usable") == 1
        refused = [line for line in said if line.startswith("cannot write ")]
        assert refused
        assert "database or disk is full" in refused[0] or "No space left" in refused[0]
        assert "drctl starts nothing it cannot journal first" in refused[0]
        filler.unlink()
        s.passes(60, until=lambda: s.at("rtm"))
        assert s.at("rtm")
        assert s.sample("drctl_state_writable") == 1
        assert any("writable again: drctl starts operations again" in line for line in said)
        assert_each_operation_once_and_journaled(s)
        assert s.status()["stateProblem"] is None
        assert s.daemon is not None
        s.daemon.close()


def test_a_daemon_started_on_a_read_only_state_dir_waits_and_then_converges(
    tmp_path: Path, said: list[str]
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    s = Setup(tmp_path, state)
    s.want("rtm")
    with disk.read_only(state):
        s.start()
        s.passes(10)
        assert s.jobs() == []
        assert s.sample("drctl_state_writable") == 0
        assert any(line.startswith(f"cannot write {state}") for line in said)
    s.passes(60, until=lambda: s.at("rtm"))
    assert s.at("rtm")
    assert s.sample("drctl_state_writable") == 1
    assert_each_operation_once_and_journaled(s)
    assert (layout.in_force_dir(state) / "revision").is_file()  # kept once it could be


def test_a_state_dir_made_read_only_mid_move_starts_nothing_more_until_writable(
    tmp_path: Path, said: list[str]
) -> None:
    s = Setup(tmp_path)
    s.mid_move()
    with disk.read_only(s.state):
        started = s.jobs()
        s.passes(20)
        assert s.jobs() == started
        assert s.sample("drctl_state_writable") == 0
        assert any("daemon.json" in line and "cannot write" in line for line in said)
    s.passes(60, until=lambda: s.at("rtm"))
    assert s.at("rtm")
    assert s.sample("drctl_state_writable") == 1
    assert_each_operation_once_and_journaled(s)


def test_a_damaged_journal_is_refused_said_everywhere_and_never_started_over(
    tmp_path: Path, said: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    s = Setup(tmp_path, outside=False)  # `drctl status` reads the embedded fabric
    s.start()
    s.passes(2)
    assert s.daemon is not None
    s.daemon.close()
    path = layout.journal_path(s.state)
    path.write_bytes(b"not a journal at all " * 100)
    s.want("rtm")
    s.start()
    s.passes(10)
    assert s.jobs() == []
    assert s.sample("drctl_journal_usable") == 0
    problem = s.status()["stateProblem"]
    assert isinstance(problem, str)
    assert problem.startswith(f"the journal {path} is damaged (file is not a database)")
    assert problem in said
    assert len(list(s.state.glob("journal.db.damaged-*"))) == 1
    capsys.readouterr()  # what the passes printed
    code = cli.main(["status", str(s.specs), "--state-dir", str(s.state)])
    err = capsys.readouterr().err
    assert code == 3
    assert err == f"drctl: {problem}\n"
    path.rename(tmp_path / "damaged-journal.db")  # what the refusal says to do
    s.passes(60, until=lambda: s.at("rtm"))
    assert s.at("rtm")
    assert s.sample("drctl_journal_usable") == 1
    warnings = s.status()["stateWarnings"]
    assert isinstance(warnings, list)
    assert warnings[0].startswith(f"the journal {path} is new, but this state dir last used")


def test_a_journal_locked_by_another_process_is_waited_for_with_the_reason(
    tmp_path: Path, said: list[str]
) -> None:
    s = Setup(tmp_path)
    s.start()
    s.passes(2)
    with disk.journal_locked(layout.journal_path(s.state)):
        s.want("rtm")
        s.passes(10)
        assert s.jobs() == []
        assert s.sample("drctl_journal_usable") == 0
        assert s.sample("drctl_state_writable") == 1
        assert any("is locked by another process" in line for line in said)
    s.passes(60, until=lambda: s.at("rtm"))
    assert s.at("rtm")
    assert s.sample("drctl_journal_usable") == 1
    assert_each_operation_once_and_journaled(s)


def test_a_journal_replaced_while_the_daemon_was_stopped_is_refused(
    tmp_path: Path, said: list[str]
) -> None:
    s = moved_to_rtm_then_stopped(tmp_path)
    stranger = tmp_path / "stranger"  # another state dir's journal
    journal.Journal(stranger).close()
    shutil.copyfile(layout.journal_path(stranger), layout.journal_path(s.state))
    s.want("ams")
    s.start()
    s.passes(10)
    assert len(s.jobs()) == 8  # the move to rtm, and nothing since
    assert s.sample("drctl_journal_usable") == 0
    problem = s.status()["stateProblem"]
    assert isinstance(problem, str)
    assert "is not the one this state dir last used" in problem


@pytest.mark.parametrize("evidence", ["the record", "the revision in force", "the fabric's jobs"])
def test_a_journal_lost_while_the_daemon_was_stopped_is_warned_about_loudly(
    tmp_path: Path, said: list[str], evidence: str
) -> None:
    s = moved_to_rtm_then_stopped(tmp_path)
    for name in ("journal.db", "journal.db-wal", "journal.db-shm"):
        (s.state / name).unlink(missing_ok=True)
    if evidence != "the record":
        layout.journal_record_path(s.state).unlink()
    if evidence == "the fabric's jobs":
        shutil.rmtree(layout.in_force_dir(s.state))
    said.clear()
    s.start()
    s.passes(3)
    (warning,) = [line for line in said if "What it recorded is gone" in line]
    expected = {
        "the record": "is new, but this state dir last used journal",
        "the revision in force": "is new, but the state dir holds a revision in force and "
        "the fabric holds 8 jobs: an earlier journal was deleted or lost",
        "the fabric's jobs": "is new, but the fabric holds 8 jobs: an earlier journal",
    }[evidence]
    assert expected in warning
    assert "check the fabric's job list (`drctl fabric show`" in warning
    assert s.status()["stateWarnings"] == [warning]


def test_a_fresh_state_dir_is_no_lost_journal(tmp_path: Path, said: list[str]) -> None:
    s = Setup(tmp_path)
    s.start()
    s.passes(3)
    assert not [line for line in said if "What it recorded is gone" in line]


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        ({"specs/finance.yaml": PLAN.replace("kind", "kin\x00d").encode()}, "remove it"),
        ({"revision": b"\xff\xfe garbage\n"}, "codec can't decode"),
        ({"revision": b""}, "not a revision: ''"),
        ({"specs/finance.yaml": b"apiVersion: [\n"}, "finance.yaml"),
    ],
)
def test_a_damaged_revision_in_force_is_ignored_loudly_and_head_acted_on(
    tmp_path: Path, said: list[str], damage: dict[str, bytes], why: str
) -> None:
    s = Setup(tmp_path)
    s.start()
    s.passes(2)
    assert s.daemon is not None
    s.daemon.close()
    for name, data in damage.items():
        (layout.in_force_dir(s.state) / name).write_bytes(data)
    s.want("rtm")
    said.clear()
    s.start()
    (warning,) = [line for line in said if "cannot be read" in line]
    assert warning.startswith(f"the revision in force kept in {layout.in_force_dir(s.state)}")
    assert why in warning
    s.passes(60, until=lambda: s.at("rtm"))
    assert s.at("rtm")
    assert s.status()["stateWarnings"] == [warning]
    assert (layout.in_force_dir(s.state) / "specs" / "finance.yaml").read_text().count("rtm") > 0
