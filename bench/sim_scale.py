"""How the simulated fabric scales: observe() of 100k VMs, and starting 100 jobs in a row.

Run by hand: `.venv/bin/python bench/sim_scale.py [VMS]`. The baseline is a
bare `SELECT` of the same rows, so the figure shows what the fabric adds.
"""

from __future__ import annotations

import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from reconciler.core.state import Operation
from reconciler.fabric.base import Request
from reconciler.fabric.sim import provider as sim
from reconciler.fabric.sim import store as sim_store
from reconciler.fabric.sim import timing
from reconciler.fabric.sim.inventory import Inventory, InventoryVM
from reconciler.kits.clock import VirtualClock


def _median(runs: int, action: object) -> float:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        action()  # type: ignore[operator]
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    clock = VirtualClock(datetime(2026, 1, 1, tzinfo=UTC))
    vms = tuple(
        InventoryVM(f"vm{i:06d}", "ams", ("ams", "rtm") if i % 10 else None) for i in range(count)
    )
    with tempfile.TemporaryDirectory() as tmp:
        state_dir = Path(tmp)
        began = time.perf_counter()
        sim.init_fabric(state_dir, Inventory(("ams", "rtm"), vms, timing.Timings()), clock)
        print(f"init {count} VMs: {time.perf_counter() - began:.2f} s")
        fabric = sim.SimFabric(state_dir, clock)
        clock.advance(3600)

        baseline = sqlite3.connect(state_dir / sim_store.DB_NAME)

        def bare_select() -> None:
            baseline.execute("SELECT * FROM vms ORDER BY rowid").fetchall()

        print(f"baseline SELECT of {count} rows: {_median(5, bare_select):.3f} s (median of 5)")
        print(f"observe() of {count} VMs, none busy: {_median(5, fabric.observe):.3f} s")

        began = time.perf_counter()
        for i in range(1, 111):
            if i % 10 == 0:
                continue  # every tenth VM does not replicate
            fabric.start(Request(f"vm{i:06d}", Operation.PLANNED_FAILOVER))
        per_start = (time.perf_counter() - began) / 100
        print(f"start() x100 in a row: {per_start * 1000:.2f} ms each")
        print(f"observe() with 100 jobs running: {_median(3, fabric.observe):.3f} s")
        clock.advance(60)
        began = time.perf_counter()
        fabric.observe()
        print(f"observe() that finishes 100 due jobs: {time.perf_counter() - began:.3f} s")
        fabric.close()
        baseline.close()


if __name__ == "__main__":
    main()
