"""drctl's hard rules hold at the last moment before the provider call, and what it cannot read.

A planner bug is played by a hand-built plan: an action drctl never calls
(CancelFailover, CompleteMigration), or DisableReplication for a VM whose
spec does not confirm it, is journaled as refused with the rule and emitted
as an event, and never reaches the provider. On the simulator, a VM whose
raw state drctl does not know, or whose name another VM reports too, is
Blocked and nothing is started for it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from builders import TIMINGS, inventory, inventory_vm, want
from fabrics import Delegating

from reconciler.core import plan
from reconciler.core.desired import DesiredState, DesiredVM, PlanSpec
from reconciler.core.plan import Phase
from reconciler.core.state import Operation
from reconciler.engine import execute, guard, journal
from reconciler.fabric import base
from reconciler.fabric.sim import provider as sim
from reconciler.kits.clock import VirtualClock

OP = Operation
REV = "rev1"


class Recording(Delegating):
    """The simulator, with every start request drctl makes written down."""

    def __init__(self, inner: base.Provider) -> None:
        super().__init__(inner)
        self.started: list[base.Request] = []

    def start(self, request: base.Request) -> str:
        self.started.append(request)
        return super().start(request)


def one_plan(*vms: DesiredVM) -> DesiredState:
    return DesiredState(
        plans=(PlanSpec("finance", "finance.yaml", ("ams", "rtm"), False, 10, (), vms),)
    )


class Run:
    """An executor over a recording simulator of `names` (protected ams->rtm)."""

    def __init__(self, tmp_path: Path, *names: str) -> None:
        self.clock = VirtualClock()
        sim.init_fabric(
            tmp_path, inventory(*(inventory_vm(n) for n in names), timings=TIMINGS), self.clock
        )
        self.sim = sim.SimFabric(tmp_path, self.clock)
        self.fabric = Recording(self.sim)
        self.journal = journal.Journal(tmp_path)
        self.events: list[execute.Event] = []
        self.executor = execute.Executor(
            self.fabric, self.journal, self.clock, on_event=self.events.append
        )

    def start_by_mistake(self, desired: DesiredState, action: plan.Action) -> None:
        """What a planner that proposed `action`, ready, would make the executor do."""
        unread = plan.Readiness(None, None, rpo_at_risk=False)
        vp = plan.VMPlan(
            desired.plans[0].vms[0], None, Phase.SYNCING, "a bug", action, False, False, unread
        )
        built = plan.Plan(vms=(vp,), actions=(action,), unmanaged=(), max_parallel={})
        self.executor.start_ready(built, desired, REV)


@pytest.mark.parametrize("operation", sorted(guard.DENIED))
def test_an_operation_drctl_never_calls_never_reaches_the_provider(
    tmp_path: Path, operation: Operation
) -> None:
    run = Run(tmp_path, "sql01")
    desired = one_plan(want("sql01", "rtm"))
    run.start_by_mistake(desired, plan.Action("finance", "sql01", operation, "rtm"))
    assert run.fabric.started == []
    (entry,) = run.journal.entries()
    assert (entry.operation, entry.result) == (operation, journal.REFUSED)
    assert entry.error == (
        f"drctl never calls {operation}, whatever the fabric allows (drctl's hard rule): "
        "do it in the fabric by hand if it is really meant"
    )
    (event,) = run.events
    assert (event.kind, event.operation, event.error) == (
        execute.EventKind.REFUSED,
        operation,
        entry.error,
    )


def test_disable_replication_without_confirmation_never_reaches_the_provider(
    tmp_path: Path,
) -> None:
    run = Run(tmp_path, "sql01")
    unconfirmed = one_plan(want("sql01", replication=None))
    run.start_by_mistake(unconfirmed, plan.Action("finance", "sql01", OP.DISABLE_REPLICATION, None))
    assert run.fabric.started == []
    (entry,) = run.journal.entries()
    assert entry.result == journal.REFUSED
    assert entry.error == (
        "drctl calls DisableReplication only for a VM whose spec says "
        "`confirmDisableReplication: true` (drctl's hard rule), and finance/sql01's does not"
    )
    assert [e.kind for e in run.events] == [execute.EventKind.REFUSED]


def test_confirmed_disable_replication_reaches_the_provider(tmp_path: Path) -> None:
    """The rule's other side: the spec that confirms it gets the call."""
    run = Run(tmp_path, "sql01")
    confirmed = one_plan(want("sql01", replication=None)._replace(confirm_disable_replication=True))
    run.start_by_mistake(confirmed, plan.Action("finance", "sql01", OP.DISABLE_REPLICATION, None))
    assert [r.operation for r in run.fabric.started] == [OP.DISABLE_REPLICATION]
    assert [e.kind for e in run.events] == [execute.EventKind.STARTED]


# --- on the simulator: what drctl cannot read, it does not touch ---------------------------


def test_a_vm_whose_raw_state_drctl_does_not_know_is_blocked_and_nothing_is_issued(
    tmp_path: Path,
) -> None:
    run = Run(tmp_path, "sql01")
    desired = one_plan(want("sql01", "rtm"))  # a move the fabric allows
    run.sim.set_raw_state("sql01", "FailoverInProgressMystery", "Something odd")
    outcome = execute.apply(run.executor, desired, REV, timeout=600)
    assert not outcome.converged
    (vp,) = outcome.plan.vms
    assert vp.phase is Phase.BLOCKED
    assert vp.reason == (
        "the fabric reports protection state 'FailoverInProgressMystery' (Something odd) that "
        "drctl does not know; nothing is done to this VM until it reads a known state; check "
        "it in the fabric"
    )
    assert vp.observed is not None
    assert OP.PLANNED_FAILOVER in vp.observed.allowed_operations  # the fabric allows it
    assert (run.fabric.started, run.journal.entries()) == ([], [])
    # Once it reads a known state again, drctl moves it.
    run.sim.set_raw_state("sql01", None)
    assert execute.apply(run.executor, desired, REV, timeout=600).converged


def test_a_name_two_vms_report_is_blocked_naming_both_and_neither_is_touched(
    tmp_path: Path,
) -> None:
    run = Run(tmp_path, "sql01", "sql02")
    ids = {name: vm.vm_id for name, vm in run.sim.observe().vms.items()}
    run.sim.rename("sql02", "sql01")
    desired = one_plan(want("sql01", "rtm"))
    outcome = execute.apply(run.executor, desired, REV, timeout=600)
    (vp,) = outcome.plan.vms
    assert (vp.phase, outcome.converged) == (Phase.BLOCKED, False)
    assert f"named 'sql01' (ids {ids['sql01']}, {ids['sql02']})" in vp.reason
    assert "rename all but one in the fabric" in vp.reason
    assert (run.fabric.started, run.sim.list_jobs()) == ([], [])
    run.sim.rename("sql02", "sql02")
    assert execute.apply(run.executor, desired, REV, timeout=600).converged
