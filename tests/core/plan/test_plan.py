"""Planner table tests: for each lifecycle state, the phase, reason and next action."""

from __future__ import annotations

from datetime import timedelta

import pytest
from builders import NOW, PROTECTED_OPS, desired, job, observed, vm, want

from reconciler.core import plan
from reconciler.core.desired import DesiredState, Group
from reconciler.core.plan import Phase
from reconciler.core.state import Health, Observed, Operation, ProtectionState, ReplicationState
from reconciler.core.state import TestFailoverState as DrillState

OP = Operation


def decide(
    d: DesiredState, o: Observed, attempts: plan.AttemptsByAction | None = None
) -> dict[str, plan.VMPlan]:
    built = plan.build_plan(d, o, NOW, attempts)
    return {vp.name: vp for vp in built.vms}


def test_vm_where_the_spec_wants_it_is_converged() -> None:
    got = decide(desired(want("sql01", "ams")), observed(vm("sql01", "ams")))["sql01"]
    assert got.phase is Phase.CONVERGED
    assert got.converged
    assert got.action is None
    assert got.reason == "runs at ams, replicating ams->rtm"


def test_move_starts_by_stopping_the_vm_before_a_planned_failover() -> None:
    got = decide(desired(want("sql01", "rtm")), observed(vm("sql01", "ams")))["sql01"]
    assert got.phase is Phase.STOPPING
    assert got.action is not None
    assert (got.action.operation, got.action.target_site, got.action.ready) == (
        OP.STOP_VM,
        "ams",
        True,
    )
    assert not got.placed


def test_stopped_vm_gets_a_planned_failover() -> None:
    got = decide(desired(want("sql01", "rtm")), observed(vm("sql01", "ams", running=())))["sql01"]
    assert got.phase is Phase.FAILING_OVER
    assert got.action is not None
    assert (got.action.operation, got.action.target_site) == (OP.PLANNED_FAILOVER, "rtm")
    assert "no data loss" in got.reason


def test_provider_that_cannot_stop_vms_fails_over_directly() -> None:
    o = observed(vm("sql01", "ams"), can_stop_vms=False)
    got = decide(desired(want("sql01", "rtm")), o)["sql01"]
    assert got.action is not None
    assert got.action.operation is OP.PLANNED_FAILOVER


def test_failover_done_is_committed() -> None:
    o = vm(
        "sql01",
        "rtm",
        protection=ProtectionState.COMMIT_PENDING,
        replication=None,
        allowed=frozenset({OP.COMMIT}),
    )
    got = decide(desired(want("sql01", "rtm")), observed(o))["sql01"]
    assert got.phase is Phase.COMMIT_PENDING
    assert got.action is not None
    assert got.action.operation is OP.COMMIT
    assert not got.placed  # not committed yet


def test_committed_failover_reverses_replication() -> None:
    o = vm(
        "sql01",
        "rtm",
        protection=ProtectionState.COMMITTED,
        replication=None,
        allowed=frozenset({OP.REVERSE_REPLICATE, OP.STOP_VM}),
    )
    got = decide(desired(want("sql01", "rtm")), observed(o))["sql01"]
    assert got.phase is Phase.REPROTECTING
    assert got.placed
    assert not got.protected
    assert got.action is not None
    assert (got.action.operation, got.action.target_site) == (OP.REVERSE_REPLICATE, "ams")


def test_reverse_replication_waits_for_a_disconnected_site() -> None:
    o = vm(
        "sql01", "rtm", protection=ProtectionState.COMMITTED, replication=None, allowed=frozenset()
    )
    got = decide(desired(want("sql01", "rtm")), observed(o, down=("ams",)))["sql01"]
    assert got.phase is Phase.WAITING_FOR_SITE
    assert got.action is None
    assert "waiting for ams to return" in got.reason


def test_reverse_replication_done_with_initial_sync_running_is_syncing() -> None:
    o = vm("sql01", "rtm", rstate=ReplicationState.INITIAL_SYNC)
    got = decide(desired(want("sql01", "rtm")), observed(o))["sql01"]
    assert got.phase is Phase.SYNCING
    assert got.placed
    assert not got.protected


