"""The guard rails of issue 14 in the planner: stuck jobs, the blast radius, suspend.

- A job running past its deadline (the plan's `policy.deadlines`, else the
  default from the fabric's typical duration) puts the VM in phase Stuck,
  naming the job and how long it has run; no action (never cancelled). An
  initial replication has no deadline.
- A revision that would fail over more VMs than `maxFailoversPerRevision`
  (the plan's, or the global limit) moves none of them: every VM it would
  move is Blocked, saying how many and the limit. A move already under way
  is not counted and goes on.
- A suspended plan starts nothing; its VMs read Suspended, drift still
  reported (placed, protected, readiness).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from builders import NOW, desired, job, observed, vm, want

from reconciler.core import plan
from reconciler.core.desired import DesiredState
from reconciler.core.plan import guardrail
from reconciler.core.state import FailoverKind, Operation, ProtectionState


def with_policy(state: DesiredState, **changes: Any) -> DesiredState:
    return dataclasses.replace(
        state, plans=tuple(dataclasses.replace(p, **changes) for p in state.plans)
    )


def only(built: plan.Plan, name: str) -> plan.VMPlan:
    return next(vp for vp in built.vms if vp.name == name)


# --- stuck jobs --------------------------------------------------------------------------


def test_a_failover_past_the_plans_deadline_is_stuck_with_its_job_and_age() -> None:
    wanted = with_policy(
        desired(want("sql01", "rtm")), deadlines=((Operation.PLANNED_FAILOVER, 1800.0),)
    )
    seen = observed(vm("sql01", job=job("sql01", age=47 * 60 + 12, progress=0.4)))
    vp = only(plan.build_plan(wanted, seen, NOW), "sql01")
    assert vp.phase is plan.Phase.STUCK
    assert vp.action is None
    assert "job job-sql01" in vp.reason
    assert "running for 47m12s" in vp.reason
    assert "deadline of 30m" in vp.reason
    assert "never cancels" in vp.reason


def test_a_failover_within_its_deadline_is_failing_over() -> None:
    wanted = with_policy(
        desired(want("sql01", "rtm")), deadlines=((Operation.PLANNED_FAILOVER, 1800.0),)
    )
    seen = observed(vm("sql01", job=job("sql01", age=29 * 60)))
    assert only(plan.build_plan(wanted, seen, NOW), "sql01").phase is plan.Phase.FAILING_OVER


def test_the_default_deadline_comes_from_the_fabrics_typical_duration() -> None:
    typical = {Operation.PLANNED_FAILOVER: 600.0}
    seen = dataclasses.replace(
        observed(vm("sql01", job=job("sql01", age=1199))), typical_durations=typical
    )
    wanted = desired(want("sql01", "rtm"))
    assert only(plan.build_plan(wanted, seen, NOW), "sql01").phase is plan.Phase.FAILING_OVER
    late = dataclasses.replace(
        observed(vm("sql01", job=job("sql01", age=1201))), typical_durations=typical
    )
    assert only(plan.build_plan(wanted, late, NOW), "sql01").phase is plan.Phase.STUCK
    assert guardrail.deadline_seconds(wanted.plans[0], seen, Operation.PLANNED_FAILOVER) == 1200


def test_an_initial_replication_is_never_stuck() -> None:
    wanted = with_policy(desired(want("sql01")), deadlines=((Operation.PLANNED_FAILOVER, 60.0),))
    enabling = job("sql01", Operation.ENABLE_REPLICATION, age=30 * 24 * 3600)
    seen = observed(vm("sql01", replication=None, job=enabling))
    assert only(plan.build_plan(wanted, seen, NOW), "sql01").phase is plan.Phase.SYNCING
    # Reverse replication after an unplanned failover is a full copy too.
    full = job("sql01", Operation.REVERSE_REPLICATE, target="ams", age=30 * 24 * 3600)
    after_loss = vm("sql01", "rtm", protection=ProtectionState.COMMITTED, job=full)
    after_loss = dataclasses.replace(after_loss, last_failover=FailoverKind.UNPLANNED)
    wanted_rtm = desired(want("sql01", "rtm"))
    vp = only(plan.build_plan(wanted_rtm, observed(after_loss), NOW), "sql01")
    assert vp.phase is plan.Phase.REPROTECTING


# --- blast radius ------------------------------------------------------------------------


LIMIT_REASON = "this revision moves 4 VMs; the limit is 3: raise it in a commit or split the change"


def test_a_revision_moving_more_than_the_plans_limit_moves_none() -> None:
    names = ("sql01", "app01", "web01", "web02")
    wanted = with_policy(desired(*(want(n, "rtm") for n in names)), max_failovers_per_revision=3)
    built = plan.build_plan(wanted, observed(*(vm(n) for n in names)), NOW)
    assert built.actions == ()
    for vp in built.vms:
        assert vp.phase is plan.Phase.BLOCKED
        assert vp.reason == LIMIT_REASON


def test_a_revision_within_the_limit_moves() -> None:
    names = ("sql01", "app01", "web01")
    wanted = with_policy(desired(*(want(n, "rtm") for n in names)), max_failovers_per_revision=3)
    built = plan.build_plan(wanted, observed(*(vm(n) for n in names)), NOW)
    assert {a.vm for a in built.actions} == set(names)


def test_a_move_under_way_is_not_counted_and_goes_on() -> None:
    """Two VMs already failing over, two more asked: 2 moves, within a limit of 2."""
    names = ("sql01", "app01", "web01", "web02")
    wanted = with_policy(desired(*(want(n, "rtm") for n in names)), max_failovers_per_revision=2)
    seen = observed(
        vm("sql01", job=job("sql01")),
        vm("app01", running=()),  # drctl stopped it for its failover: under way
        vm("web01"),
        vm("web02"),
    )
    built = plan.build_plan(wanted, seen, NOW)
    assert {a.vm for a in built.actions} == {"app01", "web01", "web02"}
    tight = with_policy(wanted, max_failovers_per_revision=1)
    built = plan.build_plan(tight, seen, NOW)
    assert {a.vm for a in built.actions} == {"app01"}  # finishing a move under way
    assert only(built, "sql01").phase is plan.Phase.FAILING_OVER
    assert only(built, "web01").reason.startswith("this revision moves 2 VMs; the limit is 1")


def test_the_global_limit_counts_every_plan() -> None:
    """A bad merge of a default: every VM of every plan at once."""
    vms = [want(f"vm{i:02}", "rtm", plan=f"plan{i % 3}") for i in range(12)]
    seen = observed(*(vm(v.name) for v in vms))
    built = plan.build_plans(desired(*vms), {"embedded": seen}, NOW, max_failovers_per_revision=10)
    assert built.actions == ()
    assert {vp.phase for vp in built.vms} == {plan.Phase.BLOCKED}
    assert built.vms[0].reason == (
        "this revision moves 12 VMs; the limit is 10 (drctl run --max-failovers-per-revision): "
        "raise it or split the change"
    )
    assert plan.build_plans(desired(*vms), {"embedded": seen}, NOW).actions


# --- suspend -----------------------------------------------------------------------------


def test_a_suspended_plan_starts_nothing_and_still_reports_drift() -> None:
    wanted = with_policy(desired(want("sql01", "rtm"), want("web01")), suspend=True)
    seen = observed(vm("sql01"), vm("web01", last_sync_age=3600))
    built = plan.build_plan(wanted, seen, NOW)
    assert built.actions == ()
    sql, web = only(built, "sql01"), only(built, "web01")
    assert sql.phase is web.phase is plan.Phase.SUSPENDED
    assert not sql.placed and not sql.converged
    assert "spec.suspend" in sql.reason and "to rtm" in sql.reason
    assert web.placed and web.readiness.rpo_at_risk


def test_a_suspended_plan_follows_a_running_job() -> None:
    wanted = with_policy(desired(want("sql01", "rtm")), suspend=True)
    built = plan.build_plan(wanted, observed(vm("sql01", job=job("sql01", progress=0.5))), NOW)
    vp = only(built, "sql01")
    assert vp.phase is plan.Phase.SUSPENDED
    assert "PlannedFailover to rtm running (50%, job job-sql01)" in vp.reason
