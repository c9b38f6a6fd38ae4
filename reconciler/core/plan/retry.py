"""Retries: an action that failed backs off, then is Blocked after its attempts.

The attempts come from the journal (the executor reads them per revision), so
a restart does not reset them. Pure.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from reconciler.core.plan.model import AttemptsByAction, Phase, VMPlan
from reconciler.core.state import Operation


def with_attempts(
    decided: VMPlan, attempts: AttemptsByAction, now: datetime, max_attempts: int
) -> VMPlan:
    """Hold back an action that failed: back off, then Blocked after `max_attempts`."""
    action = decided.action
    if action is None:
        return decided
    tried = attempts.get((action.vm, action.operation))
    if action.operation is Operation.STOP_VM and action.target_site != decided.desired.active_site:
        # A stop that prepares a failover: pointless once that failover is
        # Blocked for this revision (it would stop the VM only to start it back).
        for failover in (Operation.PLANNED_FAILOVER, Operation.UNPLANNED_FAILOVER):
            spent = attempts.get((action.vm, failover))
            if spent is not None and spent.failures >= max_attempts:
                action, tried = dataclasses.replace(action, operation=failover), spent
                break
    if tried is None:
        return decided
    if tried.failures >= max_attempts:
        down = f"no copy of {action.vm} runs; "
        reason = (
            f"{down if decided.reason.startswith(down) else ''}"
            f"{action.operation} failed {tried.failures} times for this revision: "
            f"{tried.last_error}; fix the cause in the fabric, then `drctl retry --vm "
            f"{action.vm}` (or commit a spec change, a new revision) to try again"
        )
        return dataclasses.replace(decided, phase=Phase.BLOCKED, reason=reason, action=None)
    if tried.retry_at is not None and tried.retry_at > now:
        wait = (tried.retry_at - now).total_seconds()
        if tried.failures:
            why = f"attempt {tried.failures} of {max_attempts} failed ({tried.last_error})"
        else:
            why = f"the fabric did not take the call ({tried.last_error}); no attempt spent"
        reason = f"{decided.reason}; {why}, retrying in {wait:.0f}s"
        held = dataclasses.replace(
            action, ready=False, waiting_for=("backoff",), retry_at=tried.retry_at
        )
        return dataclasses.replace(decided, reason=reason, action=held)
    return decided
