"""How a VM that must move fails over: planned, unplanned with consent, dependents first.

A planned failover loses nothing and is taken whenever the fabric allows it;
otherwise an unplanned one needs the spec's consent to lose the writes not
yet replicated (`allowDataLoss`, standing or scoped to a site and a time or
to a revision). In a grouped plan the dependents stop first, at the source,
and the groups fail over in boot order; all or nothing: while any moving VM
of the plan cannot fail over, none does. Called by `decide.PlanContext` for a
VM whose authoritative copy runs at the other site, for the plan's failover
path and for the VMs that cannot move; pure.
"""

from __future__ import annotations

from datetime import datetime

from reconciler.core import state
from reconciler.core.desired import DesiredVM
from reconciler.core.plan import commit, context, plan_level
from reconciler.core.plan.model import Phase, VMPlan
from reconciler.core.state import Operation, ProtectionState, ReplicationState


def decide_failover(
    ctx: context.PlanContext, vm: DesiredVM, o: state.ObservedVM, source: str, target: str
) -> VMPlan:
    """The next step of a VM active at `source` that the spec wants at `target`.

    Its replication is on and it has not failed over already: `decide` commits or
    reprotects such a VM first.
    """
    rep = o.replication
    assert rep is not None  # noqa: S101 (checked by the caller)
    if o.test_failover is state.TestFailoverState.RUNNING:
        return ctx.result(
            vm,
            o,
            Phase.BLOCKED,
            f"a test failover of {vm.name} is running "
            f"at {rep.target}: clean it up (TestFailoverCleanup) before "
            f"failing over to {target}",
        )
    if rep.target != target:
        return ctx.result(
            vm,
            o,
            Phase.BLOCKED,
            f"replication flows {rep.direction}, "
            f"not towards {target}: check replication in the fabric",
        )
    if not ctx.observed.site_connected(target):
        return ctx.result(
            vm,
            o,
            Phase.WAITING_FOR_SITE,
            f"failover to {target} needs site {target}, which is disconnected: waiting for it",
        )
    if rep.state is ReplicationState.INITIAL_SYNC:
        return ctx.result(
            vm,
            o,
            Phase.SYNCING,
            f"initial replication {rep.direction} "
            f"still running: the failover to {target} waits for it",
        )
    predecessors = ctx.waiting_predecessors(vm, "target")
    move = f"moving from {source} to {target}"
    blind = not ctx.observed.can_stop_vms and ctx.plan.groups and not ctx.plan.unordered_failover
    if plan_level.moves_whole(ctx):
        whole = plan_level.failover(ctx, vm, o, source, target, move)
        if whole is not None:
            return whole
    elif blind:
        # Dependents first needs a stop before each failover; a fabric that
        # cannot stop VMs orders a grouped plan only through a plan-level
        # failover of its own (an ASR recovery plan).
        return ctx.result(
            vm,
            o,
            Phase.BLOCKED,
            f"{move}: this fabric cannot stop VMs, so plan '{vm.plan}' cannot stop its "
            "dependents first, and this provider offers no plan-level failover; commit "
            "`policy.unorderedFailover: true` to fail its VMs over without the group order",
        )
    # All or nothing: while a moving VM of the plan cannot fail over, none
    # does (an application split across two sites is down at both).
    stuck = [n for n in ctx.stuck if n != vm.name]
    reachable = ctx.observed.site_connected(source)
    dependents = ctx.waiting_dependents(vm) if reachable else []
    if Operation.PLANNED_FAILOVER in o.allowed_operations:
        if source in o.running and ctx.observed.can_stop_vms:
            # Stopping is only worth it when the whole plan can move: a VM
            # stopped for a move that cannot happen is an outage for nothing.
            why = (
                f"; holding the stop: {context.names_text(stuck)} cannot fail over now"
                if stuck
                else ""
            )
            return ctx.act(
                vm,
                o,
                Phase.STOPPING,
                f"{move}: stopping it at {source} "
                f"(dependents first) before the planned failover{why}",
                Operation.STOP_VM,
                source,
                waiting_for=[*stuck, *dependents],
                stage=ctx.stage(vm, reverse=True),
            )
        return ctx.act(
            vm,
            o,
            Phase.FAILING_OVER,
            f"{move}: planned failover (no data loss)",
            Operation.PLANNED_FAILOVER,
            target,
            waiting_for=[*stuck, *dependents, *predecessors],
            stage=ctx.stage(vm),
        )
    why = _why_not_planned(ctx, o, source)
    consented, consent_text = consent(ctx, vm, source)
    if not consented:
        return ctx.result(
            vm,
            o,
            Phase.BLOCKED,
            f"{move}: {why}, so a planned failover is "
            "impossible; an unplanned failover could lose up to "
            f"{_loss_text(o, ctx.now)} of writes. {consent_text}Commit "
            f"allowDataLoss: {{from: {source}, until: <time>}} in plan '{vm.plan}' (or on "
            f"the VM) to accept that for this event, or wait for "
            f"{_what_to_wait_for(ctx, o, source)}",
        )
    if predecessors and reachable and source in o.running and ctx.observed.can_stop_vms:
        # The source answers: dependents first on this path too. A VM whose
        # predecessors must move first is stopped now, so that they can.
        return ctx.act(
            vm,
            o,
            Phase.STOPPING,
            f"{move}: {why}; stopping it at {source} (dependents first) before the "
            f"unplanned failover allowed by {consent_text}",
            Operation.STOP_VM,
            source,
            waiting_for=[*stuck, *dependents],
            stage=ctx.stage(vm, reverse=True),
        )
    point, point_text = None, ""
    if ctx.observed.points_at_failover and vm.recovery_point != commit.LATEST:
        chosen = commit.choose_point(vm.recovery_point, o.recovery_points)
        if chosen is None:
            return ctx.result(
                vm,
                o,
                Phase.BLOCKED,
                f"{move}: {why}; the fabric keeps no recovery point that `recoveryPoint: "
                f"{vm.recovery_point}` names (it keeps: {commit.points_text(o.recovery_points)})"
                "; this fabric takes the point when it fails over: commit one of those, or "
                "`latest`",
            )
        point = chosen.id
        point_text = (
            f" to recovery point {chosen.id} ({chosen.time.isoformat()}), as recoveryPoint says"
        )
    return ctx.act(
        vm,
        o,
        Phase.FAILING_OVER,
        f"{move}: {why}; unplanned failover{point_text} "
        f"allowed by {consent_text} (may lose up to {_loss_text(o, ctx.now, point)} "
        "of writes)",
        Operation.UNPLANNED_FAILOVER,
        target,
        recovery_point=point,
        waiting_for=[*stuck, *dependents, *predecessors],
        # Always asked: the fabric shuts the source down first where it can still
        # reach it (ASR sourceSiteOperations: Required), and goes on if not.
        shutdown_source=True,
        stage=ctx.stage(vm),
    )


