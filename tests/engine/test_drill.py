"""A drill run by the executor on the simulator, on a virtual clock.

Test copies start by group, the checks probe them on the loopback (a real
listening socket), they are kept keepMinutes, cleaned up in reverse order;
production never moves and its RPO never degrades; the journal keeps the
drill's record and its result, which the metrics export. A move preempts a
running drill: cleanup first, then the move.
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from reconciler.core import plan
from reconciler.core.desired import DesiredState, DesiredVM, Drill, DrillCheck, Group, PlanSpec
from reconciler.core.state import Operation
from reconciler.engine import execute, journal, metrics
from reconciler.fabric.sim import inventory
from reconciler.fabric.sim import provider as sim
from reconciler.kits.clock import VirtualClock

INVENTORY = """\
sites: [ams, rtm]
vms:
  - {name: sql01, activeSite: ams, replication: ams->rtm}
  - {name: web01, activeSite: ams, replication: ams->rtm}
  - {name: web02, activeSite: ams, replication: ams->rtm}
timings: {plannedFailover: 3, commit: 1, reverseReplicate: 2, stopVM: 1, testFailover: 2,
          testFailoverCleanup: 1, replicationInterval: 30}
"""
REV = "rev1"
TEST_OPS = {Operation.TEST_FAILOVER, Operation.TEST_FAILOVER_CLEANUP}


@pytest.fixture
def listening() -> Iterator[int]:
    """A port on 127.0.0.1 that accepts connections: the test copy's service."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


def wanted(drill: Drill | None, site: str = "ams") -> DesiredState:
    rep = ("ams", "rtm") if site == "ams" else ("rtm", "ams")
    groups = (Group("db", (), ("sql01",)), Group("web", ("db",), ("web01", "web02")))
    vms = tuple(
        DesiredVM("finance", name, site, rep, False, group)
        for name, group in (("sql01", "db"), ("web01", "web"), ("web02", "web"))
    )
    spec = PlanSpec("finance", "f.yaml", ("ams", "rtm"), False, 10, groups, vms, drill=drill)
    return DesiredState(plans=(spec,))


class Run:
    def __init__(self, tmp_path: Path) -> None:
        self.clock = VirtualClock()
        (tmp_path / "inv.yaml").write_text(INVENTORY)
        sim.init_fabric(tmp_path, inventory.load_inventory(tmp_path / "inv.yaml"), self.clock)
        self.fabric = sim.SimFabric(tmp_path, self.clock)
        self.journal = journal.Journal(tmp_path)
        self.executor = execute.Executor(self.fabric, self.journal, self.clock)
        self.plans: list[plan.Plan] = []

    def apply(self, desired: DesiredState, timeout: float = 7200) -> execute.Outcome:
        return execute.apply(self.executor, desired, REV, timeout, after_step=self.plans.append)

    def record(self) -> plan.DrillRecord:
        return self.journal.drills()[-1]

    def entries(self, *ops: Operation) -> list[journal.Entry]:
        return [e for e in self.journal.entries() if not ops or e.operation in ops]

    def times(self, op: Operation, which: str) -> dict[str, datetime]:
        """When each VM's `op` started or finished (`which`), as the journal says."""
        found = {e.vm: getattr(e, which) for e in self.entries(op)}
        assert None not in found.values()
        return found


