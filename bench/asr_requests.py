"""How many ARM requests the ASR provider makes, and how long its token buckets make it wait.

Run: `.venv/bin/python bench/asr_requests.py` (needs the asr extra).

Against the local ARM test server of tests/fabric/asr (the real SDK, the real
AzureCliCredential through the stand-in `az`), on a virtual clock, with ASR's
own Retry-After of 30 s on jobs:
- requests per reconcile pass at rest (one observe) at 10, 100 and 1,000 items;
- requests per VM moved (planned failover, commit, reprotect, each job
  followed to its end as the executor does, polling every 0.5 s);
- a 200-VM failover at 1,000 items: the time its requests wait for the
  client-side buckets, and the read rate while 200 jobs run with a 30 s
  resync, against ARM's refill of 25 reads per second.
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from builders import TIMINGS  # noqa: E402 (the path above first)
from fabric.asr import harness  # noqa: E402

from reconciler.core.state import Operation  # noqa: E402
from reconciler.fabric import base  # noqa: E402
from reconciler.fabric.sim.inventory import Inventory, InventoryVM  # noqa: E402
from reconciler.fabric.sim.timing import Timings  # noqa: E402
from reconciler.kits.clock import VirtualClock  # noqa: E402

POLL = 0.5  # the executor's poll interval


def vault(
    n: int, clock: VirtualClock, directory: Path, timings: Timings = TIMINGS
) -> harness.AsrUnderTest:
    vms = tuple(InventoryVM(f"vm{i:04d}", "ams", ("ams", "rtm")) for i in range(n))
    return harness.open_fabric(
        directory, clock, Inventory(("ams", "rtm"), vms, timings), retry_after=30
    )


def follow(provider: base.Provider, clock: VirtualClock, jobs: list[str]) -> None:
    running = set(jobs)
    while running:
        for job_id in sorted(running):
            if not provider.get_job(job_id).running:
                running.discard(job_id)
        clock.advance(POLL)


def main() -> None:
    print("items  requests per pass (observe at rest)")
    for n in (10, 100, 1000):
        clock = VirtualClock(datetime(2026, 3, 1, tzinfo=UTC))
        with tempfile.TemporaryDirectory() as tmp:
            built = vault(n, clock, Path(tmp))
            provider = built.open()
            provider.observe()  # the first pass also reads the containers, once
            before = built.server.count()
            provider.observe()
            print(f"{n:>5}  {built.server.count() - before}")
            built.close()

    clock = VirtualClock(datetime(2026, 3, 1, tzinfo=UTC))
    with tempfile.TemporaryDirectory() as tmp:
        built = vault(10, clock, Path(tmp))
        provider = built.open()
        provider.observe()
        before = built.server.count()
        for op in (Operation.PLANNED_FAILOVER, Operation.COMMIT, Operation.REVERSE_REPLICATE):
            follow(provider, clock, [provider.start(base.Request("vm0000", op))])
        moved = built.server.count() - before
        print(f"requests per VM moved (failover, commit, reprotect, jobs followed): {moved}")
        built.close()

    clock = VirtualClock(datetime(2026, 3, 1, tzinfo=UTC))
    with tempfile.TemporaryDirectory() as tmp:
        # Failovers of 15 minutes, as real ones take: all 200 run through the window.
        slow = dataclasses.replace(TIMINGS, planned_failover=900)
        built = vault(1000, clock, Path(tmp), slow)
        built.server.arm_limits = True  # the server throttles as ARM does
        provider = built.open()
        provider.observe()
        waited = provider.buckets.counts.waited_seconds
        jobs = [
            provider.start(base.Request(f"vm{i:04d}", Operation.PLANNED_FAILOVER))
            for i in range(200)
        ]
        print(
            "200-VM failover at 1,000 items: waited for the buckets "
            f"{provider.buckets.counts.waited_seconds - waited:.1f} s over "
            f"{len(jobs)} POSTs"
        )
        start, reads = clock.now(), built.server.count("GET")
        for _ in range(2):  # two resync passes of 30 s while the jobs run
            for _step in range(int(30 / POLL)):
                for job_id in jobs:
                    provider.get_job(job_id)
                clock.advance(POLL)
            provider.observe()
        seconds = (clock.now() - start).total_seconds()
        rate = (built.server.count("GET") - reads) / seconds
        throttled = sum(1 for r in built.server.requests if r.status == 429)
        print(
            f"reads while 200 jobs run (30 s resync, executor polling every {POLL} s): "
            f"{rate:.1f}/s (ARM refills 25/s); 429s: {throttled}"
        )
        built.close()


if __name__ == "__main__":
    main()
