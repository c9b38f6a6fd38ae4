"""Dependents first on every failover path, and all or nothing (issue 9 rule 4)."""

from __future__ import annotations

import dataclasses

from builders import NOW, desired, observed, vm, want

from reconciler.core import plan
from reconciler.core.desired import DesiredState, Group
from reconciler.core.plan import Phase
from reconciler.core.state import Observed, Operation, ReplicationState

PLANNED = frozenset({Operation.PLANNED_FAILOVER, Operation.STOP_VM})
GROUPS = (Group("db", (), ("sql01",)), Group("web", ("db",), ("web01",)))


def decide(wanted: DesiredState, seen: Observed) -> dict[str, plan.VMPlan]:
    return {vp.name: vp for vp in plan.build_plan(wanted, seen, NOW).vms}


def test_no_vm_of_a_plan_fails_over_while_another_moving_one_cannot() -> None:
    # sql01 needs a resync (no planned failover, no consent); web01 is already off.
    sql01 = vm("sql01", rstate=ReplicationState.RESYNC_REQUIRED, allowed=frozenset())
    web01 = vm("web01", running=(), allowed=PLANNED)
    got = decide(desired(want("sql01", "rtm"), want("web01", "rtm")), observed(sql01, web01))
    assert got["sql01"].phase is Phase.SYNCING or got["sql01"].action is None
    action = got["web01"].action
    assert action is not None
    assert (action.operation, action.ready) == (Operation.PLANNED_FAILOVER, False)
    assert "sql01" in action.waiting_for


def test_a_vm_already_off_fails_over_only_once_its_dependents_no_longer_run_at_the_source() -> None:
    sql01 = vm("sql01", running=(), allowed=PLANNED)
    web01 = vm("web01", allowed=PLANNED)
    got = decide(
        desired(want("sql01", "rtm", group="db"), want("web01", "rtm", group="web"), groups=GROUPS),
        observed(sql01, web01),
    )
    action = got["sql01"].action
    assert action is not None
    assert (action.operation, action.ready) == (Operation.PLANNED_FAILOVER, False)
    assert action.waiting_for == ("web01",)
    assert got["web01"].action is not None
    assert got["web01"].action.operation is Operation.STOP_VM


def test_a_grouped_plan_on_a_fabric_that_cannot_stop_vms_is_blocked_unless_unordered() -> None:
    seen = dataclasses.replace(
        observed(vm("sql01", allowed=PLANNED), vm("web01", allowed=PLANNED)), can_stop_vms=False
    )
    wanted = desired(
        want("sql01", "rtm", group="db"), want("web01", "rtm", group="web"), groups=GROUPS
    )
    got = decide(wanted, seen)
    assert got["sql01"].phase is Phase.BLOCKED
    assert "cannot stop its dependents first" in got["sql01"].reason
    assert "`policy.unorderedFailover: true`" in got["sql01"].reason
    unordered = dataclasses.replace(
        wanted,
        plans=tuple(dataclasses.replace(p, unordered_failover=True) for p in wanted.plans),
    )
    got = decide(unordered, seen)
    assert got["sql01"].action is not None
    assert got["sql01"].action.operation is Operation.PLANNED_FAILOVER


def test_status_says_first_when_no_copy_of_a_vm_runs() -> None:
    # A planned failover failed after it shut the source down: no copy runs.
    down = vm("sql01", running=(), allowed=PLANNED)
    got = decide(desired(want("sql01", "rtm")), observed(down))
    assert got["sql01"].reason.startswith("no copy of sql01 runs; ")
    # A copy whose power the fabric cannot tell may run: nothing is claimed.
    unknown = dataclasses.replace(down, power_unknown=("ams",))
    got = decide(desired(want("sql01", "rtm")), observed(unknown))
    assert not got["sql01"].reason.startswith("no copy")


def test_drctl_plan_says_which_failover_path_each_moving_plan_takes() -> None:
    """Rule 4: dependents first, unordered, or Blocked for a fabric that cannot stop VMs."""
    groups = (Group("db", (), ("sql01",)), Group("web", ("db",), ("web01",)))
    wanted = desired(
        want("sql01", "rtm", group="db"), want("web01", "rtm", group="web"), groups=groups
    )
    seen = observed(vm("sql01"), vm("web01"))
    paths = plan.build_plan(wanted, seen, NOW).failover_paths
    assert paths == {
        "finance": "dependents first: drctl stops the groups in reverse order, then fails them "
        "over in boot order"
    }
    blind = observed(vm("sql01"), vm("web01"), can_stop_vms=False)
    assert (
        plan.build_plan(wanted, blind, NOW)
        .failover_paths["finance"]
        .startswith("blocked: this fabric cannot stop VMs")
    )
    unordered = dataclasses.replace(
        wanted, plans=tuple(dataclasses.replace(p, unordered_failover=True) for p in wanted.plans)
    )
    assert (
        plan.build_plan(unordered, blind, NOW)
        .failover_paths["finance"]
        .startswith("unordered (policy.unorderedFailover)")
    )
    at_rest = observed(vm("sql01", "rtm"), vm("web01", "rtm"))
    assert plan.build_plan(wanted, at_rest, NOW).failover_paths == {}


def test_a_fabric_with_a_plan_level_failover_moves_a_grouped_plan_through_it() -> None:
    """Rule 4 on a fabric that cannot stop VMs but moves a whole plan (ASR recovery plans)."""
    groups = (Group("web", ("db",), ("web01",)), Group("db", (), ("sql01",)))
    wanted = desired(
        want("sql01", "rtm", group="db"), want("web01", "rtm", group="web"), groups=groups
    )
    seen = observed(vm("sql01"), vm("web01"), can_stop_vms=False)
    asr = dataclasses.replace(seen, plan_failover=True)
    built = plan.build_plan(wanted, asr, NOW)
    got = {vp.name: vp for vp in built.vms}
    lead = got["sql01"].action
    assert lead is not None and lead.ready
    assert lead.operation is Operation.PLANNED_FAILOVER
    assert lead.plan_groups == (("sql01",), ("web01",))  # boot order, not file order
    assert got["web01"].action is None
    assert got["web01"].phase is Phase.FAILING_OVER
    assert built.failover_paths["finance"].startswith("the fabric's plan-level failover")
    # Only some VMs move: VM by VM, never through the plan.
    partly = observed(vm("sql01"), vm("web01", "rtm"), can_stop_vms=False)
    got = {
        vp.name: vp
        for vp in plan.build_plan(wanted, dataclasses.replace(partly, plan_failover=True), NOW).vms
    }
    assert got["sql01"].action is not None and got["sql01"].action.plan_groups == ()
    # Without the capability the plan stays Blocked.
    blocked = {vp.name: vp for vp in plan.build_plan(wanted, seen, NOW).vms}
    assert blocked["sql01"].phase is Phase.BLOCKED
