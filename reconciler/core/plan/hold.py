"""Held: what drctl leaves for a person to decide, and the reason that says what to commit.

Each case is Held until the spec changes, never guessed around: a
failover made outside drctl is not reverted on its own (`policy.selfHeal`, or
a revision made after the move, moves it again); two running copies after
such a failover are not fenced, since drctl cannot tell which took writes
last; and replication is not reversed after an unplanned failover over the
copy that may hold the only copy of the writes it lost, until
`discardLostWrites` names that failover. On a fabric that never reports power
(ASR) an old copy of Unknown power is Held alike, since waiting for its power
would never end: the same `discardLostWrites` answers for it. Called by `decide.PlanContext`
before it moves or fences a VM, and by `replication` before a reprotect; pure.
"""

from __future__ import annotations

from reconciler.core import state
from reconciler.core.desired import DesiredVM
from reconciler.core.plan import context
from reconciler.core.plan.model import Phase, VMPlan
from reconciler.core.state import FailoverKind


def moved_outside(ctx: context.PlanContext, vm: DesiredVM, o: state.ObservedVM) -> VMPlan | None:
    """Held: a failover drctl did not start is never reverted by drctl on its own.

    Only `policy.selfHeal` or a revision made after the move moves it again.
    """
    if o.active_site == vm.active_site or not _outside(ctx, o) or ctx.plan.self_heal:
        return None
    assert ctx.provenance is not None  # noqa: S101 (_outside)
    made, at = ctx.provenance.revision_made_at, o.last_failover_at
    if made is not None and at is not None and made > at:
        return None
    when = "at an unknown time" if at is None else f"at {at.isoformat()}"
    return ctx.result(
        vm,
        o,
        Phase.HELD,
        f"failed over to {o.active_site} outside drctl {when} by job "
        f"{o.last_failover_job}; commit `activeSite: {o.active_site}` to accept it, or "
        f"commit a revision made after that which keeps `activeSite: {vm.active_site}` "
        "to move it back",
    )


def copies_unsure(ctx: context.PlanContext, vm: DesiredVM, o: state.ObservedVM) -> VMPlan | None:
    """Held: two copies run and drctl cannot tell which one took writes last.

    A stale copy is stopped (or the VM moved at all) only when drctl's journal
    shows the failover that made the other copy the authoritative one.
    """
    stale = next((s for s in o.running if s != o.active_site), None)
    if stale is None or not _outside(ctx, o):
        return None
    return ctx.result(
        vm,
        o,
        Phase.HELD,
        f"copies run at {o.active_site} and {stale}, and the failover to {o.active_site} "
        f"(job {o.last_failover_job}) was made outside drctl, which cannot tell which copy "
        f"took writes last: stop the copy that must not run, in the fabric, after saving "
        "what it holds",
    )


def lost_writes(
    ctx: context.PlanContext, vm: DesiredVM, o: state.ObservedVM, old: str
) -> VMPlan | None:
    """Held: reversing replication after an unplanned failover overwrites the old copy.

    That copy may hold the only copy of the writes the failover lost: it
    waits for `discardLostWrites: <the failover's job>`, unless the plan says
    `policy.reprotectAfterUnplanned: auto`.
    """
    if o.last_failover is not FailoverKind.UNPLANNED or overwrite_accepted(ctx, vm, o):
        return None
    job = o.last_failover_job
    lost = o.last_failover_loss_seconds
    how_much = "some" if lost is None else f"up to {lost:.0f} s of"
    return ctx.result(
        vm,
        o,
        Phase.HELD,
        f"the copy at {old} holds {how_much} writes that never reached {o.active_site}; "
        f"salvage them, then commit `discardLostWrites: {job or 'any'}` to reverse "
        f"replication ({o.active_site}->{old} overwrites the copy at {old})",
    )


def overwrite_accepted(ctx: context.PlanContext, vm: DesiredVM, o: state.ObservedVM) -> bool:
    """The spec lets replication reverse over the old copy of the last failover.

    `discardLostWrites` naming that failover's job (or `any`), or the plan's
    `policy.reprotectAfterUnplanned: auto`.
    """
    job = o.last_failover_job
    return ctx.plan.reprotect_after_unplanned == "auto" or (
        vm.discard_lost_writes == "any" or (job is not None and vm.discard_lost_writes == job)
    )


def unseen_old_copy(
    ctx: context.PlanContext, vm: DesiredVM, o: state.ObservedVM, old: str, reachable: bool
) -> VMPlan:
    """Held: on a fabric that never reports power (ASR) an old copy of Unknown power
    stays Unknown, so waiting for it would never end; a person answers for it.
    While its site is disconnected the VM waits for the site, saying the same."""
    answer = (
        f"make sure it is off at {old}, salvage what it holds, then commit "
        f"`discardLostWrites: {o.last_failover_job or 'any'}` on the VM (reverse "
        f"replication {o.active_site}->{old} then overwrites it)"
    )
    if not reachable:
        return ctx.result(
            vm,
            o,
            Phase.WAITING_FOR_SITE,
            f"an old copy may still run at {old}, which is disconnected: waiting for {old} "
            f"to return; the fabric reports no power, so then {answer}",
        )
    return ctx.result(
        vm,
        o,
        Phase.HELD,
        "the fabric reports no power, so drctl cannot tell whether the old copy at "
        f"{old} still runs: {answer}",
    )


def _outside(ctx: context.PlanContext, o: state.ObservedVM) -> bool:
    """Whether the failover that made the active copy active was made outside drctl."""
    job = o.last_failover_job
    return (
        ctx.provenance is not None
        and job is not None
        and not ctx.provenance.is_own(job, o.last_failover_at)
    )
