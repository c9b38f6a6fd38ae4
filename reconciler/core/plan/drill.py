"""A plan's drill (spec.drill): test copies by group, kept, cleaned up in reverse. Pure.

Called by `plan.build_plan` over the decisions of one plan, with the plan's
latest drill from the journal (`Provenance.drills`). A drill runs only on a
plan whose every VM is converged: a VM that must move (or any other step) is
real work, and real work preempts a drill. The steps come from what the
fabric reports (which test copies run, which test jobs run) and from the
journal's record of the drill (when every copy ran, whether a check or a
test failover failed); the engine (`engine.drill`) writes that record and
runs the checks, this module only decides:

    starting   TestFailover for each VM whose copy does not run, a group's
               copies once those of the groups it follows run
    checking   every copy runs: the engine runs spec.drill.checks, records them
    keeping    until keepMinutes after every copy ran
    cleaning   TestFailoverCleanup, a group's copies once those of the groups
               after it are gone
    preempted  real work is wanted: every copy is cleaned up first, and the
               plan's other actions wait until none is left
    ended      no copy and no test job left: the engine records the result

On a fabric that moves a grouped plan whole (`plan_level.moves_whole`: ASR,
through its recovery plan) the drill goes through the plan's own test
operations: ONE TestFailover of the whole plan, asked by the first VM in boot
order, once no copy runs (the recovery plan boots the test copies by group
itself), and ONE TestFailoverCleanup of the whole plan once any copy is left;
the other VMs say they go with it. A copy left by a partial run is still
started VM by VM.

A drill whose copies are still up past every-copy-ran + keepMinutes + the
TestFailoverCleanup deadline (`guardrail.deadline_seconds`), or whose test job
runs past its own deadline, is Stuck: each of its VMs says so with the drill
id and how long past; nothing is cancelled, the cleanup is still proposed.

Production is never touched: every action proposed here is a test operation.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

from reconciler.core import state
from reconciler.core.desired import Drill
from reconciler.core.plan import context, guardrail, plan_level
from reconciler.core.plan.model import (
    Action,
    DrillRecord,
    DrillStep,
    DrillView,
    Phase,
    VMPlan,
)
from reconciler.core.state import Operation, TestFailoverState

TEST_OPERATIONS = frozenset({Operation.TEST_FAILOVER, Operation.TEST_FAILOVER_CLEANUP})
# What the plan's held actions wait for while a preempted drill cleans up.
WAITING_FOR_CLEANUP = "drill cleanup"


def overlay(
    ctx: context.PlanContext, decided: list[VMPlan], record: DrillRecord | None
) -> tuple[list[VMPlan], DrillView | None]:
    """The plan's decisions with its drill's steps laid over them, and the drill's view."""
    out, view = _overlay(ctx, decided, record)
    if view is None or view.step is DrillStep.ENDED or record is None:
        return out, view
    if record.ended_at is not None or record.id != view.id:
        return out, view
    late = _past_keep(ctx, record, out)
    if late is None:
        return out, view
    stuck = [
        dataclasses.replace(vp, phase=Phase.STUCK, reason=f"{late}; {vp.reason}")
        if vp.phase is Phase.DRILLING
        else vp
        for vp in out
    ]
    return stuck, dataclasses.replace(view, reason=f"{late}; {view.reason}")


def _past_keep(ctx: context.PlanContext, record: DrillRecord, out: list[VMPlan]) -> str | None:
    """Why the drill is Stuck: a copy (or a test job) left past every-copy-ran +
    keepMinutes + the cleanup's deadline; None while within it."""
    if record.running_at is None or not any(
        _copy_runs(vp.observed) or _test_job(vp.observed) for vp in out
    ):
        return None
    spec = ctx.plan.drill
    # A spec that dropped the drill (or changed its id) wants the cleanup at once.
    keep = spec.keep_minutes * 60 if spec is not None and spec.id == record.id else 0.0
    cleanup = guardrail.deadline_seconds(ctx.plan, ctx.observed, Operation.TEST_FAILOVER_CLEANUP)
    due = record.running_at + timedelta(seconds=keep + (cleanup or 0.0))
    if ctx.now <= due:
        return None
    past = guardrail.duration_text((ctx.now - record.running_at).total_seconds() - keep)
    own = any(op is Operation.TEST_FAILOVER_CLEANUP for op, _ in ctx.plan.deadlines)
    source = "policy.deadlines.TestFailoverCleanup" if own else "the default for this fabric"
    return (
        f"drill {record.id} stuck: test copies still up {past} past its keep time "
        f"(keepMinutes {keep / 60:g}; cleanup deadline {guardrail.duration_text(cleanup or 0.0)}, "
        f"{source}); drctl never cancels anything: see why the cleanup does not end in the "
        "fabric"
    )


