"""The planner: a pure function from desired state, observed state and time to a Plan.

`build_plan(desired, observed, now, attempts)` decides for every managed VM its
phase, a one-line reason an operator understands, and the next action, with
the ordering between actions (boot groups). It reads no clock and does no
I/O; the executor (`execute`), `drctl plan` and `drctl status` call it.

Every decision comes from what the fabric reports now (active site, running
copies, protection state, allowed operations, the job in progress), never
from a remembered chain of steps: what follows a failover depends on what the
fabric did, and the daemon can be killed at any moment.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from reconciler.core import state
from reconciler.core.desired import DesiredState
from reconciler.core.plan import decide, drill, fallback, guardrail, order, plan_level, retry
from reconciler.core.plan.model import (
    MAX_ATTEMPTS,
    Action,
    Attempts,
    AttemptsByAction,
    CheckResult,
    DrillRecord,
    DrillStep,
    DrillView,
    Phase,
    Plan,
    Provenance,
    Readiness,
    VMPlan,
)
from reconciler.core.plan.pending import Pending, Wait, pending, waits_for

__all__ = [
    "MAX_ATTEMPTS",
    "Action",
    "Attempts",
    "AttemptsByAction",
    "CheckResult",
    "DrillRecord",
    "DrillStep",
    "DrillView",
    "Pending",
    "Phase",
    "Plan",
    "Provenance",
    "Readiness",
    "VMPlan",
    "Wait",
    "build_plan",
    "build_plans",
    "pending",
    "waits_for",
]


def build_plan(
    desired: DesiredState,
    observed: state.Observed,
    now: datetime,
    attempts: AttemptsByAction | None = None,
    max_attempts: int = MAX_ATTEMPTS,
    provenance: Provenance | None = None,
) -> Plan:
    """Decide every managed VM's phase, reason and next action.

    `provenance` (from the journal) tells drctl's own failovers from those made
    outside it, and holds the VMs whose interrupted call drctl cannot settle;
    every caller that acts passes it. Without it the planner cannot tell, and
    treats every failover as drctl's (planner unit tests).

    The caller pauses the cyclic GC around a large plan (kits.gcpause): the
    core does no memory management of its own.
    """
    attempts = attempts or {}

    def tried(decided: VMPlan) -> VMPlan:
        if decided.action is not None and attempts:
            return retry.with_attempts(decided, attempts, now, max_attempts)
        return decided

    vm_plans: list[VMPlan] = []
    paths: dict[str, str] = {}
    drills: dict[str, DrillView] = {}
    for plan_spec in desired.plans:
        ctx = decide.PlanContext(plan_spec, observed, now, provenance)
        decided = [tried(ctx.decide(vm)) for vm in plan_spec.vms]
        merged = plan_level.merge(ctx, fallback.after_blocked_move(ctx, decided, tried))
        limit = plan_spec.max_failovers_per_revision
        merged = guardrail.limit_moves(merged, limit, guardrail.moves(merged))
        record = None if provenance is None else provenance.drills.get(plan_spec.name)
        if plan_spec.drill is not None or record is not None:
            merged, view = drill.overlay(ctx, merged, record)
            if view is not None:
                drills[plan_spec.name] = view
        vm_plans.extend(guardrail.suspend(plan_spec, merged))
        if (path := ctx.failover_path()) is not None:
            paths[plan_spec.name] = path
    managed = {vm.name for vm in desired.vms()}
    unmanaged_names = observed.vms.keys() - managed
    if observed.duplicates:  # names several VMs report are in the fabric too
        unmanaged_names |= observed.duplicates.keys() - managed
    unmanaged = tuple(sorted(unmanaged_names))
    return Plan(
        vms=tuple(vm_plans),
        actions=tuple(order.sort_actions(vp.action for vp in vm_plans if vp.action is not None)),
        unmanaged=unmanaged,
        max_parallel={p.name: p.max_parallel for p in desired.plans},
        failover_paths=paths,
        drills=drills,
        drill_records={
            name: record
            for name, record in (provenance.drills if provenance else {}).items()
            if name in {p.name for p in desired.plans}
        },
    )


def build_plans(
    desired: DesiredState,
    observed: Mapping[str, state.Observed],
    now: datetime,
    attempts: AttemptsByAction | None = None,
    max_attempts: int = MAX_ATTEMPTS,
    provenance: Provenance | None = None,
    max_failovers_per_revision: int | None = None,
) -> Plan:
    """`build_plan` for plans on several fabrics, each against its fabric's observation.

    `observed` maps each fabric a plan uses to what it reports. A fabric
    missing from it, or reported unreachable, leaves its plans' VMs waiting
    with the reason; the other fabrics' plans are planned as if alone.
    `max_failovers_per_revision` caps the VMs a revision moves across every
    plan (`drctl run --max-failovers-per-revision`): above it none moves.
    """
    parts = []
    for name in desired.fabric_names():
        seen = observed.get(name) or state.Observed(sites={}, vms={}, unreachable="not observed")
        parts.append(build_plan(desired.only(name), seen, now, attempts, max_attempts, provenance))
    unmanaged = {vm for part in parts for vm in part.unmanaged}
    for name, seen in observed.items():  # a fabric observed with no plan on it
        if name not in desired.fabric_names():
            unmanaged.update(seen.vms, seen.duplicates)
    vm_plans = [vp for part in parts for vp in part.vms]
    if max_failovers_per_revision is not None:
        # Moves of suspended plans wait for their plan: not counted until it resumes.
        counted = [i for i in guardrail.moves(vm_plans) if vm_plans[i].phase is not Phase.SUSPENDED]
        vm_plans = guardrail.limit_moves(vm_plans, max_failovers_per_revision, counted, flag=True)
    return Plan(
        vms=tuple(vm_plans),
        actions=tuple(order.sort_actions(vp.action for vp in vm_plans if vp.action is not None)),
        unmanaged=tuple(sorted(unmanaged)),
        max_parallel={p.name: p.max_parallel for p in desired.plans},
        failover_paths={k: v for part in parts for k, v in part.failover_paths.items()},
        drills={k: v for part in parts for k, v in part.drills.items()},
        drill_records={k: v for part in parts for k, v in part.drill_records.items()},
    )