def consent(ctx: context.PlanContext, vm: DesiredVM, source: str) -> tuple[bool, str]:
    """Whether the spec consents now to losing writes by failing `vm` away from `source`.

    The words: the consent that allows it, or why a scoped one does not
    (expired, another site, another revision), to lead the Blocked reason.
    """
    if vm.allow_data_loss:
        return True, "allowDataLoss"
    if vm.data_loss_window is not None:
        site, until = vm.data_loss_window
        if site != source:
            return False, f"allowDataLoss covers failovers away from {site}, not {source}. "
        if ctx.now >= until:
            return False, f"allowDataLoss from {site} expired at {until.isoformat()}. "
        return True, f"allowDataLoss from {site} until {until.isoformat()}"
    if vm.data_loss_revision is not None:
        rev = None if ctx.provenance is None else ctx.provenance.revision
        if rev is not None and rev.startswith(vm.data_loss_revision):
            return True, f"allowDataLoss for revision {vm.data_loss_revision}"
        return False, (
            f"allowDataLoss covers revision {vm.data_loss_revision}, not the one in force. "
        )
    return False, ""


def cannot_move(ctx: context.PlanContext) -> list[str]:
    """VMs of the plan that must fail over but cannot now (`PlanContext.stuck` keeps it)."""
    stuck = []
    for vm in ctx.plan.vms:
        o = ctx.observed.vms.get(vm.name)
        if o is not None and (
            o.active_site == vm.active_site or (o.job is not None and o.job.running)
        ):
            continue
        if o is not None and o.protection_state is ProtectionState.UNKNOWN:
            stuck.append(vm.name)  # drctl moves no VM it cannot read
            continue
        if o is not None and o.protection_state in {
            ProtectionState.COMMIT_PENDING,
            ProtectionState.COMMITTED,
        }:
            continue  # failed over already: committing or reversing replication
        allowed = set() if o is None else o.allowed_operations
        if Operation.PLANNED_FAILOVER in allowed or (
            consent(ctx, vm, o.active_site if o else "")[0]
            and Operation.UNPLANNED_FAILOVER in allowed
        ):
            continue
        stuck.append(vm.name)
    return stuck


def describe_path(ctx: context.PlanContext) -> str | None:
    """How this plan's VMs fail over, said once by `drctl plan`; None when none moves."""
    moving = any(
        (o := ctx.observed.vms.get(vm.name)) is not None and o.active_site != vm.active_site
        for vm in ctx.plan.vms
    )
    if not moving:
        return None
    if not ctx.plan.groups:
        return "each VM on its own (no groups)"
    if ctx.plan.unordered_failover:
        return (
            "unordered (policy.unorderedFailover): each VM fails over as soon as it can, "
            "without the group order"
        )
    if not ctx.observed.can_stop_vms and ctx.observed.plan_failover:
        return (
            "the fabric's plan-level failover: it shuts the VMs down in reverse group order, "
            "fails them over, then boots them group by group, and commits and reprotects "
            "through it (a move of some VMs only is Blocked: it goes VM by VM)"
        )
    if not ctx.observed.can_stop_vms:
        return (
            "blocked: this fabric cannot stop VMs, so dependents cannot stop first, and "
            "this provider offers no plan-level failover"
        )
    return (
        "dependents first: drctl stops the groups in reverse order, then fails them "
        "over in boot order"
    )


def _why_not_planned(ctx: context.PlanContext, o: state.ObservedVM, source: str) -> str:
    rep = o.replication
    if not ctx.observed.site_connected(source):
        return f"site {source} is disconnected"
    if rep is not None and rep.state is not ReplicationState.REPLICATING:
        return f"replication {rep.direction} is {rep.state}"
    if rep is not None and rep.health is not state.Health.NORMAL:
        return f"replication {rep.direction} is behind (health {rep.health})"
    return "the fabric does not allow a planned failover now"


def _what_to_wait_for(ctx: context.PlanContext, o: state.ObservedVM, source: str) -> str:
    if not ctx.observed.site_connected(source):
        return f"site {source} to return"
    return "replication to catch up"


def _loss_text(o: state.ObservedVM, now: datetime, point: str | None = None) -> str:
    """Writes at risk: since the last replication, or since the chosen point's time."""
    chosen = next((p for p in o.recovery_points if p.id == point), None)
    if chosen is not None:
        return f"{(now - chosen.time).total_seconds():.0f}s"
    rep = o.replication
    if rep is None or rep.last_sync is None:
        return "an unknown amount"
    return f"{(now - rep.last_sync).total_seconds():.0f}s"
