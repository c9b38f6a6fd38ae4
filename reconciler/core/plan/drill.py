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

Production is never touched: every action proposed here is a test operation.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

from reconciler.core import state
from reconciler.core.desired import Drill
from reconciler.core.plan import context
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
    out: list[VMPlan] = []
    for decision in decided:
        vp = _held_for_cleanup(decision) if step is DrillStep.PREEMPTED and copies else decision
        o = vp.observed
        if o is None or not (vp.converged or vp.name in copies):
            out.append(vp)
            continue
        out.append(_vm_step(ctx, vp, o, drill_id, step, spec, copies, testing, rank))
    reason = f"drill {drill_id}: {_STEP_TEXT[step]}"
    if until is not None:
        reason += f" until {until.isoformat(timespec='seconds')}"
    return out, DrillView(ctx.plan.name, drill_id, step, reason, until)


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
