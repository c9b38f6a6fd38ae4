"""Where `drctl status --output json` spends its time at 1k, 10k and 100k VMs.

Run by hand: `.venv/bin/python bench/status_scale.py [--sizes 1000,10000,100000]`.
The inputs are bench/plan_scale.py's (one RecoveryPlan of N name-only
entries, 1% moving, a simulated fabric from `drctl fabric init`). Measured,
medians of 5 runs (3 at 100k), in process: load+validate, observe, plan
(`plan.build_plans`, as `drctl status` runs it), and the JSON text as
`drctl status` prints it now (`report.status_json_lines`) and as it did
before (`json.dumps(report.status_json(...), indent=2)`); then the whole
`drctl status --output json` process, wall time and its own peak RSS.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from measure import median_seconds, run_process_cpu
from plan_scale import drctl_command, write_inputs

from reconciler.core import plan
from reconciler.engine import fabrics
from reconciler.gitops import specdir
from reconciler.kits import clock, gcpause
from reconciler.ui import report

TARGET_SIZE = 100_000
TARGET_SECONDS = 1.0


def measure_size(count: int) -> None:
    runs = 3 if count >= TARGET_SIZE else 5
    with tempfile.TemporaryDirectory(prefix="drctl-bench-") as tmp:
        root = Path(tmp)
        specs, inventory = write_inputs(root, count)
        state_dir = root / "state"
        subprocess.run(
            [*drctl_command(), "fabric", "init", str(inventory), "--state-dir", str(state_dir)],
            check=True,
            capture_output=True,
        )
        with gcpause.gc_paused():
            load = median_seconds(runs, lambda: specdir.load_plans(specs))
            desired = specdir.load_plans(specs)
            in_use = desired.fabrics_in_use()
            with fabrics.open_for(desired, state_dir, clock.WallClock()) as opened:
                observe = median_seconds(runs, lambda: opened.observe(in_use))
                observed = opened.observe(in_use)
            now = datetime.now(UTC)
            planning = median_seconds(runs, lambda: plan.build_plans(desired, observed, now))
            built = plan.build_plans(desired, observed, now)
            lines = median_seconds(runs, lambda: "".join(report.status_json_lines(built, "r")))
            before = median_seconds(
                runs, lambda: json.dumps(report.status_json(built, "r"), indent=2)
            )
        argv = [*drctl_command(), "status", str(specs), "--output", "json"]
        argv += ["--state-dir", str(state_dir)]
        output = root / "status.json"
        results = [run_process_cpu(argv, output) for _ in range(runs)]
        process = statistics.median(seconds for seconds, _, _ in results)
        cpu = statistics.median(cpu for _, _, cpu in results)
        peak = max(mb for _, mb, _ in results)
        assert len(json.loads(output.read_text())["vms"]) == count
    print(
        f"{count:>7} VMs  load {load:.3f} s, observe {observe:.3f} s, plan {planning:.3f} s, "
        f"JSON {lines:.3f} s (as before, indented: {before:.3f} s) | whole "
        f"`drctl status --output json` {process:.2f} s ({cpu:.2f} s of CPU), {peak:.0f} MB",
        flush=True,
    )
    if count == TARGET_SIZE:
        met = "met" if process < TARGET_SECONDS else "NOT met"  # wall time, as a user waits
        print(f"{'':>13}target (< {TARGET_SECONDS:.0f} s at {TARGET_SIZE:,} VMs): {met}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    sizes = [int(n) for n in parser.parse_args().sizes.split(",") if n.strip()]
    print("medians of 5 runs (3 at 100k); the simulated fabric's init is not timed")
    for count in sizes:
        measure_size(count)


if __name__ == "__main__":
    main()
