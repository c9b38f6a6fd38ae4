"""What the executor tells its caller about each action: started, ended, refused, held back.

`execute.Executor` emits an `Event` for each start, adoption and end of a
job; the daemon logs them (`daemon.loop`), `engine.metrics` counts them and
`ui.report` shows them. `execute.Event` and `execute.EventKind` name them too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from reconciler.core import plan, state


class EventKind(StrEnum):
    STARTED = "started"
    ADOPTED = "adopted"  # still running from a previous drctl run: followed, not restarted
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REFUSED = "refused"  # the provider, or drctl's hard rules (`guard`), refused to start it
    THROTTLED = "throttled"
    DEFERRED = "deferred"  # the call did not get through (timeout, network): retried, no attempt


@dataclass(frozen=True)
class Event:
    kind: EventKind
    plan: str
    vm: str
    operation: state.Operation
    target_site: str | None
    at: datetime
    job_id: str | None = None
    seconds: float | None = None
    error: str | None = None
    data_loss_seconds: float | None = None


def of_action(kind: EventKind, action: plan.Action, at: datetime, **extra: str) -> Event:
    """The event of `action`, at `at`."""
    return Event(kind, action.plan, action.vm, action.operation, action.target_site, at, **extra)  # type: ignore[arg-type]
