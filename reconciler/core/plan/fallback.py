"""A move that cannot go on never leaves its application silently down (issue 9 rule 9).

Dependents stop before their predecessors fail over. When a VM of the plan
that must move is Blocked (its failover failed past its attempts, or the
fabric refuses it), the move waits for a person; meanwhile the VMs drctl
itself stopped for it are started back where they ran, in boot order, and no
further VM of the plan is stopped. A failure that will be retried (backoff)
is not Blocked: the plan waits for the retry instead. Called by
`plan.build_plan` once every VM of a plan is decided; pure.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from reconciler.core.plan.context import PlanContext, names_text
from reconciler.core.plan.model import Phase, VMPlan
from reconciler.core.state import Operation, ProtectionState


def after_blocked_move(
    ctx: PlanContext, decided: list[VMPlan], retry: Callable[[VMPlan], VMPlan]
) -> list[VMPlan]:
    """`decided` with the stopped copies started back and the stops held, when a
    moving VM of the plan is Blocked; unchanged otherwise. `retry` applies the
    attempts already spent to a changed decision."""
    blocked = [vp.name for vp in decided if vp.phase is Phase.BLOCKED and _moving(vp)]
    if not blocked:
        return decided
    why = f"{names_text(blocked)} {'is' if len(blocked) == 1 else 'are'} Blocked"
    out = []
    for vp in decided:
        changed = _start_back(ctx, vp, why) or _hold_stop(ctx, vp, why, blocked)
        out.append(vp if changed is None else retry(changed))
    return out


def _moving(vp: VMPlan) -> bool:
    o = vp.observed
    return o is not None and o.active_site != vp.desired.active_site


def _start_back(ctx: PlanContext, vp: VMPlan, why: str) -> VMPlan | None:
    """StartVM at the source for a VM drctl stopped for this move, known Off there."""
    o, vm = vp.observed, vp.desired
    stopped = () if ctx.provenance is None else ctx.provenance.stopped_by_drctl
    if (
        o is None
        or not _moving(vp)
        or vm.name not in stopped
        or o.protection_state is not ProtectionState.PROTECTED
        or (o.job is not None and o.job.running)
        or o.maybe_running
        or not ctx.observed.site_connected(o.active_site)
    ):
        return None
    source = o.active_site
    meanwhile = (
        f"starting it back at {source}, where drctl stopped it for the move, so that the "
        f"application runs meanwhile; fix what blocks it and commit a new revision to move "
        f"plan '{vm.plan}' again"
    )
    started = ctx.act(
        vm,
        o,
        Phase.STARTING,
        f"the move of plan '{vm.plan}' to {vm.active_site} cannot go on: {why}; {meanwhile}",
        Operation.START_VM,
        source,
        waiting_for=ctx.waiting_predecessors(vm, "running"),
        stage=ctx.stage(vm),
    )
    if vp.phase is Phase.BLOCKED:  # the VM that blocks the move: its reason comes first
        if started.action is None:  # the fabric does not let it start: it says why
            return dataclasses.replace(vp, reason=f"{vp.reason}; and {started.reason}")
        return dataclasses.replace(started, phase=Phase.BLOCKED, reason=f"{vp.reason}; {meanwhile}")
    return started


def _hold_stop(ctx: PlanContext, vp: VMPlan, why: str, blocked: list[str]) -> VMPlan | None:
    """No StopVM for a move that cannot go on: it would only take more of it down."""
    action, o = vp.action, vp.observed
    if action is None or o is None or action.operation is not Operation.STOP_VM:
        return None
    if not action.ready and set(action.waiting_for) & set(blocked):
        # Held already, saying for what: the VM that cannot fail over.
        return None
    if not _moving(vp) or action.target_site != o.active_site:
        return None
    return ctx.result(
        vp.desired,
        o,
        Phase.BLOCKED,
        f"moving from {o.active_site} to {vp.desired.active_site} waits: {why}; nothing more "
        f"of plan '{vp.desired.plan}' is stopped until that is fixed and a new revision committed",
    )