def test_split_brain_old_copy_is_stopped_before_reverse_replication() -> None:
    o = vm(
        "sql01",
        "rtm",
        running=("ams", "rtm"),
        protection=ProtectionState.COMMITTED,
        replication=None,
        allowed=frozenset({OP.STOP_VM}),
    )
    got = decide(desired(want("sql01", "rtm")), observed(o))["sql01"]
    assert got.phase is Phase.STOPPING
    assert got.action is not None
    assert (got.action.operation, got.action.target_site) == (OP.STOP_VM, "ams")
    assert "split brain" in got.reason


def test_disconnected_source_without_consent_is_blocked_and_says_what_to_commit() -> None:
    o = vm("sql01", "ams", allowed=frozenset({OP.UNPLANNED_FAILOVER}), last_sync_age=42)
    got = decide(desired(want("sql01", "rtm")), observed(o, down=("ams",)))["sql01"]
    assert got.phase is Phase.BLOCKED
    assert got.action is None
    assert "site ams is disconnected" in got.reason
    assert "allowDataLoss: {from: ams, until: <time>}" in got.reason
    assert "plan 'finance'" in got.reason
    assert "42s" in got.reason
    assert "wait for site ams to return" in got.reason


def test_disconnected_source_with_consent_fails_over_unplanned_asking_for_the_shutdown() -> None:
    """Rule 3: the fabric is asked to shut the source down first where it can still
    reach it (ASR's sourceSiteOperations: Required goes on when it cannot)."""
    o = vm("sql01", "ams", allowed=frozenset({OP.UNPLANNED_FAILOVER}))
    got = decide(desired(want("sql01", "rtm", allow_data_loss=True)), observed(o, down=("ams",)))[
        "sql01"
    ]
    assert got.phase is Phase.FAILING_OVER
    assert got.action is not None
    assert got.action.operation is OP.UNPLANNED_FAILOVER
    assert got.action.shutdown_source is True


def test_resync_required_without_consent_is_blocked_naming_replication() -> None:
    o = vm(
        "sql01",
        "ams",
        rstate=ReplicationState.RESYNC_REQUIRED,
        health=Health.CRITICAL,
        allowed=frozenset({OP.UNPLANNED_FAILOVER, OP.STOP_VM}),
    )
    got = decide(desired(want("sql01", "rtm")), observed(o))["sql01"]
    assert got.phase is Phase.BLOCKED
    assert "replication ams->rtm is ResyncRequired" in got.reason
    assert "wait for replication to catch up" in got.reason


def test_resync_required_with_consent_shuts_the_reachable_source_down() -> None:
    o = vm(
        "sql01",
        "ams",
        rstate=ReplicationState.RESYNC_REQUIRED,
        health=Health.CRITICAL,
        allowed=frozenset({OP.UNPLANNED_FAILOVER, OP.STOP_VM}),
    )
    got = decide(desired(want("sql01", "rtm", allow_data_loss=True)), observed(o))["sql01"]
    assert got.action is not None
    assert got.action.operation is OP.UNPLANNED_FAILOVER
    assert got.action.shutdown_source is True


def test_failover_waits_for_a_disconnected_target() -> None:
    got = decide(
        desired(want("sql01", "rtm")),
        observed(vm("sql01", "ams", allowed=frozenset({OP.STOP_VM})), down=("rtm",)),
    )
    assert got["sql01"].phase is Phase.WAITING_FOR_SITE


def test_vm_with_a_job_running_gets_no_other_action() -> None:
    failover = job("sql01", OP.PLANNED_FAILOVER, job_id="job-1", target="rtm", progress=0.5)
    o = vm("sql01", "ams", running=(), allowed=frozenset(), job=failover)
    got = decide(desired(want("sql01", "ams")), observed(o))["sql01"]
    assert got.phase is Phase.FAILING_OVER
    assert got.action is None
    assert "PlannedFailover to rtm running (50%, job job-1)" in got.reason
    assert "the spec now wants ams: continuing after it ends" in got.reason


