"""What a plan waits for, worked out once: jobs, time, a site, or a person.

`drctl apply` asks whether waiting can change anything (`Pending.can_progress`),
the daemon how long it may sleep (`Pending.wake_in`): the same facts, read
from the plan, not from strings in it. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from reconciler.core.plan.model import Phase, Plan

# Phases that time alone ends: a site or fabric comes back, a sync finishes.
_FABRIC_PHASES = frozenset({Phase.WAITING_FOR_SITE, Phase.SYNCING})
# Phases only a person ends (a commit, or a repair in the fabric).
_HUMAN_PHASES = frozenset({Phase.BLOCKED, Phase.HELD, Phase.WAITING_FOR_USER})


@dataclass(frozen=True, slots=True)
class Pending:
    jobs: int  # VMs with a job running in the fabric
    ready: int  # actions startable now, held only by maxParallel or a settle time
    retry_at: datetime | None  # the first action held back by a backoff may start then
    fabric: int  # VMs waiting for a site or a fabric, or for a sync to finish
    human: tuple[str, ...]  # VMs only a person can move on (Blocked, Held): plan/name

    @property
    def can_progress(self) -> bool:
        """Whether waiting can change anything without a person changing the spec or fabric."""
        return bool(self.jobs or self.ready or self.retry_at or self.fabric)

    def wake_in(self, now: datetime, poll: float, slow_poll: float, idle: float) -> float:
        """Seconds until the next look is worth it.

        `poll` while a job runs or an action is ready, `slow_poll` while a site,
        fabric or sync is awaited, until the retry time of a backoff, else `idle`.
        """
        waits = [idle]
        if self.jobs or self.ready:
            waits.append(poll)
        if self.fabric:
            waits.append(slow_poll)
        if self.retry_at is not None:
            waits.append(max(0.0, (self.retry_at - now).total_seconds()))
        return min(waits)


def pending(built: Plan) -> Pending:
    """What `built` waits for, over the VMs that are not converged."""
    jobs = ready = fabric = 0
    retry_at: datetime | None = None
    human: list[str] = []
    for vp in built.vms:
        if vp.converged:
            continue
        observed_job = vp.observed.job if vp.observed is not None else None
        action = vp.action
        if vp.phase in _HUMAN_PHASES:
            human.append(f"{vp.plan}/{vp.name}")
        elif observed_job is not None and observed_job.running:
            jobs += 1  # a Stuck job, or one a suspended plan follows, too
        elif vp.phase is Phase.SUSPENDED:
            human.append(f"{vp.plan}/{vp.name}")  # until a commit resumes the plan
        elif action is not None and action.ready:
            ready += 1
        elif vp.phase in _FABRIC_PHASES:
            fabric += 1
        elif vp.phase is Phase.COMMIT_PENDING and action is None:
            human.append(f"{vp.plan}/{vp.name}")
        if action is not None and not action.ready and action.retry_at is not None:
            retry_at = action.retry_at if retry_at is None else min(retry_at, action.retry_at)
    for view in built.drills.values():
        # A drill ends by itself: its keep time runs out, its jobs end.
        if view.keep_until is not None:
            retry_at = view.keep_until if retry_at is None else min(retry_at, view.keep_until)
        else:
            fabric += 1
    return Pending(jobs, ready, retry_at, fabric, tuple(human))
