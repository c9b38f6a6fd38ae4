"""How `drctl plan` scales: 1k, 10k and 100k VMs, against a naive baseline run alongside.

Run: `make bench` (`.venv/bin/python bench/plan_scale.py`), or for a quick
look `.venv/bin/python bench/plan_scale.py --sizes 1000,10000`.

For each size N it writes, in a temporary directory, one RecoveryPlan of N
name-only entries inheriting `defaults: {activeSite: ams, replication:
ams->rtm}`, 1% of them overriding to `activeSite: rtm, replication: rtm->ams`;
and an inventory where every VM runs at ams replicating ams->rtm, from which
`drctl fabric init` builds the simulated fabric (timed apart). So 1% of the
VMs must move and the plan has real actions.

Measured, as the median of 5 runs (3 at 100k):
- load+validate: `specdir.load_specs` of the spec directory;
- observe: `SimFabric.observe()`;
- plan: `plan.build_plan`;
- render: the JSON text `drctl plan --output json` prints (`report.plan_json_lines`),
  and for comparison what it printed before, `json.dumps(report.plan_json(...), indent=2)`;
- the whole `drctl plan SPECS --output json --state-dir DIR` process: wall
  time, and peak RSS of that process alone (`os.wait4` on its pid, from a
  small intermediate process: see `_MEASURE`), stdout to a file.

The naive baseline, in the same run: PyYAML's C loader (`yaml.CSafeLoader`)
on the same spec, then one DeepDiff of {vm: {activeSite, replication}} built
from it with the defaults applied against the same built from the
observation. DeepDiff takes ~30 s at 100k, so the baseline runs once there.

The target (the issue): the whole `drctl plan` process at 100k VMs under
2 s and under 500 MB on the 2-core machine of shared/perf-notes.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from measure import median_seconds, run_process

from reconciler.core import plan
from reconciler.fabric.sim import provider as sim
from reconciler.gitops import specdir
from reconciler.kits import gcpause
from reconciler.ui import report

SIZES = (1_000, 10_000, 100_000)
OVERRIDE_EVERY = 100  # 1% of the entries move to rtm
TARGET_SIZE = 100_000
TARGET_SECONDS = 2.0
TARGET_MB = 500.0


@dataclass
class Figures:
    """Seconds (medians) and megabytes for one size."""

    vms: int
    init: float = 0.0
    load: float = 0.0
    observe: float = 0.0
    plan: float = 0.0
    render: float = 0.0
    render_dumps: float = 0.0
    process: float = 0.0
    process_mb: float = 0.0
    actions: int = 0
    naive_load: float = 0.0
    naive_diff: float = 0.0
    naive_runs: int = 0
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------
# The inputs.


def write_inputs(root: Path, count: int) -> tuple[Path, Path]:
    """The spec directory and the inventory file for `count` VMs."""
    specs = root / "specs"
    specs.mkdir()
    lines = [
        "apiVersion: drctl/v1",
        "kind: RecoveryPlan",
        "metadata: {name: scale}",
        "spec:",
        "  sites: [ams, rtm]",
        "  defaults: {activeSite: ams, replication: ams->rtm}",
        "  vms:",
    ]
    for i in range(count):
        lines.append(f"    - name: {vm_name(i)}")
        if i % OVERRIDE_EVERY == 0:
            lines += ["      activeSite: rtm", "      replication: rtm->ams"]
    (specs / "scale.yaml").write_text("\n".join(lines) + "\n")
    inventory = root / "inventory.yaml"
    vms = (
        f"  - {{name: {vm_name(i)}, activeSite: ams, replication: ams->rtm}}" for i in range(count)
    )
    inventory.write_text("\n".join(["sites: [ams, rtm]", "vms:", *vms]) + "\n")
    return specs, inventory


def _plan(desired: Any, observed: Any, now: datetime) -> plan.Plan:
    """The planner as the CLI and the executor run it: with the cyclic GC paused."""
    with gcpause.gc_paused():
        return plan.build_plan(desired, observed, now, {})


def vm_name(i: int) -> str:
    return f"vm{i:06d}"


def drctl_command() -> list[str]:
    """The installed `drctl` script next to this interpreter, else `python -m reconciler`."""
    script = shutil.which("drctl", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "reconciler"]


# ---------------------------------------------------------------------------
# Measuring.


def measure_drctl(figures: Figures, specs: Path, state_dir: Path, runs: int) -> None:
    figures.load = median_seconds(runs, lambda: specdir.load_specs(specs))
    desired = specdir.load_specs(specs)
    with sim.SimFabric(state_dir) as fabric:
        figures.observe = median_seconds(runs, fabric.observe)
        observed = fabric.observe()
    now = datetime.now(UTC)
    figures.plan = median_seconds(runs, lambda: _plan(desired, observed, now))
    built = _plan(desired, observed, now)
    figures.render = median_seconds(runs, lambda: "".join(report.plan_json_lines(built, "r")))
    figures.render_dumps = median_seconds(
        runs, lambda: json.dumps(report.plan_json(built, "r"), indent=2)
    )
    figures.actions = len(built.actions)
    expected = len(range(0, figures.vms, OVERRIDE_EVERY))
    assert figures.actions == expected, (figures.actions, expected)

    argv = [*drctl_command(), "plan", str(specs), "--output", "json", "--state-dir", str(state_dir)]
    output = specs.parent / "plan.json"
    results = [run_process(argv, output) for _ in range(runs)]
    figures.process = statistics.median(seconds for seconds, _ in results)
    figures.process_mb = max(mb for _, mb in results)
    printed = json.loads(output.read_text())
    assert len(printed["actions"]) == expected and len(printed["vms"]) == figures.vms


def measure_naive(figures: Figures, specs: Path, state_dir: Path, runs: int) -> None:
    """PyYAML's C loader, then DeepDiff of the whole desired and observed dicts."""
    from deepdiff import DeepDiff  # 141 ms of imports: only the baseline pays them

    text = (specs / "scale.yaml").read_text()
    with sim.SimFabric(state_dir) as fabric:
        observed = {
            name: {"activeSite": o.active_site, "replication": o.replication_text}
            for name, o in fabric.observe().vms.items()
        }
    loads, diffs = [], []
    for _ in range(runs):
        began = time.perf_counter()
        doc = yaml.load(text, Loader=yaml.CSafeLoader)
        desired = naive_desired(doc)
        loaded = time.perf_counter()
        diff = DeepDiff(desired, observed)
        diffs.append(time.perf_counter() - loaded)
        loads.append(loaded - began)
        moved = len(range(0, figures.vms, OVERRIDE_EVERY))
        assert len(diff.get("values_changed", {})) == 2 * moved
        del doc, desired, diff
    figures.naive_load = statistics.median(loads)
    figures.naive_diff = statistics.median(diffs)
    figures.naive_runs = runs