def test_a_vm_that_a_failover_is_moving_away_is_not_converged_while_it_still_runs_there() -> None:
    """An operator's failover away from the desired site, early on (the copy still runs,
    replication still flows): never "converged" (an apply would exit 0 as it leaves)."""
    for operation in (OP.PLANNED_FAILOVER, OP.UNPLANNED_FAILOVER, OP.STOP_VM):
        leaving = job("sql01", operation, job_id="job-9", target="rtm", progress=0.1)
        if operation is OP.STOP_VM:
            leaving = job("sql01", operation, job_id="job-9", target="ams", progress=0.1)
        o = vm("sql01", "ams", job=leaving)
        got = decide(desired(want("sql01", "ams")), observed(o))["sql01"]
        assert (got.converged, got.action) == (False, None), operation
        assert f"{operation}" in got.reason and "job job-9" in got.reason
    # A job that changes neither where it runs nor its protection leaves it converged.
    o = vm("sql01", "ams", job=job("sql01", OP.TEST_FAILOVER, target="rtm"))
    assert decide(desired(want("sql01", "ams")), observed(o))["sql01"].converged


def test_spec_reverted_after_failover_commits_then_fails_back() -> None:
    """Nothing is cancelled: the finished failover is committed, then failed back."""
    o = vm(
        "sql01",
        "rtm",
        protection=ProtectionState.COMMIT_PENDING,
        replication=None,
        allowed=frozenset({OP.COMMIT}),
    )
    got = decide(desired(want("sql01", "ams")), observed(o))["sql01"]
    assert got.action is not None
    assert got.action.operation is OP.COMMIT
    assert "failing back" in got.reason
    o = vm(
        "sql01",
        "rtm",
        protection=ProtectionState.COMMITTED,
        replication=None,
        allowed=frozenset({OP.REVERSE_REPLICATE}),
    )
    got = decide(desired(want("sql01", "ams")), observed(o))["sql01"]
    assert got.action is not None
    assert (got.action.operation, got.action.target_site) == (OP.REVERSE_REPLICATE, "ams")


def test_vm_stopped_at_its_desired_site_is_started() -> None:
    """A revert after the stops of a move: the VM is started again where it is."""
    o = vm("sql01", "ams", running=(), allowed=PROTECTED_OPS | {OP.START_VM})
    got = decide(desired(want("sql01", "ams")), observed(o))["sql01"]
    assert got.phase is Phase.STARTING
    assert got.action is not None
    assert got.action.operation is OP.START_VM


def test_replication_off_in_spec_disables_it_once_confirmed() -> None:
    off = want("sql01", "ams", replication=None)._replace(confirm_disable_replication=True)
    got = decide(desired(off), observed(vm("sql01", "ams")))
    assert got["sql01"].action is not None
    assert got["sql01"].action.operation is OP.DISABLE_REPLICATION


def test_replication_off_without_confirmation_is_blocked_and_keeps_the_return_path() -> None:
    got = decide(desired(want("sql01", "ams", replication=None)), observed(vm("sql01", "ams")))
    assert got["sql01"].action is None
    assert got["sql01"].phase is Phase.BLOCKED
    assert got["sql01"].reason.startswith(
        "the spec says replication off, but ams->rtm runs: turning it off removes the return "
        "path (on ASR it deletes the replicated item); add `confirmDisableReplication: true`"
    )


def test_replication_off_in_both_is_converged() -> None:
    o = vm(
        "sql01",
        "ams",
        replication=None,
        protection=ProtectionState.UNPROTECTED,
        allowed=frozenset({OP.ENABLE_REPLICATION}),
    )
    got = decide(desired(want("sql01", "ams", replication=None)), observed(o))["sql01"]
    assert got.converged


def test_unprotected_vm_gets_replication_enabled() -> None:
    o = vm(
        "sql01",
        "ams",
        replication=None,
        protection=ProtectionState.UNPROTECTED,
        allowed=frozenset({OP.ENABLE_REPLICATION}),
    )
    got = decide(desired(want("sql01", "ams")), observed(o))["sql01"]
    assert got.action is not None
    assert (got.action.operation, got.action.target_site) == (OP.ENABLE_REPLICATION, "rtm")


def test_vm_missing_from_the_fabric_is_blocked() -> None:
    got = decide(desired(want("ghost", "ams")), observed())["ghost"]
    assert got.phase is Phase.BLOCKED
    assert "not in the fabric" in got.reason


