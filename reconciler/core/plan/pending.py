"""What a plan waits for, worked out once: jobs, time, a site, or a person.

`drctl apply` asks whether waiting can change anything (`Pending.can_progress`),
the daemon how long it may sleep (`Pending.wake_in`), the status page what
each VM waits for (`waits_for`): the same facts, read from the plan, not from
strings in it. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from reconciler.core.plan.model import Phase, Plan, VMPlan

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


class Wait(StrEnum):
    """What one VM that is not converged waits for."""

    PERSON = "person"  # Blocked, Held, WaitingForUser, Suspended, a commit to approve
    JOB = "job"  # a job running in the fabric (a Stuck one too)
    TURN = "turn"  # its action may start now: only maxParallel or a settle time hold it
    FABRIC = "fabric"  # a site or fabric to come back, or a sync to finish
    STEPS = "steps"  # its action waits for other steps (`Action.waiting_for`)
    NOTHING = "nothing"  # nothing drctl can name (a drill's part, a plan-level move)


def waits_for(vp: VMPlan) -> Wait | None:
    """What `vp` waits for; None when it is converged. The ladder `pending` counts."""
    if vp.converged:
        return None
    observed_job = vp.observed.job if vp.observed is not None else None
    action = vp.action
    if vp.phase in _HUMAN_PHASES:
        return Wait.PERSON
    if observed_job is not None and observed_job.running:
        return Wait.JOB
    if vp.phase is Phase.SUSPENDED:
        return Wait.PERSON  # until a commit resumes the plan
    if action is not None and action.ready:
        return Wait.TURN
    if vp.phase in _FABRIC_PHASES:
        return Wait.FABRIC
    if vp.phase is Phase.COMMIT_PENDING and action is None:
        return Wait.PERSON
    if action is not None:
        return Wait.STEPS
    return Wait.NOTHING


def pending(built: Plan) -> Pending:
    """What `built` waits for, over the VMs that are not converged."""
    jobs = ready = fabric = 0
    retry_at: datetime | None = None
    human: list[str] = []
    for vp in built.vms:
        wait = waits_for(vp)
        if wait is None:
            continue
        if wait is Wait.PERSON:
            human.append(f"{vp.plan}/{vp.name}")
        elif wait is Wait.JOB:
            jobs += 1
        elif wait is Wait.TURN:
            ready += 1
        elif wait is Wait.FABRIC:
            fabric += 1
        action = vp.action
        if action is not None and not action.ready and action.retry_at is not None:
            retry_at = action.retry_at if retry_at is None else min(retry_at, action.retry_at)
    for view in built.drills.values():
        # A drill ends by itself: its keep time runs out, its jobs end.
        if view.keep_until is not None:
            retry_at = view.keep_until if retry_at is None else min(retry_at, view.keep_until)
        else:
            fabric += 1
    return Pending(jobs, ready, retry_at, fabric, tuple(human))
