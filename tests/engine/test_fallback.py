"""A failed move never leaves an application silently down (issue 9 rule 9), on the simulator.

The database's planned failover fails past its attempts after the web and
application servers were stopped for it: drctl starts them back at the
source, in boot order, and stops nothing more while the move is Blocked.
"""

from __future__ import annotations

from pathlib import Path

from builders import desired, inventory, inventory_vm, want

from reconciler.core.desired import DesiredState, Group
from reconciler.core.plan import Phase
from reconciler.core.state import Operation
from reconciler.engine import execute, journal
from reconciler.fabric.sim import provider as sim
from reconciler.kits.clock import VirtualClock

REV = "rev1"
GROUPS = (
    Group("db", (), ("sql01",)),
    Group("app", ("db",), ("app01",)),
    Group("web", ("app",), ("web01",)),
)
NAMES = ("sql01", "app01", "web01")


def three_tier(site: str) -> DesiredState:
    return desired(
        want("sql01", site, group="db"),
        want("app01", site, group="app"),
        want("web01", site, group="web"),
        groups=GROUPS,
    )


def setup(tmp_path: Path) -> tuple[VirtualClock, sim.SimFabric, execute.Executor]:
    clock = VirtualClock()
    sim.init_fabric(tmp_path, inventory(*(inventory_vm(n) for n in NAMES)), clock)
    fabric = sim.SimFabric(tmp_path, clock)
    return clock, fabric, execute.Executor(fabric, journal.Journal(tmp_path), clock)


def operations(fabric: sim.SimFabric) -> list[tuple[str, Operation, str | None]]:
    return [(j.vm, j.operation, j.target_site) for j in fabric.list_jobs()]


def test_the_copies_drctl_stopped_are_started_back_when_the_move_is_blocked(
    tmp_path: Path,
) -> None:
    _clock, fabric, executor = setup(tmp_path)
    fabric.inject_failure("sql01", Operation.PLANNED_FAILOVER, times=10)
    outcome = execute.apply(executor, three_tier("rtm"), REV, timeout=900)
    assert not outcome.converged
    by_vm = {vp.name: vp for vp in outcome.plan.vms}
    assert by_vm["sql01"].phase is Phase.BLOCKED
    assert by_vm["sql01"].reason.startswith("PlannedFailover failed 3 times for this revision")
    starts = [(vm, site) for vm, op, site in operations(fabric) if op is Operation.START_VM]
    # Every copy drctl stopped for the move (the database too: a planned
    # failover stops its VM first), started back in boot order.
    assert starts == [("sql01", "ams"), ("app01", "ams"), ("web01", "ams")]
    seen = fabric.observe().vms
    assert {n: seen[n].running for n in NAMES} == dict.fromkeys(NAMES, ("ams",))
    # Nothing more is stopped while the move is Blocked: the plan rests.
    assert {by_vm[n].phase for n in ("app01", "web01")} == {Phase.BLOCKED}
    assert by_vm["app01"].reason.startswith("moving from ams to rtm waits: sql01 is Blocked")
    assert by_vm["web01"].reason == (
        "moving from ams to rtm waits: sql01 is Blocked; nothing more of plan 'finance' is "
        "stopped until that is fixed and a new revision committed"
    )
    before = len(fabric.list_jobs())
    again = execute.apply(executor, three_tier("rtm"), REV, timeout=300)
    assert len(fabric.list_jobs()) == before
    assert not again.converged and not again.timed_out


def test_a_failover_that_failed_after_shutting_the_source_down_starts_it_back(
    tmp_path: Path,
) -> None:
    _clock, fabric, executor = setup(tmp_path)
    fabric.inject_failure("sql01", Operation.PLANNED_FAILOVER, times=10, after_shutdown=True)
    outcome = execute.apply(executor, three_tier("rtm"), REV, timeout=900)
    by_vm = {vp.name: vp for vp in outcome.plan.vms}
    assert by_vm["sql01"].phase is Phase.BLOCKED
    assert "failed after shutting down the copy at ams" in by_vm["sql01"].reason
    starts = [vm for vm, op, _site in operations(fabric) if op is Operation.START_VM]
    assert starts == ["sql01", "app01", "web01"]
    seen = fabric.observe().vms
    assert {n: seen[n].running for n in NAMES} == dict.fromkeys(NAMES, ("ams",))


def test_a_failure_that_will_be_retried_keeps_the_copies_stopped(tmp_path: Path) -> None:
    """Retryable and still asked for: the move goes on after the backoff, nothing restarts."""
    _clock, fabric, executor = setup(tmp_path)
    fabric.inject_failure("sql01", Operation.PLANNED_FAILOVER, times=1)
    assert execute.apply(executor, three_tier("rtm"), REV, timeout=900).converged
    assert Operation.START_VM not in {op for _vm, op, _site in operations(fabric)}
