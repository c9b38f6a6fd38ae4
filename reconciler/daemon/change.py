"""What a new valid revision changes that the daemon weighs before acting on it.

Two questions, each answered from the revision before, the new one, what the
fabric last reported and drctl's own journal:

- `unsettling`: does the revision move VMs of a plan, or widen what drctl may
  do to them (a consent to lose, overwrite or commit away writes, self-heal,
  an unordered failover)? Then the plan's settle window (`settleSeconds`)
  starts again from this revision, so that a quick revert of a bad merge
  does nothing, whether the merge moved VMs or only consented to something.
- `refusal`: does the revision leave VMs unmanaged while a move of theirs is
  in flight (a plan dropped, or every plan gone)? Then it is refused: the
  revision in force stays and carries the move on, rather than leaving VMs
  stopped at both sites, or a failover uncommitted, with nobody to finish it.
  A plan whose VMs all rest may be retired by removing it.

Pure functions; `daemon.loop` calls them when it reads a revision.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from reconciler.core.desired import DesiredState, DesiredVM, PlanSpec
from reconciler.core.state import Observed, ObservedVM, ProtectionState

# --- the settle window -----------------------------------------------------------


def unsettling(
    before: PlanSpec | None,
    after: PlanSpec,
    observed: Observed | None,
    was_moving: bool,
) -> list[str]:
    """Why this revision restarts the plan's settle window: [] when it does not.

    `before` is the plan in the revision in force until now (None: the plan is
    new, or no revision was in force); `was_moving` whether the plan was still
    moving under it. A plan at rest settles when the revision moves it; a plan
    already moving only when the revision sends a VM somewhere else (an
    unrelated commit must not hold a move half-way again and again). Either
    settles when the revision widens what drctl may do.
    """
    reasons = [f"it widens {what}" for what in widened(before, after)]
    if (not was_moving and _moves(before, after, observed, against_observed=True)) or (
        was_moving and _moves(before, after, observed, against_observed=False)
    ):
        reasons.insert(0, "it moves VMs")
    return reasons


def widened(before: PlanSpec | None, after: PlanSpec) -> list[str]:
    """The keys with which `after` lets drctl do more than `before` did, as the spec spells them.

    Adding or changing a consent counts, even one that looks narrower (a
    scoped `allowDataLoss` with another window): it consents to something
    the revision before did not.
    """
    found: dict[str, None] = {}
    if (before is None or not before.self_heal) and after.self_heal:
        found["selfHeal: true"] = None
    if (before is None or not before.unordered_failover) and after.unordered_failover:
        found["unorderedFailover: true"] = None
    if after.reprotect_after_unplanned == "auto" and (
        before is None or before.reprotect_after_unplanned != "auto"
    ):
        found["reprotectAfterUnplanned: auto"] = None
    was = {} if before is None else {vm.name: vm for vm in before.vms}
    for vm in after.vms:
        # A VM new to the plan is compared with one at every default: the
        # consents it arrives with are new.
        old = was.get(vm.name) or DesiredVM(
            vm.plan, vm.name, vm.active_site, vm.replication, False, vm.group
        )
        for key in _widened_vm(old, vm):
            found[key] = None
    return list(found)


def _widened_vm(old: DesiredVM, new: DesiredVM) -> Iterable[str]:
    if new.allow_data_loss and not old.allow_data_loss:
        yield "allowDataLoss: true"
    if new.data_loss_window is not None and new.data_loss_window != old.data_loss_window:
        yield "allowDataLoss: {from, until}"
    if new.data_loss_revision is not None and new.data_loss_revision != old.data_loss_revision:
        yield "allowDataLoss: {revision}"
    if new.discard_lost_writes is not None and new.discard_lost_writes != old.discard_lost_writes:
        yield "discardLostWrites"
    if new.commit_approved is not None and new.commit_approved != old.commit_approved:
        yield "commitApproved"
    if new.commit == "auto" and old.commit != "auto":
        yield "commit: auto"
    elif new.commit == "auto" and new.commit_after_seconds < old.commit_after_seconds:
        yield "a shorter commitAfterSeconds"
    if new.recovery_point != old.recovery_point:
        yield "recoveryPoint"
    if new.confirm_disable_replication and not old.confirm_disable_replication:
        yield "confirmDisableReplication: true"


def _moves(
    before: PlanSpec | None, after: PlanSpec, observed: Observed | None, *, against_observed: bool
) -> bool:
    """Whether a VM's desired site changed from `before`, or (`against_observed`, or for a
    VM new to the plan) differs from where the fabric reports it active."""
    was = {} if before is None else {vm.name: vm.active_site for vm in before.vms}
    for vm in after.vms:
        old = was.get(vm.name)
        if old is not None and old != vm.active_site:
            return True
        if old is None or against_observed:
            o = None if observed is None else observed.vms.get(vm.name)
            if o is not None and o.active_site != vm.active_site:
                return True
    return False


# --- VMs a revision would leave unmanaged ----------------------------------------


@dataclass(frozen=True)
class Moves:
    """What drctl knows of the moves in flight, besides the fabric's observation."""

    stopped: frozenset[str]  # VMs drctl stopped for a move (the journal: `stopped_by_drctl`)
    # VM -> the call drctl made whose end it has not seen, in words ("StopVM (job-000002)")
    open: Mapping[str, str]


