"""Per-item exponential backoff for the executor's calls that failed transiently.

controller-runtime's rate limiter: each item (a job id, a (VM, operation),
a fabric's `list_jobs`) waits its own time after its own failures, or as
long as the fabric asked (Retry-After). Used by `engine.execute` only.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from datetime import datetime, timedelta

from reconciler.errors import ThrottledError, TransientError


class Backoff:
    """Per-item exponential backoff, controller-runtime's rate limiter: item -> retry time."""

    def __init__(self, delay: Callable[[int], float]) -> None:
        self._delay = delay
        self._failures: dict[Hashable, int] = {}
        self._retry_at: dict[Hashable, datetime] = {}

    def fail(self, item: Hashable, now: datetime, retry_after: float | None = None) -> None:
        """One more failure of `item`: wait as the fabric asked, else exponentially longer."""
        failures = self._failures.get(item, 0) + 1
        self._failures[item] = failures
        wait = self._delay(failures) if retry_after is None else retry_after
        self._retry_at[item] = now + timedelta(seconds=wait)

    def due(self, item: Hashable, now: datetime) -> bool:
        retry_at = self._retry_at.get(item)
        return retry_at is None or retry_at <= now

    def forget(self, item: Hashable) -> None:
        self._failures.pop(item, None)
        self._retry_at.pop(item, None)

    def next_at(self) -> datetime | None:
        return min(self._retry_at.values(), default=None)


def retry_after(exc: TransientError) -> float | None:
    """The wait a throttled fabric asked for; None for any other transient error."""
    return exc.retry_after if isinstance(exc, ThrottledError) else None
