"""A grouped plan moved whole by the fabric's plan-level operations (ASR recovery plans).

A fabric that cannot stop VMs (ASR) keeps a grouped plan's order only through
an operation of its own on the whole plan (`Observed.plan_failover`): it shuts
the VMs down in reverse group order, fails them over, boots them by group.
That operation moves every VM of the plan, so it is asked only when the plan
moves whole: every VM wants the target, each consents to what an unplanned
one may lose, none asks a recovery point other than the latest (the plan
boots every VM from its latest point, in boot order), and none waits for
something else (its own job, a person, a hold). Otherwise nothing of the
plan moves, with a reason naming the VM: all or nothing, as on every path (an
application split across two sites is down at both), and moving the others
VM by VM would break the group order the plan exists for. A move of some
VMs only goes VM by VM, so it is Blocked unless `policy.unorderedFailover`.

After such a failover the plan's commit and reprotect go through the plan
as well when every VM of it is at that step and its own gate holds (`merge`,
once every VM is decided); otherwise VM by VM. Called by `failover` and
`plan.build_plan`; pure.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from reconciler.core import state
from reconciler.core.desired import DesiredVM
from reconciler.core.plan import context, hold
from reconciler.core.plan.context import names_text
from reconciler.core.plan.model import Phase, VMPlan
from reconciler.core.state import Operation, ProtectionState, TestFailoverState

LATEST = "latest"  # as commit.LATEST: the point an unplanned failover boots
_GATE = "commit gate"  # what a commit held by commitAfterSeconds waits for (commit._gate)
# The steps after a plan-level failover that the plan makes whole too.
_THEN = frozenset({Operation.COMMIT, Operation.REVERSE_REPLICATE})


def moves_whole(ctx: context.PlanContext) -> bool:
    """Whether this plan's moves go through the fabric's plan-level operations."""
    return bool(
        ctx.plan.groups
        and not ctx.plan.unordered_failover
        and not ctx.observed.can_stop_vms
        and ctx.observed.plan_failover
    )


def boot_groups(ctx: context.PlanContext) -> tuple[tuple[str, ...], ...]:
    """Every VM of the plan in boot groups, in boot order; VMs of no group boot last."""
    groups = tuple(
        tuple(g.vms) for g in sorted(ctx.plan.groups, key=lambda g: ctx.rank.get(g.name, 0))
    )
    grouped = {n for g in groups for n in g}
    loose = tuple(v.name for v in ctx.plan.vms if v.name not in grouped)
    return (*groups, loose) if loose else groups


def failover(
    ctx: context.PlanContext,
    vm: DesiredVM,
    o: state.ObservedVM,
    source: str,
    target: str,
    move: str,
) -> VMPlan | None:
    """The whole plan's failover, asked once, by the first VM in boot order.

    None when the rest of a move is left (some VMs moved already, or a VM of
    the plan is not where a plan failover starts): it goes VM by VM.
    """
    staying = [d.name for d in ctx.plan.vms if d.active_site != target]
    if staying:
        return ctx.result(
            vm,
            o,
            Phase.BLOCKED,
            f"{move}: plan '{vm.plan}' keeps {names_text(staying)} at {source}; this fabric "
            "cannot stop VMs, so only its plan-level failover keeps the group order, and "
            "that moves every VM of the plan: move the whole plan, or commit "
            "`policy.unorderedFailover: true` to move these VMs one by one without the "
            "group order",
        )
    seen = {d.name: ctx.observed.vms.get(d.name) for d in ctx.plan.vms}
    waits: list[tuple[str, str, bool]] = []  # (vm, why, only a person ends it)
    for d in ctx.plan.vms:
        s = seen[d.name]
        if s is None:
            return None  # Blocked VM by VM: not in the fabric
        why = _holds_plan(ctx, d, s)
        if why is not None:
            waits.append((d.name, *why))
        elif s.active_site != source or s.protection_state is not ProtectionState.PROTECTED:
            return None  # the rest of a move: VM by VM
    free = [(d, s) for d in ctx.plan.vms if (s := seen[d.name]) is not None]
    free = [(d, s) for d, s in free if d.name not in {w[0] for w in waits}]
    whole = f"{move}: with plan '{vm.plan}' through the fabric's plan-level failover"
    if any(human for _, _, human in waits):
        texts = "; ".join(why for _, why, _ in waits)
        return ctx.result(
            vm,
            o,
            Phase.BLOCKED,
            f"{whole}, which would move every VM of it, and {texts}: nothing of the plan "
            "moves until then",
        )
    planned = all(Operation.PLANNED_FAILOVER in s.allowed_operations for _, s in free)
    if not planned:
        if not all(Operation.UNPLANNED_FAILOVER in s.allowed_operations for _, s in free):
            return None  # Blocked VM by VM, each saying what the fabric allows
        refused = [d.name for d, _ in free if not ctx.consent(d, source)[0]]
        if vm.name in refused:
            return None  # Blocked VM by VM, with the consent it needs
        if refused:
            return ctx.result(
                vm,
                o,
                Phase.BLOCKED,
                f"{whole}: it can only be unplanned, and it would move "
                f"{names_text(refused)} too, which may not lose writes: nothing of the plan "
                f"moves until every VM of it consents (allowDataLoss)",
            )
        asking = [d for d, _ in free if d.recovery_point != LATEST]
        if asking:
            first = asking[0]
            return ctx.result(
                vm,
                o,
                Phase.BLOCKED,
                f"{whole}: it can only be unplanned, and it boots every VM of the plan from "
                f"its latest recovery point, in boot order, but {first.name} asks "
                f"`recoveryPoint: {first.recovery_point}` (its dependents would boot on data "
                f"it is then rolled back from): commit `recoveryPoint: latest` on "
                f"{names_text([d.name for d in asking])}, or `policy.unorderedFailover: "
                "true` to fail the VMs over one by one (each boots its point before its "
                "commit)",
            )
    groups = boot_groups(ctx)
    leader = groups[0][0] if groups and groups[0] else vm.name
    waiting = [name for name, _, _ in waits]
    for_them = "" if not waits else f"; it waits for {'; '.join(why for _, why, _ in waits)}"
    if vm.name != leader:
        return ctx.result(vm, o, Phase.FAILING_OVER, f"{whole} (asked for {leader}){for_them}")
    if planned:
        return ctx.act(
            vm,
            o,
            Phase.FAILING_OVER,
            f"{move}: planned failover of plan '{vm.plan}' through the fabric's plan-level "
            "failover (it shuts down in reverse group order, fails over, boots by group)"
            f"{for_them}",
            Operation.PLANNED_FAILOVER,
            target,
            waiting_for=waiting,
            plan_groups=groups,
        )
    return ctx.act(
        vm,
        o,
        Phase.FAILING_OVER,
        f"{move}: unplanned failover of plan '{vm.plan}' through the fabric's plan-level "
        f"failover, allowed for every VM of it ({ctx.consent(vm, source)[1]}){for_them}",
        Operation.UNPLANNED_FAILOVER,
        target,
        waiting_for=waiting,
        shutdown_source=True,
        plan_groups=groups,
    )


def _holds_plan(
    ctx: context.PlanContext, d: DesiredVM, s: state.ObservedVM
) -> tuple[str, bool] | None:
    """Why VM `d` keeps its plan from moving whole now, and whether only a person ends it."""
    if s.protection_state is ProtectionState.UNKNOWN:
        return f"the protection state of {d.name} is unknown", True
    unsettled = None if ctx.provenance is None else ctx.provenance.unsettled.get(d.name)
    if unsettled is not None:
        return f"{d.name} starts nothing until a new revision ({unsettled})", True
    if s.job is not None and s.job.suspended:
        return f"{d.name} waits for a person in the fabric (job {s.job.id})", True
    if s.job is not None and s.job.running:
        return f"{d.name} (job {s.job.id}, {s.job.operation}, runs on it)", False
    if hold.moved_outside(ctx, d, s) is not None or hold.copies_unsure(ctx, d, s) is not None:
        return f"{d.name} is Held (a person decides: see its reason)", True
    if s.test_failover is TestFailoverState.RUNNING:
        return f"a test failover of {d.name} runs (clean it up first)", True
    return None


def merge(ctx: context.PlanContext, decided: list[VMPlan]) -> list[VMPlan]:
    """`decided` with the plan's commits (or reprotects) made one plan-level operation.

    Only when the plan moves whole, and every VM of it decided that same step
    to the same site, each ready or held only by its commit gate's time: the
    plan's action is ready once every gate holds. Unchanged otherwise (a VM
    waiting for approval, applying its recovery point, Blocked: VM by VM).
    """
    if not moves_whole(ctx) or not decided:
        return decided
    actions = [vp.action for vp in decided]
    first = actions[0]
    if first is None or first.operation not in _THEN or first.plan_groups:
        return decided
    same = all(
        a is not None
        and a.operation is first.operation
        and a.target_site == first.target_site
        and (a.ready or a.waiting_for == (_GATE,))
        for a in actions
    )
    if not same:
        return decided
    groups = boot_groups(ctx)
    leader = groups[0][0] if groups and groups[0] else decided[0].name
    held = [a.retry_at for a in actions if a is not None and not a.ready]
    due: datetime | None = max((t for t in held if t is not None), default=None)
    out = []
    for vp in decided:
        action = vp.action
        assert action is not None  # noqa: S101 (same)
        if vp.name != leader:
            out.append(
                dataclasses.replace(
                    vp,
                    action=None,
                    reason=f"{vp.reason}, with plan '{vp.plan}' through the fabric's "
                    f"plan-level {action.operation} (asked for {leader})",
                )
            )
            continue
        whole = dataclasses.replace(
            action,
            ready=not held,
            waiting_for=(_GATE,) if held else (),
            retry_at=due,
            plan_groups=groups,
        )
        out.append(
            dataclasses.replace(
                vp,
                action=whole,
                reason=f"{vp.reason}, with every VM of plan '{vp.plan}' through the "
                f"fabric's plan-level {action.operation}",
            )
        )
    return out
