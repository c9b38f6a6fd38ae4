"""The summary `drctl plan` opens with: one line per plan that a reviewer can approve.

    finance: 5 VMs move ams->rtm, planned, no data loss; estimated critical path 4 min
    hr: 1 VM needs consent (allowDataLoss); 2 VMs move ams->rtm, unplanned, may lose up
        to 42 s of writes; estimated critical path 12 min

Called by `report.print_plan` and `report.plan_json` with the plan and the
fabrics' typical durations of each operation (`Observed.typical_durations`,
else `guardrail.TYPICAL_SECONDS`). The critical path is an estimate until
every VM of the plan is placed (runs, committed, at its desired site): the
boot groups one after another, each as long as its slowest VM's steps. Pure.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from reconciler.core import plan
from reconciler.core.plan import guardrail
from reconciler.core.state import Operation

# The steps left until a VM that moves is placed, by how it moves.
_PLANNED_PATH = (Operation.STOP_VM, Operation.PLANNED_FAILOVER, Operation.COMMIT)
_UNPLANNED_PATH = (Operation.UNPLANNED_FAILOVER, Operation.COMMIT)
_UNPLANNED = frozenset({Operation.UNPLANNED_FAILOVER, Operation.APPLY_RECOVERY_POINT})


def lines(built: plan.Plan, typical: Mapping[Operation, float]) -> list[str]:
    """One line per plan, in the order of the plan's VMs."""
    by_plan: dict[str, list[plan.VMPlan]] = {}
    for vp in built.vms:
        by_plan.setdefault(vp.plan, []).append(vp)
    return [_line(name, vms, built, typical) for name, vms in by_plan.items()]


def _line(
    name: str, vms: list[plan.VMPlan], built: plan.Plan, typical: Mapping[Operation, float]
) -> str:
    if all(vp.converged for vp in vms) and name not in built.drills:
        return f"{name}: converged ({_count(len(vms))}), nothing to do"
    parts = _people(vms)
    moving = [vp for vp in vms if _moves(vp) and vp.phase not in _PEOPLE]
    unplanned = {vp.name for vp in moving if _unplanned(vp, built)}
    directions = Counter(
        (f"{vp.observed.active_site}->{vp.desired.active_site}", vp.name in unplanned)
        for vp in moving
        if vp.observed is not None
    )
    for (direction, lossy), n in sorted(directions.items()):
        if lossy:
            ages = [
                vp.readiness.last_sync_age_seconds
                for vp in moving
                if vp.name in unplanned and vp.readiness.last_sync_age_seconds is not None
            ]
            loss = f"may lose up to {max(ages):.0f} s of writes" if ages else "may lose writes"
            parts.append(f"{_count(n)} {_verb(n)} {direction}, unplanned, {loss}")
        else:
            parts.append(f"{_count(n)} {_verb(n)} {direction}, planned, no data loss")
    rest = Counter(
        _STEP_WORDS[vp.phase]
        for vp in vms
        if not vp.converged and not _moves(vp) and vp.phase in _STEP_WORDS
    )
    parts.extend(f"{_count(n)} {what}" for what, n in sorted(rest.items()))
    if name in built.drills:
        parts.append(built.drills[name].reason)
    if moving:
        parts.append(f"estimated critical path {_duration(_critical(moving, unplanned, typical))}")
    if not parts:
        waiting = sum(1 for vp in vms if not vp.converged)
        parts.append(f"{_count(waiting)} not converged (see each VM's reason)")
    return f"{name}: " + "; ".join(parts)


_PEOPLE = frozenset(
    {
        plan.Phase.BLOCKED,
        plan.Phase.HELD,
        plan.Phase.WAITING_FOR_USER,
        plan.Phase.STUCK,
        plan.Phase.SUSPENDED,
    }
)
_STEP_WORDS = {
    plan.Phase.COMMIT_PENDING: "commit their failover",
    plan.Phase.REPROTECTING: "reverse replication",
    plan.Phase.SYNCING: "sync replication",
    plan.Phase.STARTING: "start",
    plan.Phase.WAITING_FOR_SITE: "wait for their site",
    plan.Phase.FAILING_OVER: "fail over",
    plan.Phase.STOPPING: "stop",
}


def _people(vms: list[plan.VMPlan]) -> list[str]:
    """What waits for a person, first: consent, holds, blocks, stuck jobs, suspend."""
    blocked = [vp for vp in vms if vp.phase is plan.Phase.BLOCKED]
    consent = sum(1 for vp in blocked if "allowDataLoss" in vp.reason)
    counted = Counter(vp.phase for vp in vms if vp.phase in _PEOPLE)
    out = []
    if consent:
        out.append(f"{_count(consent)} {_need(consent)} consent (allowDataLoss)")
    if counted[plan.Phase.BLOCKED] > consent:
        n = counted[plan.Phase.BLOCKED] - consent
        out.append(f"{_count(n)} Blocked (see the reason)")
    if counted[plan.Phase.HELD]:
        out.append(f"{_count(counted[plan.Phase.HELD])} Held (a person decides what to commit)")
    if counted[plan.Phase.WAITING_FOR_USER]:
        n = counted[plan.Phase.WAITING_FOR_USER]
        out.append(f"{_count(n)} {_wait(n)} for a manual step in the fabric")
    if counted[plan.Phase.STUCK]:
        out.append(f"{_count(counted[plan.Phase.STUCK])} Stuck (a job past its deadline)")
    if counted[plan.Phase.SUSPENDED]:
        out.append("suspended: nothing starts")
    return out


def _moves(vp: plan.VMPlan) -> bool:
    o = vp.observed
    return o is not None and o.active_site is not None and o.active_site != vp.desired.active_site


def _unplanned(vp: plan.VMPlan, built: plan.Plan) -> bool:
    if vp.action is not None and vp.action.operation in _UNPLANNED:
        return True
    return any(
        a.operation in _UNPLANNED and (a.vm == vp.name or any(vp.name in g for g in a.plan_groups))
        for a in built.actions
        if a.plan == vp.plan
    )


def _critical(
    moving: list[plan.VMPlan], unplanned: set[str], typical: Mapping[Operation, float]
) -> float:
    """The boot groups one after another, each as long as its slowest VM's steps."""

    def seconds(op: Operation) -> float:
        return float(typical.get(op, guardrail.TYPICAL_SECONDS.get(op, 0.0)))

    groups: dict[tuple[int, str], float] = {}
    for order, vp in enumerate(moving):
        path = _UNPLANNED_PATH if vp.name in unplanned else _PLANNED_PATH
        rank = vp.action.stage[0] if vp.action is not None else order
        key = (rank, vp.desired.group or f"vm:{vp.name}")
        groups[key] = max(groups.get(key, 0.0), sum(seconds(op) for op in path))
    # VMs of one group share one key; VMs of no group run alongside the first group.
    by_group: dict[str, float] = {}
    for (_, group), took in groups.items():
        by_group[group] = max(by_group.get(group, 0.0), took)
    grouped = {g: t for g, t in by_group.items() if not g.startswith("vm:")}
    loose = max((t for g, t in by_group.items() if g.startswith("vm:")), default=0.0)
    return max(sum(grouped.values()), loose)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"


def _count(n: int) -> str:
    return f"{n} VM" if n == 1 else f"{n} VMs"


def _verb(n: int) -> str:
    return "moves" if n == 1 else "move"


def _need(n: int) -> str:
    return "needs" if n == 1 else "need"


def _wait(n: int) -> str:
    return "waits" if n == 1 else "wait"