def test_fabric_vms_in_no_spec_are_unmanaged() -> None:
    built = plan.build_plan(
        desired(want("sql01", "ams")), observed(vm("sql01", "ams"), vm("legacy01", "ams")), NOW
    )
    assert built.unmanaged == ("legacy01",)
    assert [vp.name for vp in built.vms] == ["sql01"]


def test_action_the_fabric_does_not_allow_is_blocked_not_attempted() -> None:
    o = vm(
        "sql01",
        "rtm",
        protection=ProtectionState.COMMIT_PENDING,
        replication=None,
        allowed=frozenset(),
    )
    got = decide(desired(want("sql01", "rtm")), observed(o))["sql01"]
    assert got.phase is Phase.BLOCKED
    assert got.action is None
    assert "does not allow Commit now" in got.reason


def test_running_test_failover_blocks_a_failover() -> None:
    o = vm("sql01", "ams", test=DrillState.RUNNING)
    got = decide(desired(want("sql01", "rtm")), observed(o))["sql01"]
    assert got.phase is Phase.BLOCKED
    assert "test failover" in got.reason


def test_failed_attempts_back_off_then_block_with_the_fabric_error() -> None:
    d = desired(want("sql01", "rtm"))
    o = observed(vm("sql01", "ams", running=()))
    key = ("sql01", OP.PLANNED_FAILOVER)
    backing_off = decide(
        d, o, attempts={key: plan.Attempts(1, "disk busy", NOW + timedelta(seconds=4))}
    )
    assert backing_off["sql01"].action is not None
    assert backing_off["sql01"].action.ready is False
    assert "attempt 1 of 3 failed (disk busy), retrying in 4s" in backing_off["sql01"].reason
    due = decide(d, o, attempts={key: plan.Attempts(1, "disk busy", NOW)})
    assert due["sql01"].action is not None
    assert due["sql01"].action.ready is True
    exhausted = decide(d, o, attempts={key: plan.Attempts(3, "disk busy", NOW)})
    assert exhausted["sql01"].phase is Phase.BLOCKED
    assert exhausted["sql01"].action is None
    assert (
        "PlannedFailover failed 3 times for this revision: disk busy" in exhausted["sql01"].reason
    )


GROUPS = (
    Group("db", (), ("sql01",)),
    Group("app", ("db",), ("app01",)),
    Group("web", ("app",), ("web01", "web02")),
)


def three_tier(site: str = "rtm") -> DesiredState:
    return desired(
        want("sql01", site, group="db"),
        want("app01", site, group="app"),
        want("web01", site, group="web"),
        want("web02", site, group="web"),
        groups=GROUPS,
    )


def ready(built: plan.Plan) -> list[tuple[str, Operation]]:
    return [(a.vm, a.operation) for a in built.ready_actions()]


def test_dependents_are_stopped_first_in_reverse_group_order() -> None:
    o = observed(vm("sql01"), vm("app01"), vm("web01"), vm("web02"))
    built = plan.build_plan(three_tier(), o, NOW)
    assert ready(built) == [("web01", OP.STOP_VM), ("web02", OP.STOP_VM)]
    waiting = {a.vm: a.waiting_for for a in built.actions if not a.ready}
    # sql01 waits for every later group that still runs at the source, not only
    # the next one (a pinned group in between must not let it stop early).
    assert waiting == {"app01": ("web01", "web02"), "sql01": ("app01", "web01", "web02")}
    assert [a.vm for a in built.actions] == ["web01", "web02", "app01", "sql01"]

    o = observed(vm("sql01"), vm("app01"), vm("web01", running=()), vm("web02", running=()))
    assert ready(plan.build_plan(three_tier(), o, NOW)) == [("app01", OP.STOP_VM)]


