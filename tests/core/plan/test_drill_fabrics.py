"""Drills where the fabric shapes them: a grouped plan moved whole (ASR), and a drill Stuck.

On a fabric that cannot stop VMs and moves a grouped plan through its own
plan-level operations (ASR's recovery plan), a drill is ONE plan-level
TestFailover asked by the first VM in boot order and ONE plan-level
TestFailoverCleanup; the other VMs say they go with it. A drill whose copies
stay up past every-copy-ran + keepMinutes + the cleanup's deadline is Stuck,
and so is one whose test job runs past its own deadline; nothing is cancelled.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from builders import NOW, PROTECTED_OPS, job, observed, vm
from core.plan.test_drill import RUNNING, WITH_COPY, build, drilled, ops, record

from reconciler.core import plan, state
from reconciler.core.desired import DesiredState
from reconciler.core.state import Operation

NAMES = ("sql01", "web01", "web02")
GROUPS = (("sql01",), ("web01", "web02"))


def asr_build(
    wanted: DesiredState, *vms: state.ObservedVM, drill: plan.DrillRecord | None = None
) -> plan.Plan:
    """As `build`, against a fabric that moves a grouped plan whole (ASR)."""
    seen = dataclasses.replace(
        observed(*vms, can_stop_vms=False), plan_failover=True, reports_power=False
    )
    provenance = plan.Provenance(drills={"finance": drill} if drill is not None else {})
    return plan.build_plan(wanted, seen, NOW, provenance=provenance)


def copies() -> list[state.ObservedVM]:
    return [vm(n, test=RUNNING, allowed=WITH_COPY) for n in NAMES]


def test_a_drill_of_a_grouped_plan_moved_whole_is_one_plan_level_test_failover() -> None:
    built = asr_build(drilled(), *(vm(n) for n in NAMES))
    [action] = built.actions
    assert (action.vm, action.operation, action.ready) == ("sql01", Operation.TEST_FAILOVER, True)
    assert action.plan_groups == GROUPS  # the recovery plan boots the copies by group
    assert (action.target_site, action.network) == ("rtm", "isolated")
    view = built.drills["finance"]
    assert view.step is plan.DrillStep.STARTING
    assert view.whole == NAMES
    by_vm = {vp.name: vp for vp in built.vms}
    assert {vp.phase for vp in built.vms} == {plan.Phase.DRILLING}
    assert "plan-level TestFailover (asked for sql01)" in by_vm["web02"].reason
    assert by_vm["web02"].action is None


def test_a_plan_level_test_failover_waits_until_the_fabric_allows_it_for_every_vm() -> None:
    refusing = vm("web02", allowed=PROTECTED_OPS - {Operation.TEST_FAILOVER})
    built = asr_build(drilled(), vm("sql01"), vm("web01"), refusing)
    [action] = built.actions
    assert (action.operation, action.ready) == (Operation.TEST_FAILOVER, False)
    leader = next(vp for vp in built.vms if vp.name == "sql01")
    assert "does not allow it now for web02" in leader.reason


def test_the_plan_job_running_on_every_vm_is_followed_then_kept_then_one_cleanup() -> None:
    plan_job = job("drctl-finance", Operation.TEST_FAILOVER, job_id="plan-job")
    running = asr_build(drilled(), *(vm(n, job=plan_job) for n in NAMES), drill=record())
    assert running.actions == ()
    assert all("TestFailover (job plan-job) runs" in vp.reason for vp in running.vms)
    kept = asr_build(drilled(), *copies(), drill=record(running_at=NOW - timedelta(minutes=1)))
    assert kept.drills["finance"].step is plan.DrillStep.KEEPING
    assert kept.actions == ()
    cleaning = asr_build(drilled(), *copies(), drill=record(running_at=NOW - timedelta(minutes=31)))
    [action] = cleaning.actions
    assert (action.vm, action.operation, action.ready) == (
        "sql01",
        Operation.TEST_FAILOVER_CLEANUP,
        True,
    )
    assert action.plan_groups == GROUPS
    assert action.network is None


def test_a_copy_left_alone_is_cleaned_up_through_the_plan_too() -> None:
    left = asr_build(
        drilled(),
        vm("sql01"),
        vm("web01", test=RUNNING, allowed=WITH_COPY),
        vm("web02"),
        drill=record(failed="TestFailover of the plan failed"),
    )
    [action] = left.actions
    assert (action.vm, action.operation, action.ready) == (
        "sql01",
        Operation.TEST_FAILOVER_CLEANUP,
        True,
    )


def test_an_ungrouped_plan_or_a_fabric_that_stops_vms_drills_vm_by_vm() -> None:
    by_vm = build(drilled(), *(vm(n) for n in NAMES))
    assert {a.plan_groups for a in by_vm.actions} == {()}
    assert by_vm.drills["finance"].whole == ()
    ungrouped = dataclasses.replace(drilled().plans[0], groups=())
    wanted = dataclasses.replace(drilled(), plans=(ungrouped,))
    flat = asr_build(wanted, *(vm(n) for n in NAMES))
    assert ops(flat) == dict.fromkeys(NAMES, (Operation.TEST_FAILOVER, True))


# --- Stuck ----------------------------------------------------------------------------


def test_copies_up_past_keep_minutes_and_the_cleanup_deadline_make_the_drill_stuck() -> None:
    # keepMinutes 30, and the cleanup's deadline: twice the typical 10 min = 20 min.
    within = build(drilled(), *copies(), drill=record(running_at=NOW - timedelta(minutes=49)))
    assert {vp.phase for vp in within.vms} == {plan.Phase.DRILLING}
    late = build(drilled(), *copies(), drill=record(running_at=NOW - timedelta(minutes=62)))
    assert {vp.phase for vp in late.vms} == {plan.Phase.STUCK}
    reason = next(vp.reason for vp in late.vms if vp.name == "web01")
    assert reason.startswith("drill 2026-q4 stuck: test copies still up 32m past its keep time")
    assert "cleanup deadline 20m, the default for this fabric" in reason
    assert "never cancels" in reason
    assert late.drills["finance"].reason.startswith("drill 2026-q4 stuck")
    # Nothing cancelled: the cleanup is still asked, in reverse group order.
    assert ops(late) == {
        "sql01": (Operation.TEST_FAILOVER_CLEANUP, False),
        "web01": (Operation.TEST_FAILOVER_CLEANUP, True),
        "web02": (Operation.TEST_FAILOVER_CLEANUP, True),
    }
    assert not late.converged


def test_the_cleanup_deadline_comes_from_policy_deadlines() -> None:
    wanted = drilled()
    spec = dataclasses.replace(
        wanted.plans[0], deadlines=((Operation.TEST_FAILOVER_CLEANUP, 120.0),)
    )
    wanted = dataclasses.replace(wanted, plans=(spec,))
    late = build(wanted, *copies(), drill=record(running_at=NOW - timedelta(minutes=33)))
    assert {vp.phase for vp in late.vms} == {plan.Phase.STUCK}
    assert "cleanup deadline 2m, policy.deadlines.TestFailoverCleanup" in late.vms[0].reason


def test_a_dropped_drill_is_stuck_without_its_keep_time() -> None:
    wanted = drilled()
    dropped = dataclasses.replace(wanted, plans=(dataclasses.replace(wanted.plans[0], drill=None),))
    late = build(dropped, *copies(), drill=record(running_at=NOW - timedelta(minutes=21)))
    assert {vp.phase for vp in late.vms} == {plan.Phase.STUCK}
    assert "keepMinutes 0" in late.vms[0].reason


def test_a_test_job_past_its_deadline_is_stuck_and_followed() -> None:
    # TestFailover's default deadline: twice the typical 15 min.
    hung = job("sql01", Operation.TEST_FAILOVER, age=31 * 60)
    built = build(drilled(), vm("sql01", job=hung), vm("web01"), vm("web02"), drill=record())
    sql = next(vp for vp in built.vms if vp.name == "sql01")
    assert sql.phase is plan.Phase.STUCK
    assert "TestFailover to rtm running for 31m" in sql.reason
    assert sql.reason.startswith("drill 2026-q4 (starting): ")
    assert "sql01" not in {a.vm for a in built.actions}


def test_an_ended_drill_is_never_stuck() -> None:
    ended = build(
        drilled(),
        *(vm(n) for n in NAMES),
        drill=record(running_at=NOW - timedelta(hours=5), ended_at=NOW - timedelta(hours=4)),
    )
    assert {vp.phase for vp in ended.vms} == {plan.Phase.CONVERGED}
