"""Replication, once drctl knows which copy is authoritative: as the spec says it.

The VM runs where the spec wants it: replication is enabled in the spec's
direction, disabled only when the spec confirms it (on ASR that deletes the
way back), resynced where the fabric makes that an operation, or waited for
while it syncs. A VM that must move first gets replication towards its
target: enabled, or reversed after a committed failover (unless that would
overwrite lost writes, `hold`). Called by `decide.PlanContext`; pure.
"""

from __future__ import annotations

from datetime import datetime

from reconciler.core import state
from reconciler.core.desired import DesiredVM
from reconciler.core.plan import context, hold
from reconciler.core.plan.model import Phase, VMPlan
from reconciler.core.state import Operation, ProtectionState, ReplicationState


def decide_replication(ctx: context.PlanContext, vm: DesiredVM, o: state.ObservedVM) -> VMPlan:
    """The VM runs where it should; bring replication to what the spec says."""
    site = vm.active_site
    want = vm.replication
    rep = o.replication
    if want is None:
        if rep is None:
            return ctx.result(vm, o, Phase.CONVERGED, "")
        if not vm.confirm_disable_replication:
            # On ASR disabling replication deletes the replicated item: the
            # way back is gone, and rebuilding it is a full initial copy.
            return ctx.result(
                vm,
                o,
                Phase.BLOCKED,
                f"the spec says replication off, but {rep.direction} runs: turning it off "
                "removes the return path (on ASR it deletes the replicated item); add "
                "`confirmDisableReplication: true` beside `replication: off` if that is "
                "meant, or set replication back",
            )
        return ctx.act(
            vm,
            o,
            Phase.SYNCING,
            f"replication {rep.direction} is on but the spec says off; disabling it",
            Operation.DISABLE_REPLICATION,
            None,
        )
    if rep is None:
        return replicate_to(ctx, vm, o, want[1], "")
    if (rep.source, rep.target) != want:
        return ctx.result(
            vm,
            o,
            Phase.BLOCKED,
            f"replication flows {rep.direction} while "
            f"the VM runs at {site}: check replication in the fabric",
        )
    if rep.state is ReplicationState.RESYNC_REQUIRED and Operation.RESYNC in (o.allowed_operations):
        # A fabric whose resync is an operation of its own, not a schedule.
        return ctx.act(
            vm,
            o,
            Phase.SYNCING,
            f"replication {rep.direction} needs a resync; resyncing it",
            Operation.RESYNC,
            rep.target,
        )
    return ctx.result(vm, o, *_sync_status(rep, ctx.now))


def replicate_to(
    ctx: context.PlanContext, vm: DesiredVM, o: state.ObservedVM, target: str, purpose: str
) -> VMPlan:
    """Start replication from the active copy to `target`: a reprotect after a
    committed failover, else enabling it."""
    source = o.active_site
    if not ctx.observed.site_connected(target):
        return ctx.result(
            vm,
            o,
            Phase.WAITING_FOR_SITE,
            f"runs at {source}; replication "
            f"to {target}{purpose} needs site {target}, which is "
            f"disconnected: waiting for {target} to return",
        )
    if o.protection_state is ProtectionState.COMMITTED:
        salvage = hold.lost_writes(ctx, vm, o, target)
        if salvage is not None:
            return salvage
        return ctx.act(
            vm,
            o,
            Phase.REPROTECTING,
            f"failover to {source} committed; reversing replication to {source}->{target}{purpose}",
            Operation.REVERSE_REPLICATE,
            target,
        )
    return ctx.act(
        vm,
        o,
        Phase.SYNCING,
        f"runs at {source} with replication off; enabling {source}->{target}{purpose}",
        Operation.ENABLE_REPLICATION,
        target,
    )


def _sync_status(rep: state.Replication, now: datetime) -> tuple[Phase, str]:
    if rep.state is ReplicationState.REPLICATING and rep.health is state.Health.NORMAL:
        return Phase.CONVERGED, ""
    if rep.state in {ReplicationState.INITIAL_SYNC, ReplicationState.RESYNC_REQUIRED}:
        return Phase.SYNCING, f"replication {rep.direction}: {rep.state}, waiting for it to finish"
    if rep.state is ReplicationState.REPLICATING:
        age = (
            ""
            if rep.last_sync is None
            else (f", last sync {(now - rep.last_sync).total_seconds():.0f}s ago")
        )
        return Phase.SYNCING, (
            f"replication {rep.direction} is behind (health {rep.health}"
            f"{age}): waiting for it to catch up"
        )
    return Phase.BLOCKED, (
        f"replication {rep.direction} is {rep.state}: resume or repair it in the fabric"
    )