def _overlay(
    ctx: context.PlanContext, decided: list[VMPlan], record: DrillRecord | None
) -> tuple[list[VMPlan], DrillView | None]:
    spec = ctx.plan.drill
    copies = {vp.name for vp in decided if _copy_runs(vp.observed)}
    testing = {vp.name for vp in decided if _test_job(vp.observed)}
    current = record if record is not None and record.ended_at is None else None
    real_work = [vp for vp in decided if not vp.converged]
    if current is None:
        # A test copy drctl's drill did not start (an operator's) is never
        # cleaned up by drctl: the plan's decisions say what to do about it.
        if copies or testing or spec is None or real_work or _done(spec, record):
            return decided, None
        return _step(ctx, decided, spec.id, DrillStep.STARTING, spec, copies, testing)
    drill_id = current.id
    if not copies and not testing:
        requested = spec is not None and spec.id == drill_id and not real_work
        if requested and current.running_at is None and not current.failed:
            # Recorded, but no test failover got through yet (refused, throttled,
            # held back): still starting, never ended with nothing run.
            return _step(ctx, decided, drill_id, DrillStep.STARTING, spec, copies, testing)
        return decided, DrillView(ctx.plan.name, drill_id, DrillStep.ENDED, _ended(current))
    if real_work:
        return _step(ctx, decided, drill_id, DrillStep.PREEMPTED, spec, copies, testing)
    if spec is None or spec.id != current.id or current.failed:
        return _step(ctx, decided, drill_id, DrillStep.CLEANING, spec, copies, testing)
    every_copy = len(copies) == len(decided) and not testing - copies
    if current.running_at is None:
        # Before every copy ran, a missing copy is still to start; after, one
        # gone (cleaned up by the drill, or by a person) is never started again.
        step = DrillStep.CHECKING if every_copy else DrillStep.STARTING
        return _step(ctx, decided, drill_id, step, spec, copies, testing)
    until = current.running_at + timedelta(minutes=spec.keep_minutes)
    if ctx.now < until and every_copy:
        return _step(ctx, decided, drill_id, DrillStep.KEEPING, spec, copies, testing, until)
    return _step(ctx, decided, drill_id, DrillStep.CLEANING, spec, copies, testing)


def _done(spec: Drill, record: DrillRecord | None) -> bool:
    return record is not None and record.id == spec.id and record.ended_at is not None


def _copy_runs(o: state.ObservedVM | None) -> bool:
    return o is not None and o.test_failover is TestFailoverState.RUNNING


def _test_job(o: state.ObservedVM | None) -> bool:
    return (
        o is not None and o.job is not None and o.job.running and o.job.operation in TEST_OPERATIONS
    )


def _ended(record: DrillRecord) -> str:
    if record.preempted:
        return f"drill {record.id} preempted by a move: its test copies are cleaned up"
    if record.failed:
        return f"drill {record.id} failed: {record.failed}"
    return f"drill {record.id}: every test copy is cleaned up"


