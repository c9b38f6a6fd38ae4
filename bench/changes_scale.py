"""What the per-field "what changes" of `drctl plan` costs at 100k VMs, 1% differing.

Run: `.venv/bin/python bench/changes_scale.py` (100,000 VMs), or for a quick
look `.venv/bin/python bench/changes_scale.py --vms 10000`.

Inputs, built in process (no fabric, no spec file): N VMs that should run at
ams replicating ams->rtm, 1% of them wanted at rtm replicating rtm->ams, and
an observation where every VM runs at ams replicating ams->rtm; so 1% differ
in both fields. A VM's state is the tuple (activeSite, replication), as
`report.plan_changes` compares it.

Measured in the same run (medians of --runs; the baseline once):
- the keyed comparison that finds the differing VMs (`items() ^ items()`);
- DeepDiff on each differing VM's dicts, one call per VM;
- DeepDiff once on a dict of the differing VMs only;
- `difference.compare_fields` on the differing VMs, as drctl runs it: DeepDiff
  once per distinct pair of states (its memory cleared before each run);
- for scale, the whole `drctl plan --output json` text of a plan of those
  VMs (`report.plan_json_lines`), which finds the changes once per distinct
  line (bench/plan_scale.py compares the process before and after);
- `import deepdiff` in a fresh process that already imported pydantic (as
  drctl has), the one-off cost a `drctl plan` with a difference pays;
- the baseline: DeepDiff of the whole {vm: {activeSite, replication}} dicts.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

from measure import median_seconds

from reconciler.core import plan
from reconciler.core.desired import DesiredState, DesiredVM, PlanSpec
from reconciler.core.state import (
    Observed,
    ObservedVM,
    Operation,
    ProtectionState,
    Replication,
    ReplicationState,
    Site,
)
from reconciler.kits import difference, gcpause
from reconciler.ui import report

MOVE_EVERY = 100  # 1% of the VMs differ
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
FIELDS = report.CHANGE_FIELDS
State = tuple[str, str]

_IMPORT = """\
import time, pydantic
began = time.perf_counter()
import deepdiff
print(time.perf_counter() - began)
"""


def states(count: int) -> tuple[dict[str, State], dict[str, State]]:
    """{vm: (activeSite, replication)} desired and observed; every 100th VM differs."""
    home, away = ("ams", "ams->rtm"), ("rtm", "rtm->ams")
    desired = {f"vm{i:06d}": away if i % MOVE_EVERY == 0 else home for i in range(count)}
    observed = dict.fromkeys(desired, home)
    return desired, observed


def built_plan(count: int) -> plan.Plan:
    """The plan of the same VMs, built from drctl's own values."""
    desired = DesiredState(
        plans=(
            PlanSpec(
                name="scale",
                file="scale.yaml",
                sites=("ams", "rtm"),
                allow_data_loss=False,
                max_parallel=10,
                groups=(),
                vms=tuple(
                    DesiredVM(
                        "scale",
                        f"vm{i:06d}",
                        *(
                            ("rtm", ("rtm", "ams"))
                            if i % MOVE_EVERY == 0
                            else ("ams", ("ams", "rtm"))
                        ),
                        False,
                        None,
                    )
                    for i in range(count)
                ),
            ),
        )
    )
    replication = Replication(
        "ams", "rtm", ReplicationState.REPLICATING, last_sync=NOW - timedelta(seconds=5)
    )
    allowed = frozenset({Operation.PLANNED_FAILOVER, Operation.STOP_VM})
    vms = {
        vm.name: ObservedVM(
            vm.name, "ams", ("ams",), ProtectionState.PROTECTED, replication, allowed
        )
        for vm in desired.vms()
    }
    observed = Observed(sites={s: Site(s, True) for s in ("ams", "rtm")}, vms=vms, at=NOW)
    return plan.build_plan(desired, observed, NOW)


def as_dicts(found: dict[str, State]) -> dict[str, dict[str, str]]:
    return {name: dict(zip(FIELDS, state, strict=True)) for name, state in found.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    n, runs = args.vms, args.runs

    from deepdiff import DeepDiff  # imported here; its import is measured apart below

    desired, observed = states(n)
    with gcpause.gc_paused():
        built = built_plan(n)

    def keyed() -> set[str]:
        return {name for name, _ in desired.items() ^ observed.items()}

    differing = sorted(keyed())
    assert len(differing) == len(range(0, n, MOVE_EVERY))
    old = {name: observed[name] for name in differing}
    new = {name: desired[name] for name in differing}
    old_dicts, new_dicts = as_dicts(old), as_dicts(new)

    def each() -> int:
        return sum(
            len(DeepDiff(old_dicts[name], new_dicts[name], threshold_to_diff_deeper=0))
            for name in differing
        )

    def once() -> object:
        return DeepDiff(old_dicts, new_dicts, threshold_to_diff_deeper=0)

    def remembered() -> int:
        # As a process's first call: DeepDiff once per distinct pair of states.
        difference._compare.cache_clear()
        return sum(
            len(difference.compare_fields(FIELDS, old[name], new[name])) for name in differing
        )

    def render() -> str:
        difference._compare.cache_clear()
        return "".join(report.plan_json_lines(built, "r"))

    assert remembered() == 2 * len(differing)
    assert render().count('"changes": {"activeSite": ["ams", "rtm"]') == len(differing)
    keyed_s = median_seconds(runs, keyed)
    each_s = median_seconds(runs, each)
    once_s = median_seconds(runs, once)
    remembered_s = median_seconds(runs, remembered)
    render_s = median_seconds(runs, render)
    imports = sorted(
        float(
            subprocess.run(
                [sys.executable, "-c", _IMPORT], check=True, capture_output=True, text=True
            ).stdout
        )
        for _ in range(runs)
    )
    import_s = imports[len(imports) // 2]

    began = time.perf_counter()
    baseline = DeepDiff(as_dicts(desired), as_dicts(observed), threshold_to_diff_deeper=0)
    baseline_s = time.perf_counter() - began
    assert len(baseline["values_changed"]) == 2 * len(differing)

    found = keyed_s + remembered_s
    print(
        f"what changes at {n:,} VMs, {len(differing):,} differing "
        f"(medians of {runs}; the baseline once):"
    )
    rows = [
        ("keyed compare, finds the differing VMs", keyed_s),
        (f"DeepDiff on each differing VM ({len(differing):,} calls)", each_s),
        ("DeepDiff once on the differing VMs' dicts", once_s),
        ("difference.compare_fields on them (drctl: remembered)", remembered_s),
        ("render the plan JSON, changes included (for scale)", render_s),
        ("import deepdiff, after pydantic (once a VM differs)", import_s),
        ("baseline: DeepDiff of the whole desired vs observed", baseline_s),
    ]
    for label, seconds in rows:
        print(f"  {label:<54} {seconds:8.4f} s")
    print(
        f"keyed compare + DeepDiff on the differing VMs only: {keyed_s + each_s:.3f} s, "
        f"{baseline_s / (keyed_s + each_s):.0f}x faster than the baseline; as drctl runs it "
        f"(remembered): {found:.4f} s, {baseline_s / found:.0f}x faster"
    )


if __name__ == "__main__":
    main()