def dropped(before: DesiredState, after: DesiredState) -> list[DesiredVM]:
    """The VMs `before` manages and `after` does not (on the same fabric), in plan order."""
    keeps = {(plan.fabric, vm.name) for plan in after.plans for vm in plan.vms}
    return [vm for plan in before.plans for vm in plan.vms if (plan.fabric, vm.name) not in keeps]


def refusal(
    before: DesiredState,
    after: DesiredState,
    observed: Mapping[str, Observed],
    moves: Moves,
) -> list[str]:
    """Why `after` may not replace `before` in force: [] when it may.

    `observed` is the last observation of each fabric `before` uses. A
    revision with no plan is refused whenever one with plans is in force: an
    empty spec directory is far more often a rename, a wrong path or a
    checkout half-way than a decision (README: how to retire every plan).
    """
    if not after.plans and before.plans:
        return [
            (
                "it holds no RecoveryPlan (every spec file removed or renamed?); restore the "
                "plans, or, to retire every plan, stop the daemon and remove in-force/ from "
                "its state dir"
            )
        ]
    fabric_of = {vm.name: plan.fabric for plan in before.plans for vm in plan.vms}
    reasons = []
    for vm in dropped(before, after):
        fabric = observed.get(fabric_of[vm.name])
        why = _in_flight(vm, fabric, moves)
        if why is not None:
            reasons.append(
                f"it drops {vm.name} of plan {vm.plan} while {why}; restore the plan (or "
                f"the VM) and let drctl finish, then remove it once its VMs rest"
            )
    return reasons


def _in_flight(vm: DesiredVM, observed: Observed | None, moves: Moves) -> str | None:
    """What move of `vm` is in flight, in words; None when the VM rests."""
    o: ObservedVM | None = None if observed is None else observed.vms.get(vm.name)
    if o is not None and o.job is not None and o.job.running:
        return f"its {o.job.operation} job {o.job.id} runs"
    if vm.name in moves.open:
        return f"the {moves.open[vm.name]} drctl started has not ended"
    if observed is None or observed.unreachable is not None:
        return "its fabric cannot be observed, so drctl cannot tell that it rests"
    if vm.name in moves.stopped and (o is None or not o.running):
        return "drctl stopped it for a move and no copy of it runs"
    if o is not None and o.protection_state is ProtectionState.COMMIT_PENDING:
        return "its failover waits for its commit"
    if (
        o is not None
        and o.protection_state is ProtectionState.COMMITTED
        and vm.replication is not None
    ):
        return "its failover is committed and replication is not reversed yet"
    return None
