"""Rule 9 in the planner: a Blocked move starts back what drctl stopped for it, in boot order."""

from __future__ import annotations

from builders import NOW, PROTECTED_OPS, desired, observed, vm, want

from reconciler.core import plan
from reconciler.core.desired import DesiredState, Group
from reconciler.core.plan import Phase
from reconciler.core.plan.model import Attempts
from reconciler.core.state import ObservedVM, Operation

OP = Operation
GROUPS = (
    Group("db", (), ("sql01",)),
    Group("app", ("db",), ("app01",)),
    Group("web", ("app",), ("web01", "web02")),
)


def three_tier() -> DesiredState:
    return desired(
        want("sql01", "rtm", group="db"),
        want("app01", "rtm", group="app"),
        want("web01", "rtm", group="web"),
        want("web02", "rtm", group="web"),
        groups=GROUPS,
    )


STARTABLE = PROTECTED_OPS | {Operation.START_VM}


def stopped(name: str) -> ObservedVM:
    return vm(name, running=(), allowed=STARTABLE)


FAILED = Attempts(3, "PlannedFailover of sql01 failed: the storage at rtm is full")


def test_the_stopped_copies_start_back_in_boot_order_and_nothing_more_stops() -> None:
    o = observed(stopped("sql01"), stopped("app01"), stopped("web01"), vm("web02"))
    built = plan.build_plan(
        three_tier(),
        o,
        NOW,
        {("sql01", OP.PLANNED_FAILOVER): FAILED},
        provenance=plan.Provenance(stopped_by_drctl=frozenset({"sql01", "app01", "web01"})),
    )
    by_vm = {vp.name: vp for vp in built.vms}
    sql01, app01 = by_vm["sql01"], by_vm["app01"]
    assert sql01.phase is Phase.BLOCKED
    assert sql01.reason.startswith(
        "no copy of sql01 runs; PlannedFailover failed 3 times for this revision: "
        "PlannedFailover of sql01 failed: the storage at rtm is full"
    )
    assert sql01.reason.endswith(
        "; starting it back at ams, where drctl stopped it for the move, so that the "
        "application runs meanwhile; fix what blocks it and commit a new revision to move "
        "plan 'finance' again"
    )
    assert app01.phase is Phase.STARTING
    assert app01.reason.startswith(
        "no copy of app01 runs; the move of plan 'finance' to rtm cannot go on: sql01 is Blocked"
    )
    assert [(a.vm, a.operation, a.ready, a.waiting_for) for a in built.actions] == [
        ("sql01", OP.START_VM, True, ()),
        ("app01", OP.START_VM, False, ("sql01",)),
        ("web01", OP.START_VM, False, ("app01",)),
    ]
    # web02 still runs: it is not stopped for a move that cannot go on.
    assert by_vm["web02"].phase is Phase.BLOCKED
    assert by_vm["web02"].action is None


def test_a_vm_an_operator_stopped_is_not_started_by_drctl() -> None:
    o = observed(stopped("sql01"), stopped("app01"), vm("web01"), vm("web02"))
    built = plan.build_plan(
        three_tier(),
        o,
        NOW,
        {("sql01", OP.PLANNED_FAILOVER): FAILED},
        provenance=plan.Provenance(stopped_by_drctl=frozenset({"sql01"})),
    )
    assert [(a.vm, a.operation) for a in built.actions if a.operation is OP.START_VM] == [
        ("sql01", OP.START_VM)
    ]