def test_a_drill_runs_by_group_keeps_its_copies_and_cleans_up_in_reverse(
    tmp_path: Path, listening: int
) -> None:
    run = Run(tmp_path)
    check = DrillCheck("web01", listening, None, 1.0)
    outcome = run.apply(wanted(Drill("2026-q4", 30.0, "isolated", (check,))))
    assert outcome.converged
    record = run.record()
    assert (record.id, record.result) == ("2026-q4", "passed")
    assert record.checks == (
        plan.CheckResult(check.text, True, f"connected to 127.0.0.1:{listening}"),
    )
    # Only test operations were issued: production never moved.
    assert {e.operation for e in run.entries()} == TEST_OPS
    started = run.times(Operation.TEST_FAILOVER, "started_at")
    finished = run.times(Operation.TEST_FAILOVER, "finished_at")
    cleaned = run.times(Operation.TEST_FAILOVER_CLEANUP, "started_at")
    assert started["web01"] >= finished["sql01"] and started["web02"] >= finished["sql01"]
    assert cleaned["sql01"] >= max(cleaned["web01"], cleaned["web02"])
    assert record.running_at is not None and record.ended_at is not None
    assert min(cleaned.values()) >= record.running_at + timedelta(minutes=30)
    # Every step: every VM placed and protected, its RPO never at risk.
    for built in run.plans:
        assert all(vp.placed and vp.protected for vp in built.vms)
        assert not any(vp.readiness.rpo_at_risk for vp in built.vms)
    phases = {vp.phase for built in run.plans for vp in built.vms}
    assert plan.Phase.DRILLING in phases
    # Done once: the same id never runs again.
    again = run.apply(wanted(Drill("2026-q4", 30.0)))
    assert again.converged and len(run.journal.drills()) == 1
    assert not run.executor.running


def test_a_failed_check_fails_the_drill_and_the_metrics_say_so(tmp_path: Path) -> None:
    run = Run(tmp_path)
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # closed again: nothing answers there
    check = DrillCheck("sql01", port, "/health", 1.0)
    assert run.apply(wanted(Drill("q1", 1.0, None, (check,)))).converged
    record = run.record()
    assert record.result == "failed"
    assert not record.checks[0].passed
    exported = metrics.Metrics()
    exported.set_drills(run.journal.drills())
    text = exported.exposition().decode()
    assert 'drctl_drill_last_result{plan="finance"} 0.0' in text
    assert "drctl_drill_last_success_timestamp_seconds{" not in text
    assert 'drctl_drill_duration_seconds{plan="finance"}' in text


def test_a_passed_drill_sets_the_last_success_time(tmp_path: Path) -> None:
    run = Run(tmp_path)
    assert run.apply(wanted(Drill("q1", 0.5))).converged
    exported = metrics.Metrics()
    exported.set_drills(run.journal.drills())
    text = exported.exposition().decode()
    ended = run.record().ended_at
    assert ended is not None
    assert 'drctl_drill_last_result{plan="finance"} 1.0' in text
    line = next(x for x in text.splitlines() if x.startswith("drctl_drill_last_success_"))
    assert float(line.split()[-1]) == ended.timestamp()


def test_a_move_preempts_a_running_drill_cleanup_first_then_the_move(tmp_path: Path) -> None:
    run = Run(tmp_path)
    drill = Drill("q1", 30.0)
    # Until every copy runs and the keep time has begun.
    run.apply(wanted(drill), timeout=60)
    assert run.record().running_at is not None and run.record().ended_at is None
    moving = wanted(drill, site="rtm")
    assert run.apply(moving).converged
    record = run.record()
    assert (record.result, record.preempted) == ("preempted", True)
    cleanups = run.times(Operation.TEST_FAILOVER_CLEANUP, "finished_at")
    moves = [e.intended_at for e in run.entries(Operation.STOP_VM, Operation.PLANNED_FAILOVER)]
    assert len(cleanups) == 3 and moves
    assert min(moves) >= max(cleanups.values())
    assert dataclasses.replace(record, checks=()) == record  # no checks were declared


def test_a_failed_test_failover_fails_the_drill_and_cleans_up_what_ran(tmp_path: Path) -> None:
    run = Run(tmp_path)
    run.fabric.inject_failure("web02", Operation.TEST_FAILOVER)
    assert run.apply(wanted(Drill("q1", 30.0))).converged
    record = run.record()
    assert record.result == "failed"
    assert record.failed is not None and record.failed.startswith("TestFailover of web02 failed")
    # Cleaned up at once, not after the keep time; the copies that ran are gone.
    assert record.ended_at is not None
    assert record.ended_at - record.started_at < timedelta(minutes=1)
    cleaned = {e.vm for e in run.entries(Operation.TEST_FAILOVER_CLEANUP)}
    assert cleaned == {"sql01", "web01"}