def _step(
    ctx: context.PlanContext,
    decided: list[VMPlan],
    drill_id: str,
    step: DrillStep,
    spec: Drill | None,
    copies: set[str],
    testing: set[str],
    until: datetime | None = None,
) -> tuple[list[VMPlan], DrillView]:
    rank = {vp.name: _rank(ctx, vp) for vp in decided}
    whole = _whole_operation(ctx, decided, step, copies, testing)
    out: list[VMPlan] = []
    for decision in decided:
        vp = _held_for_cleanup(decision) if step is DrillStep.PREEMPTED and copies else decision
        o = vp.observed
        if o is None or not (vp.converged or vp.name in copies):
            out.append(vp)
            continue
        if whole is not None and vp.name not in testing:
            out.append(_plan_step(ctx, vp, o, decided, drill_id, step, spec, whole))
            continue
        out.append(_vm_step(ctx, vp, o, drill_id, step, spec, copies, testing, rank))
    reason = f"drill {drill_id}: {_STEP_TEXT[step]}"
    vms: tuple[str, ...] = ()
    if whole is not None:
        reason += f" (through the fabric's plan-level {whole})"
        vms = tuple(n for group in plan_level.boot_groups(ctx) for n in group)
    if until is not None:
        reason += f" until {until.isoformat(timespec='seconds')}"
    return out, DrillView(ctx.plan.name, drill_id, step, reason, until, vms)


def _whole_operation(
    ctx: context.PlanContext,
    decided: list[VMPlan],
    step: DrillStep,
    copies: set[str],
    testing: set[str],
) -> Operation | None:
    """The plan-level test operation this step makes, None when it goes VM by VM.

    Only on a fabric that moves the plan whole, never while a test job runs,
    and only when the first VM in boot order (which asks it) takes part: the
    start once no copy runs (a copy left by a partial run: VM by VM), the
    cleanup once any copy is left.
    """
    if testing or not plan_level.moves_whole(ctx):
        return None
    leader = _leader(ctx, decided)
    if not any(vp.name == leader and (vp.converged or leader in copies) for vp in decided):
        return None
    if step is DrillStep.STARTING and not copies:
        return Operation.TEST_FAILOVER
    if step in (DrillStep.CLEANING, DrillStep.PREEMPTED) and copies:
        return Operation.TEST_FAILOVER_CLEANUP
    return None


def _plan_step(
    ctx: context.PlanContext,
    vp: VMPlan,
    o: state.ObservedVM,
    decided: list[VMPlan],
    drill_id: str,
    step: DrillStep,
    spec: Drill | None,
    operation: Operation,
) -> VMPlan:
    """One VM's part in the plan-level `operation`: the leader asks it, the others go with it."""
    groups = plan_level.boot_groups(ctx)
    leader = _leader(ctx, decided)
    head = f"drill {drill_id} ({step}): "
    cleanup = operation is Operation.TEST_FAILOVER_CLEANUP
    what = "cleaning up the test copies" if cleanup else "starting test copies by group"
    through = f"with plan '{vp.plan}' through the fabric's plan-level {operation}"
    if vp.name != leader:
        return _drilling(vp, f"{head}{what}, {through} (asked for {leader})", None)
    # The fabric refuses the plan's operation unless every VM it acts on allows it.
    acting = [
        d for d in decided if d.observed is not None and (not cleanup or _copy_runs(d.observed))
    ]
    refusing = sorted(
        d.name
        for d in acting
        if d.observed is not None and operation not in d.observed.allowed_operations
    )
    missing = sorted(d.name for d in decided if d.observed is None)
    peer = o.replication.target if o.replication is not None else None
    reason = (
        f"{head}{what}, every VM of plan '{vp.plan}' through the fabric's plan-level {operation}"
    )
    if missing or refusing:
        reason += (
            f", but the fabric does not allow it now for {context.names_text(missing + refusing)}"
        )
    action = Action(
        ctx.plan.name,
        vp.name,
        operation,
        peer,
        ready=not (missing or refusing),
        waiting_for=() if not (missing or refusing) else ("fabric",),
        stage=ctx.stage(vp.desired, reverse=cleanup),
        source_site=o.active_site,
        plan_groups=groups,
        network=spec.network if spec is not None and not cleanup else None,
    )
    return _drilling(vp, reason, action)


def _leader(ctx: context.PlanContext, decided: list[VMPlan]) -> str:
    """The VM that asks the plan-level operation: the first in boot order."""
    groups = plan_level.boot_groups(ctx)
    return groups[0][0] if groups and groups[0] else decided[0].name


