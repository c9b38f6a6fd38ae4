"""The client-side token buckets that keep drctl within ARM's request limits.

ARM throttles each subscription and principal with a token bucket (since
2024): reads 250 burst refilled at 25 per second, writes 200 burst at 10 per
second. `Buckets` holds one of each at those rates (or the declaration's),
shared by every request of one provider; `asr.client` takes a token before
each request goes out, waiting on the injected clock when the bucket is
empty, so drctl's own traffic never meets a 429. Thread-safe: the
executor's calls may come from several threads. The counts and the time
spent waiting are what bench/asr_requests.py reports.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from reconciler.fabric.asr.settings import Rates
from reconciler.kits.clock import Clock


@dataclass
class Counts:
    reads: int = 0
    writes: int = 0
    waited_seconds: float = 0.0


class _Bucket:
    def __init__(self, burst: float, per_second: float, now: float) -> None:
        self.burst = burst
        self.per_second = per_second
        self.tokens = burst
        self.at = now

    def wait_for_one(self, now: float) -> float:
        """Take one token as of `now`; return how long to wait for it first (0: none)."""
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.per_second)
        self.at = now
        self.tokens -= 1.0
        return 0.0 if self.tokens >= 0 else -self.tokens / self.per_second


class Buckets:
    """A read bucket and a write bucket on `clock`."""

    def __init__(self, rates: Rates, clock: Clock) -> None:
        self._clock = clock
        now = clock.now().timestamp()
        self._reads = _Bucket(rates.reads_burst, rates.reads_per_second, now)
        self._writes = _Bucket(rates.writes_burst, rates.writes_per_second, now)
        self._lock = threading.Lock()
        self.counts = Counts()

    def take(self, *, write: bool) -> None:
        """Take a token for one request, after waiting for the bucket to refill if it must."""
        with self._lock:
            found = self._writes if write else self._reads
            wait = found.wait_for_one(self._clock.now().timestamp())
            if write:
                self.counts.writes += 1
            else:
                self.counts.reads += 1
            self.counts.waited_seconds += wait
        # The token is spent already (the bucket reads negative until then):
        # a second caller queues behind this one.
        if wait > 0:
            self._clock.sleep(wait)