def naive_desired(doc: dict[str, Any]) -> dict[str, dict[str, str]]:
    body = doc["spec"]
    defaults = body.get("defaults", {})
    return {
        vm["name"]: {
            "activeSite": vm.get("activeSite", defaults.get("activeSite")),
            "replication": vm.get("replication", defaults.get("replication")),
        }
        for vm in body["vms"]
    }


def measure_size(count: int) -> Figures:
    figures = Figures(count)
    runs = 3 if count >= TARGET_SIZE else 5
    with tempfile.TemporaryDirectory(prefix="drctl-bench-") as tmp:
        root = Path(tmp)
        specs, inventory = write_inputs(root, count)
        state_dir = root / "state"
        began = time.perf_counter()
        subprocess.run(
            [*drctl_command(), "fabric", "init", str(inventory), "--state-dir", str(state_dir)],
            check=True,
            capture_output=True,
        )
        figures.init = time.perf_counter() - began
        print(f"{count} VMs: fabric init {figures.init:.1f} s (not part of plan)", flush=True)
        measure_drctl(figures, specs, state_dir, runs)
        print(
            f"{count} VMs: drctl plan process {figures.process:.3f} s, {figures.process_mb:.0f} MB",
            flush=True,
        )
        gc.collect()  # drop drctl's objects: the baseline should not pay for their GC
        naive_runs = 1 if count >= TARGET_SIZE else runs
        measure_naive(figures, specs, state_dir, naive_runs)
        print(
            f"{count} VMs: naive baseline {figures.naive_load + figures.naive_diff:.2f} s "
            f"({naive_runs} run{'s' if naive_runs > 1 else ''})",
            flush=True,
        )
    return figures


