"""The guard rails a DR team sets in git: deadlines, the blast radius, suspend (issue 14).

- A job running past its deadline (`policy.deadlines`, else twice the
  fabric's typical duration of the operation, at least five minutes) puts the
  VM in phase Stuck, naming the job and how long it has run. It is followed,
  never cancelled. An initial replication (EnableReplication, a Resync, a
  reverse replication after an unplanned failover: a full copy) has no
  deadline: its progress is what to watch.
- A revision that would fail over more VMs than `maxFailoversPerRevision`
  (the plan's, or the daemon's limit across every plan) moves none of them.
  A move is a VM whose observed active site is not the one the revision
  wants, with no move of it under way (a failover or drctl's stop running, or
  no copy running after drctl stopped it: finishing those is not a new move)
  and not Held (drctl does not move it).
- A plan with `suspend: true` starts nothing; drift and readiness are still
  reported, each VM in phase Suspended (a Stuck job still says so).

Called by `decide` (deadlines) and `plan.build_plan(s)` (the rest); pure.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime

from reconciler.core import state
from reconciler.core.desired import PlanSpec
from reconciler.core.plan.model import Phase, VMPlan
from reconciler.core.state import FailoverKind, Operation

# Typical durations on a real fabric (ASR between VMM clouds, Hyper-V Replica),
# for a fabric that reports none of its own.
TYPICAL_SECONDS: dict[Operation, float] = {
    Operation.PLANNED_FAILOVER: 900.0,
    Operation.UNPLANNED_FAILOVER: 600.0,
    Operation.APPLY_RECOVERY_POINT: 600.0,
    Operation.COMMIT: 300.0,
    Operation.REVERSE_REPLICATE: 900.0,
    Operation.TEST_FAILOVER: 900.0,
    Operation.TEST_FAILOVER_CLEANUP: 600.0,
    Operation.STOP_VM: 300.0,
    Operation.START_VM: 300.0,
    Operation.DISABLE_REPLICATION: 300.0,
}
DEADLINE_FACTOR = 2.0
MIN_DEADLINE_SECONDS = 300.0
# Full copies: how long they take is the VM's size over the link; watched, not timed.
NO_DEADLINE = frozenset({Operation.ENABLE_REPLICATION, Operation.RESYNC})
GLOBAL_LIMIT_FLAG = "drctl run --max-failovers-per-revision"


def deadline_seconds(plan: PlanSpec, observed: state.Observed, op: Operation) -> float | None:
    """How long a job of `op` may run on `plan`'s fabric before it is Stuck; None: no deadline."""
    if op in NO_DEADLINE:
        return None
    for named, seconds in plan.deadlines:
        if named is op:
            return seconds
    typical = observed.typical_durations.get(op, TYPICAL_SECONDS.get(op))
    if typical is None:
        return None
    return max(MIN_DEADLINE_SECONDS, DEADLINE_FACTOR * typical)


def past_deadline(
    plan: PlanSpec, observed: state.Observed, o: state.ObservedVM, job: state.Job, now: datetime
) -> str | None:
    """Why the job is Stuck (it runs past its deadline), or None while it is within it."""
    if job.operation is Operation.REVERSE_REPLICATE and o.last_failover is not FailoverKind.PLANNED:
        return None  # after an unplanned failover (or one drctl cannot tell) a full copy
    limit = deadline_seconds(plan, observed, job.operation)
    if limit is None:
        return None
    ran = (now - job.started_at).total_seconds()
    if ran <= limit:
        return None
    where = f" to {job.target_site}" if job.target_site else ""
    own = any(named is job.operation for named, _ in plan.deadlines)
    source = f"policy.deadlines.{job.operation}" if own else "the default for this fabric"
    return (
        f"{job.operation}{where} running for {duration_text(ran)} ({job.progress:.0%}, "
        f"job {job.id}), past its deadline of {duration_text(limit)} ({source}); "
        "drctl never cancels it: look at the job in the fabric"
    )


def duration_text(seconds: float) -> str:
    """47m12s, 30m, 2h, 1h30m: how an operator writes a duration."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [
        f"{hours}h" if hours else "",
        f"{minutes}m" if minutes else "",
        f"{secs}s" if secs else "",
    ]
    return "".join(parts) or "0s"


# --- the blast radius -------------------------------------------------------------------


def _under_way(o: state.ObservedVM) -> bool:
    """A move of the VM already runs: its failover or stop, or no copy runs any more."""
    job = o.job
    if job is not None and job.running and job.operation in state.FAILOVERS | {Operation.STOP_VM}:
        return True
    return not o.maybe_running


def moves(decided: Sequence[VMPlan]) -> list[int]:
    """The indexes of the VMs of `decided` the revision would fail over anew."""
    return [
        i
        for i, vp in enumerate(decided)
        if vp.observed is not None
        and vp.observed.active_site != vp.desired.active_site
        and vp.phase is not Phase.HELD
        and not _under_way(vp.observed)
    ]


def limit_moves(
    decided: list[VMPlan], limit: int | None, counted: Sequence[int], flag: bool = False
) -> list[VMPlan]:
    """`decided` with every counted move Blocked when there are more than `limit` of them."""
    if limit is None or len(counted) <= limit:
        return decided
    if flag:
        how = f" ({GLOBAL_LIMIT_FLAG}): raise it or split the change"
    else:
        how = ": raise it in a commit or split the change"
    reason = f"this revision moves {len(counted)} VMs; the limit is {limit}{how}"
    out = list(decided)
    for i in counted:
        out[i] = dataclasses.replace(out[i], phase=Phase.BLOCKED, reason=reason, action=None)
    return out


# --- suspend ------------------------------------------------------------------------------


def suspend(plan: PlanSpec, decided: list[VMPlan]) -> list[VMPlan]:
    """A suspended plan's decisions: no action, each VM Suspended (a Stuck job stays Stuck)."""
    if not plan.suspend:
        return decided
    said = "plan suspended (spec.suspend: true): drctl starts nothing"
    return [
        dataclasses.replace(
            vp,
            phase=Phase.STUCK if vp.phase is Phase.STUCK else Phase.SUSPENDED,
            reason=f"{said}; {vp.reason}",
            action=None,
        )
        for vp in decided
    ]
