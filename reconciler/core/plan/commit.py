"""What stands between a finished failover and its Commit: the recovery point, then the gate.

A Commit deletes every other recovery point: after it, the data the VM runs
from is final. So before it, the spec's `recoveryPoint` is applied (only an
unplanned failover leaves points to choose from; an older point than the one
running loses more writes and needs the consent of an unplanned failover),
and then `policy.commit` decides when: `auto` once the VM has run at the
target for `commitAfterSeconds`, `manual` once `commitApproved` names the
failover. Called by `decide.PlanContext` for a VM in CommitPending; pure.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

from reconciler.core import state
from reconciler.core.desired import DesiredVM
from reconciler.core.plan.context import PlanContext
from reconciler.core.plan.model import Phase, VMPlan
from reconciler.core.state import FailoverKind, Operation, PointType, RecoveryPoint

LATEST = "latest"
LATEST_APP = "latestAppConsistent"


def choose_point(wanted: str, points: tuple[RecoveryPoint, ...]) -> RecoveryPoint | None:
    """The point `recoveryPoint: wanted` names among `points` (newest first), or None.

    `latest` and `latestAppConsistent` are the newest of their kind; a time is
    the newest point taken at or before it (the last good moment an operator
    names); anything else is a point's id, as the fabric lists it.
    """
    if wanted == LATEST:
        return points[0] if points else None
    if wanted == LATEST_APP:
        return next((p for p in points if p.type is PointType.APP_CONSISTENT), None)
    when = _as_time(wanted)
    if when is not None:
        return next((p for p in points if p.time <= when), None)
    return next((p for p in points if p.id == wanted), None)


def points_text(points: tuple[RecoveryPoint, ...]) -> str:
    """The points a VM keeps, as a reason lists them."""
    if not points:
        return "none"
    return ", ".join(f"{p.id} ({p.time.isoformat()}, {p.type})" for p in points)


def decide_commit(
    ctx: PlanContext, vm: DesiredVM, o: state.ObservedVM, done: str, site: str, then: str = ""
) -> VMPlan:
    """The next step of a VM failed over to `site` and not committed yet."""
    first = _point_first(ctx, vm, o, done, site)
    if first is not None:
        return first
    return _gate(ctx, vm, o, done, site, then)


def _point_first(
    ctx: PlanContext, vm: DesiredVM, o: state.ObservedVM, done: str, site: str
) -> VMPlan | None:
    """ApplyRecoveryPoint, when the spec names a point other than the one the VM runs from.

    None when nothing is to apply: a planned failover (it lost nothing, there
    is no other point), the point already applied, or a fabric that took the
    point when it failed over and offers no other after it (`points_at_failover`:
    `failover.point_at_failover` chose it then).
    """
    if ctx.observed.points_at_failover:
        return None
    if o.last_failover is not FailoverKind.UNPLANNED or (
        vm.recovery_point == LATEST and o.applied_point is None
    ):
        return None
    points = o.recovery_points
    chosen = choose_point(vm.recovery_point, points)
    if chosen is None:
        return ctx.result(
            vm,
            o,
            Phase.BLOCKED,
            f"{done}; the fabric keeps no recovery point that `recoveryPoint: "
            f"{vm.recovery_point}` names (it keeps: {points_text(points)}); commit one of "
            "those, or `latest`, before the failover is committed",
        )
    if chosen.id == o.applied_point:
        return None
    applied = next((p for p in points if p.id == o.applied_point), None)
    older = applied is None or chosen.time < applied.time
    old_site = next((s for s in ctx.observed.sites if s != site), site)
    apply = f"applying recovery point {chosen.id} ({chosen.time.isoformat()}, {chosen.type})"
    if older:
        consented, consent = ctx.consent(vm, old_site)
        lost = "more writes" if applied is None else _more_lost(applied.time, chosen.time)
        if not consented:
            return ctx.result(
                vm,
                o,
                Phase.BLOCKED,
                f"{done}; {apply} loses {lost} than the point it runs from "
                f"({o.applied_point}). {consent}Commit allowDataLoss: {{from: {old_site}, "
                f"until: <time>}} in plan '{vm.plan}' (or on the VM) to accept that, or "
                "`recoveryPoint: latest` to keep the data it has",
            )
        apply = f"{apply}, allowed by {consent} (loses {lost})"
    return ctx.act(
        vm,
        o,
        Phase.COMMIT_PENDING,
        f"{done}; {apply} before the commit, as recoveryPoint says",
        Operation.APPLY_RECOVERY_POINT,
        site,
        recovery_point=chosen.id,
    )


def _gate(
    ctx: PlanContext, vm: DesiredVM, o: state.ObservedVM, done: str, site: str, then: str
) -> VMPlan:
    """Commit behind its gate: it deletes every other recovery point.

    `policy.commit: auto` commits once the VM has run at `site` for
    `commitAfterSeconds` after the failover; `manual` waits in
    CommitPending for `commitApproved: <the failover's job>` (or `any`).
    """
    job = o.last_failover_job
    if vm.commit == "manual":
        if vm.commit_approved is not None and vm.commit_approved in {job, "any"}:
            return ctx.act(
                vm,
                o,
                Phase.COMMIT_PENDING,
                f"{done}; committing, as commitApproved says{then}",
                Operation.COMMIT,
                site,
            )
        return ctx.result(
            vm,
            o,
            Phase.COMMIT_PENDING,
            f"{done}; commit waits for approval (it deletes the other recovery points): "
            f"commit `commitApproved: {job or 'any'}` on the VM or the plan",
        )
    if not ctx.observed.runs_at(o, site):
        return ctx.result(
            vm,
            o,
            Phase.COMMIT_PENDING,
            f"{done}, but no copy is seen running at {site}: the commit waits until it runs",
        )
    due = None
    if o.last_failover_at is not None and vm.commit_after_seconds > 0:
        due = o.last_failover_at + timedelta(seconds=vm.commit_after_seconds)
    decided = ctx.act(
        vm, o, Phase.COMMIT_PENDING, f"{done}; committing{then}", Operation.COMMIT, site
    )
    if due is None or due <= ctx.now or decided.action is None:
        return decided
    wait = (due - ctx.now).total_seconds()
    held = dataclasses.replace(
        decided.action, ready=False, waiting_for=("commit gate",), retry_at=due
    )
    return dataclasses.replace(
        decided,
        action=held,
        reason=f"{done}; committing once it has run at {site} for "
        f"{vm.commit_after_seconds:.0f}s (policy.commitAfterSeconds), in {wait:.0f}s{then}",
    )


def committed_note(vm: DesiredVM) -> str:
    """What a converged VM's reason adds when the spec names a recovery point."""
    if vm.recovery_point == LATEST:
        return ""
    return (
        f"; recoveryPoint {vm.recovery_point} changes nothing now: a point is chosen "
        "between an unplanned failover and its commit, and a commit cannot be undone"
    )


def _more_lost(applied: datetime, chosen: datetime) -> str:
    return f"{(applied - chosen).total_seconds():.0f} s more of writes"


def _as_time(text: str) -> datetime | None:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.utcoffset() is not None else None