# ---------------------------------------------------------------------------
# The report.


def print_table(all_figures: list[Figures]) -> None:
    def row(label: str, cells: list[str]) -> None:
        print(f"| {label} | {' | '.join(cells)} |")

    def seconds(pick: Callable[[Figures], float]) -> list[str]:
        return [f"{pick(f):.3f} s" for f in all_figures]

    sizes = [f"{f.vms:,} VMs" for f in all_figures]
    print()
    row("step", sizes)
    row("---", ["---:"] * len(all_figures))
    row("load+validate (`specdir.load_specs`)", seconds(lambda f: f.load))
    row("observe (`SimFabric.observe`)", seconds(lambda f: f.observe))
    row("plan (`plan.build_plan`)", seconds(lambda f: f.plan))
    row("render JSON (`report.plan_json_lines`)", seconds(lambda f: f.render))
    row("(render as before: `json.dumps(plan_json, indent=2)`)", seconds(lambda f: f.render_dumps))
    row("**whole `drctl plan --output json` process**", seconds(lambda f: f.process))
    row("**peak RSS of that process**", [f"{f.process_mb:.0f} MB" for f in all_figures])
    row("actions in the plan (1% of VMs move)", [f"{f.actions:,}" for f in all_figures])
    row("naive: PyYAML CSafeLoader + defaults", seconds(lambda f: f.naive_load))
    row("naive: DeepDiff desired vs observed", seconds(lambda f: f.naive_diff))
    row("naive runs (median of)", [str(f.naive_runs) for f in all_figures])
    row("load+validate vs naive load", [_ratio(f.naive_load, f.load) for f in all_figures])
    row("plan vs naive DeepDiff", [_ratio(f.naive_diff, f.plan) for f in all_figures])
    row(
        "load+plan vs naive load+diff",
        [_ratio(f.naive_load + f.naive_diff, f.load + f.plan) for f in all_figures],
    )
    print()
    print(
        "Medians of 5 runs (3 at 100k); the naive baseline runs once at 100k. "
        "`fabric init` (not timed above): "
        + ", ".join(f"{f.init:.1f} s at {f.vms:,}" for f in all_figures)
        + "."
    )
    for f in all_figures:
        if f.vms == TARGET_SIZE:
            met = f.process < TARGET_SECONDS and f.process_mb < TARGET_MB
            print(
                f"Target at {TARGET_SIZE:,} VMs (whole process < {TARGET_SECONDS:.0f} s and "
                f"< {TARGET_MB:.0f} MB): {f.process:.2f} s, {f.process_mb:.0f} MB: "
                f"{'met' if met else 'NOT met'}."
            )


def _ratio(naive: float, ours: float) -> str:
    if naive <= 0 or ours <= 0:
        return "-"
    if naive >= ours:
        return f"{naive / ours:.1f}x faster"
    return f"{ours / naive:.1f}x slower"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        default=",".join(str(n) for n in SIZES),
        help="comma-separated VM counts (default: 1000,10000,100000)",
    )
    args = parser.parse_args()
    sizes = [int(n) for n in args.sizes.split(",") if n.strip()]
    print_table([measure_size(n) for n in sizes])


if __name__ == "__main__":
    main()