def test_groups_fail_over_in_order_once_predecessors_run_at_the_target() -> None:
    o = observed(
        vm("sql01", running=()),
        vm("app01", running=()),
        vm("web01", running=()),
        vm("web02", running=()),
    )
    built = plan.build_plan(three_tier(), o, NOW)
    assert ready(built) == [("sql01", OP.PLANNED_FAILOVER)]
    by_vm = {vp.name: vp for vp in built.vms}
    assert "waiting for sql01" in by_vm["app01"].reason

    # db failed over (commit still pending): app may go, web still waits for app.
    db_done = vm(
        "sql01",
        "rtm",
        protection=ProtectionState.COMMIT_PENDING,
        replication=None,
        allowed=frozenset({OP.COMMIT}),
    )
    o = observed(db_done, vm("app01", running=()), vm("web01", running=()), vm("web02", running=()))
    built = plan.build_plan(three_tier(), o, NOW)
    assert ready(built) == [("app01", OP.PLANNED_FAILOVER), ("sql01", OP.COMMIT)]


def test_plan_is_converged_only_when_every_vm_is() -> None:
    o = observed(vm("sql01", "rtm"), vm("app01", "rtm"), vm("web01", "rtm"), vm("web02", "ams"))
    built = plan.build_plan(three_tier(), o, NOW)
    assert not built.converged
    assert not built.plan_converged("finance")
    o = observed(vm("sql01", "rtm"), vm("app01", "rtm"), vm("web01", "rtm"), vm("web02", "rtm"))
    assert plan.build_plan(three_tier(), o, NOW).converged


@pytest.mark.parametrize("age,at_risk", [(10.0, False), (61.0, True)])
def test_readiness_flags_rpo_at_risk(age: float, at_risk: bool) -> None:
    got = decide(desired(want("sql01", "rtm")), observed(vm("sql01", "ams", last_sync_age=age)))
    assert got["sql01"].readiness.rpo_at_risk is at_risk
    assert got["sql01"].readiness.last_sync_age_seconds == age


def test_no_vm_is_stopped_while_another_vm_of_the_plan_cannot_fail_over() -> None:
    """Stopping web02 for a move that web01's lagging replication prevents is an outage for nothing."""
    lagging = vm(
        "web01", health=Health.WARNING, allowed=frozenset({OP.UNPLANNED_FAILOVER, OP.STOP_VM})
    )
    built = plan.build_plan(
        desired(want("web01", "rtm"), want("web02", "rtm")),
        observed(lagging, vm("web02")),
        NOW,
    )
    assert ready(built) == []
    by_vm = {vp.name: vp for vp in built.vms}
    assert by_vm["web01"].phase is Phase.BLOCKED
    assert by_vm["web02"].phase is Phase.STOPPING
    assert "holding the stop: web01 cannot fail over now" in by_vm["web02"].reason
    # once web01 can move again, the stops go ahead
    built = plan.build_plan(
        desired(want("web01", "rtm"), want("web02", "rtm")),
        observed(vm("web01"), vm("web02")),
        NOW,
    )
    assert ready(built) == [("web01", OP.STOP_VM), ("web02", OP.STOP_VM)]


def test_commit_waits_for_the_site_it_needs() -> None:
    o = vm(
        "sql01",
        "rtm",
        protection=ProtectionState.COMMIT_PENDING,
        replication=None,
        allowed=frozenset(),
    )
    got = decide(desired(want("sql01", "rtm")), observed(o, down=("rtm",)))["sql01"]
    assert got.phase is Phase.WAITING_FOR_SITE
    assert "site rtm is disconnected: waiting for it to return" in got.reason


def test_a_vm_whose_interrupted_call_drctl_cannot_settle_is_blocked_with_the_reason() -> None:
    """The journal's unsettled entry (engine.adopt): no action until a new revision."""
    why = "drctl cannot tell which of jobs job-1, job-3 is the StopVM it called"
    unsettled = plan.Provenance(revision="rev1", unsettled={"sql01": why})
    # web01 in a plan of its own: in sql01's, nothing would stop while sql01 is Blocked.
    built = plan.build_plan(
        desired(want("sql01", "rtm"), want("web01", "rtm", plan="hr")),
        observed(vm("sql01", "ams"), vm("web01", "ams")),
        NOW,
        provenance=unsettled,
    )
    held, other = built.vms
    assert (held.phase, held.reason, held.action) == (Phase.BLOCKED, why, None)
    assert other.action is not None
    assert [a.vm for a in built.actions] == ["web01"]
