"""The spec's recovery point is applied before the commit (issue 9 rule 6).

Only an unplanned failover leaves points to choose from. A point older than
the one the VM runs from loses more writes: it needs the consent of an
unplanned failover. After the commit no point can be chosen any more, and the
reason says so.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

import pytest
from builders import NOW, desired, observed, vm, want

from reconciler.core import plan
from reconciler.core.desired import DesiredVM
from reconciler.core.plan import Phase
from reconciler.core.plan.commit import choose_point
from reconciler.core.state import (
    FailoverKind,
    ObservedVM,
    Operation,
    PointType,
    ProtectionState,
    RecoveryPoint,
)

CRASH, APP = PointType.CRASH_CONSISTENT, PointType.APP_CONSISTENT
T = NOW - timedelta(minutes=10)
POINTS = (
    RecoveryPoint("rp-3", T, CRASH),
    RecoveryPoint("rp-2", T - timedelta(minutes=5), APP),
    RecoveryPoint("rp-1", T - timedelta(minutes=10), CRASH),
)
PENDING_OPS = frozenset({Operation.COMMIT, Operation.APPLY_RECOVERY_POINT})


def failed_over(
    *, kind: FailoverKind = FailoverKind.UNPLANNED, applied: str = "rp-3"
) -> ObservedVM:
    """sql01 failed over to rtm by job-000003, unplanned, booted from `applied`."""
    return dataclasses.replace(
        vm("sql01", "rtm", running=("rtm",), allowed=PENDING_OPS),
        protection_state=ProtectionState.COMMIT_PENDING,
        replication=None,
        last_failover=kind,
        last_failover_job="job-000003",
        last_failover_at=NOW - timedelta(seconds=120),
        recovery_points=POINTS,
        applied_point=applied,
    )


def decide(wanted: DesiredVM, o: ObservedVM) -> plan.VMPlan:
    (vp,) = plan.build_plan(desired(wanted), observed(o), NOW).vms
    return vp


def at_rtm(
    point: str,
    *,
    allow_data_loss: bool = False,
    data_loss_window: tuple[str, datetime] | None = None,
) -> DesiredVM:
    return want("sql01", "rtm", allow_data_loss=allow_data_loss)._replace(
        recovery_point=point, data_loss_window=data_loss_window
    )


@pytest.mark.parametrize(
    ("wanted", "chosen"),
    [
        ("latest", "rp-3"),
        ("latestAppConsistent", "rp-2"),
        ((T - timedelta(minutes=1)).isoformat(), "rp-2"),  # the newest at or before
        ((T - timedelta(minutes=10)).isoformat(), "rp-1"),
        ("rp-1", "rp-1"),
        ((T - timedelta(hours=1)).isoformat(), None),
        ("rp-9", None),
    ],
)
def test_a_recovery_point_is_named_by_keyword_time_or_id(wanted: str, chosen: str | None) -> None:
    point = choose_point(wanted, POINTS)
    assert (None if point is None else point.id) == chosen


def test_latest_commits_the_point_the_failover_booted() -> None:
    vp = decide(at_rtm("latest"), failed_over())
    assert vp.action is not None
    assert vp.action.operation is Operation.COMMIT


def test_an_older_point_without_consent_is_blocked_and_says_what_to_commit() -> None:
    vp = decide(at_rtm("latestAppConsistent"), failed_over())
    assert (vp.phase, vp.action) == (Phase.BLOCKED, None)
    assert vp.reason == (
        f"failed over to rtm; applying recovery point rp-2 ({POINTS[1].time.isoformat()}, "
        "AppConsistent) loses 300 s more of writes than the point it runs from (rp-3). "
        "Commit allowDataLoss: {from: ams, until: <time>} in plan 'finance' (or on the VM) to "
        "accept that, or `recoveryPoint: latest` to keep the data it has"
    )


def test_an_older_point_with_consent_is_applied_before_the_commit() -> None:
    vp = decide(at_rtm("latestAppConsistent", allow_data_loss=True), failed_over())
    assert vp.phase is Phase.COMMIT_PENDING
    assert vp.action is not None
    assert (vp.action.operation, vp.action.recovery_point, vp.action.ready) == (
        Operation.APPLY_RECOVERY_POINT,
        "rp-2",
        True,
    )
    assert "allowed by allowDataLoss (loses 300 s more of writes)" in vp.reason


def test_an_expired_consent_does_not_allow_an_older_point() -> None:
    wanted = at_rtm("rp-1", data_loss_window=("ams", NOW - timedelta(seconds=1)))
    vp = decide(wanted, failed_over())
    assert vp.phase is Phase.BLOCKED
    assert "allowDataLoss from ams expired at" in vp.reason


def test_a_newer_point_than_the_one_applied_needs_no_consent() -> None:
    vp = decide(at_rtm("latest"), failed_over(applied="rp-1"))
    assert vp.action is not None
    assert (vp.action.operation, vp.action.recovery_point) == (
        Operation.APPLY_RECOVERY_POINT,
        "rp-3",
    )


def test_once_the_point_is_applied_the_commit_follows() -> None:
    vp = decide(at_rtm("rp-2", allow_data_loss=True), failed_over(applied="rp-2"))
    assert vp.action is not None
    assert vp.action.operation is Operation.COMMIT


def test_a_point_the_fabric_does_not_keep_is_blocked_with_the_points_it_keeps() -> None:
    vp = decide(at_rtm("rp-9"), failed_over())
    assert (vp.phase, vp.action) == (Phase.BLOCKED, None)
    assert vp.reason.startswith(
        "failed over to rtm; the fabric keeps no recovery point that `recoveryPoint: rp-9` "
        f"names (it keeps: rp-3 ({POINTS[0].time.isoformat()}, CrashConsistent), rp-2"
    )


def test_a_planned_failover_has_no_point_to_choose() -> None:
    vp = decide(at_rtm("rp-1"), failed_over(kind=FailoverKind.PLANNED))
    assert vp.action is not None
    assert vp.action.operation is Operation.COMMIT


def test_after_the_commit_the_reason_says_the_point_cannot_change() -> None:
    protected = vm("sql01", "rtm", replication="rtm->ams")
    vp = decide(at_rtm("rp-1"), protected)
    assert vp.phase is Phase.CONVERGED
    assert vp.reason == (
        "runs at rtm, replicating rtm->ams; recoveryPoint rp-1 changes nothing now: a point "
        "is chosen between an unplanned failover and its commit, and a commit cannot be undone"
    )


# --- a fabric that takes the point only when it fails over (Hyper-V Replica) ---------------

UNPLANNED_ONLY = frozenset({Operation.UNPLANNED_FAILOVER, Operation.TEST_FAILOVER})


def at_failover_time(o: ObservedVM, wanted: DesiredVM) -> plan.VMPlan:
    seen = dataclasses.replace(observed(o, down=("ams",)), points_at_failover=True)
    (vp,) = plan.build_plan(desired(wanted), seen, NOW).vms
    return vp


def ams_dark() -> ObservedVM:
    """sql01 active at ams, which is dark: only an unplanned failover to rtm is allowed."""
    return dataclasses.replace(
        vm("sql01", "ams", running=(), allowed=UNPLANNED_ONLY), recovery_points=POINTS
    )


def test_where_points_are_taken_at_failover_the_unplanned_failover_names_the_point() -> None:
    vp = at_failover_time(ams_dark(), at_rtm("rp-1", allow_data_loss=True))
    assert vp.action is not None
    assert (vp.action.operation, vp.action.recovery_point) == (
        Operation.UNPLANNED_FAILOVER,
        "rp-1",
    )
    assert "to recovery point rp-1" in vp.reason
    assert "may lose up to 1200s of writes" in vp.reason  # back to rp-1, not the last sync


def test_where_points_are_taken_at_failover_an_older_point_still_needs_consent() -> None:
    vp = at_failover_time(ams_dark(), at_rtm("rp-1"))
    assert (vp.phase, vp.action) == (Phase.BLOCKED, None)
    assert "allowDataLoss: {from: ams, until: <time>}" in vp.reason


def test_where_points_are_taken_at_failover_an_unknown_point_blocks_the_failover() -> None:
    vp = at_failover_time(ams_dark(), at_rtm("rp-9", allow_data_loss=True))
    assert (vp.phase, vp.action) == (Phase.BLOCKED, None)
    assert "keeps no recovery point that `recoveryPoint: rp-9` names" in vp.reason


def test_where_points_are_taken_at_failover_latest_is_a_plain_unplanned_failover() -> None:
    vp = at_failover_time(ams_dark(), at_rtm("latest", allow_data_loss=True))
    assert vp.action is not None
    assert (vp.action.operation, vp.action.recovery_point) == (Operation.UNPLANNED_FAILOVER, None)


def test_where_points_are_taken_at_failover_no_apply_recovery_point_is_proposed_after_it() -> None:
    pending = dataclasses.replace(failed_over(), allowed_operations=frozenset({Operation.COMMIT}))
    seen = dataclasses.replace(observed(pending), points_at_failover=True)
    (vp,) = plan.build_plan(desired(at_rtm("rp-1", allow_data_loss=True)), seen, NOW).vms
    assert vp.action is not None
    assert vp.action.operation is Operation.COMMIT