def _held_for_cleanup(vp: VMPlan) -> VMPlan:
    """The plan's real work waits while test copies are cleaned up (cleanup first)."""
    action = vp.action
    if action is None or action.operation in TEST_OPERATIONS:
        return vp
    held = dataclasses.replace(action, ready=False, waiting_for=(WAITING_FOR_CLEANUP,))
    return dataclasses.replace(vp, action=held)


def _rank(ctx: context.PlanContext, vp: VMPlan) -> int:
    group = vp.desired.group
    return ctx.rank.get(group, 0) if group else 0


_STEP_TEXT = {
    DrillStep.STARTING: "starting test copies by group",
    DrillStep.CHECKING: "every test copy runs: checking them",
    DrillStep.KEEPING: "keeping the test copies",
    DrillStep.CLEANING: "cleaning up the test copies in reverse group order",
    DrillStep.PREEMPTED: "preempted by a move: cleaning up the test copies first",
}


def _vm_step(
    ctx: context.PlanContext,
    vp: VMPlan,
    o: state.ObservedVM,
    drill_id: str,
    step: DrillStep,
    spec: Drill | None,
    copies: set[str],
    testing: set[str],
    rank: dict[str, int],
) -> VMPlan:
    vm = vp.desired
    peer = o.replication.target if o.replication is not None else None
    where = f" at {peer}" if peer else ""
    head = f"drill {drill_id} ({step}): "
    if vp.name in testing:
        assert o.job is not None  # noqa: S101 (a test job runs)
        late = guardrail.past_deadline(ctx.plan, ctx.observed, o, o.job, ctx.now)
        if late is not None:  # followed, never cancelled
            return dataclasses.replace(vp, phase=Phase.STUCK, reason=f"{head}{late}", action=None)
        reason = f"{head}{o.job.operation} (job {o.job.id}) runs"
        return _drilling(vp, reason, None)
    cleaning = step in (DrillStep.CLEANING, DrillStep.PREEMPTED)
    if cleaning:
        if vp.name not in copies:
            return _drilling(vp, f"{head}test copy cleaned up", None)
        # Reverse group order: the web's copies go before the db's.
        mine = rank[vm.name]
        later = sorted(n for n in copies | testing if rank.get(n, 0) > mine)
        return _propose(
            ctx,
            vp,
            o,
            Operation.TEST_FAILOVER_CLEANUP,
            peer,
            head,
            later,
            reverse=True,
            text=f"cleaning up the test copy{where}",
        )
    if vp.name in copies:
        return _drilling(vp, f"{head}test copy runs{where}", None)
    # Group order: a group's copies start once those of the groups before it run.
    mine = rank[vm.name]
    waiting = sorted(n for n, r in rank.items() if r < mine and n not in copies)
    return _propose(
        ctx,
        vp,
        o,
        Operation.TEST_FAILOVER,
        peer,
        head,
        waiting,
        reverse=False,
        text=f"starting a test copy{where}",
        network=spec.network if spec else None,
    )


def _propose(
    ctx: context.PlanContext,
    vp: VMPlan,
    o: state.ObservedVM,
    operation: Operation,
    target: str | None,
    head: str,
    waiting: list[str],
    *,
    reverse: bool,
    text: str,
    network: str | None = None,
) -> VMPlan:
    ready = not waiting and operation in o.allowed_operations
    reason = f"{head}{text}"
    if waiting:
        reason += f" after {', '.join(waiting)}"
    elif operation not in o.allowed_operations:
        allowed = ", ".join(sorted(o.allowed_operations)) or "nothing"
        reason += f", but the fabric allows only {allowed} now"
    action = Action(
        ctx.plan.name,
        vp.name,
        operation,
        target,
        ready=ready,
        waiting_for=tuple(waiting) or (() if ready else ("fabric",)),
        stage=ctx.stage(vp.desired, reverse=reverse),
        source_site=o.active_site,
        network=network,
    )
    return _drilling(vp, reason, action)


def _drilling(vp: VMPlan, reason: str, action: Action | None) -> VMPlan:
    return dataclasses.replace(vp, phase=Phase.DRILLING, reason=reason, action=action)
