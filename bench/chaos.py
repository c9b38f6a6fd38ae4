"""The chaos proof at length: the state machine of tests/engine/test_chaos.py for N steps.

Run by hand: `.venv/bin/python bench/chaos.py [--steps 100000]`. It runs
`ChaosMachine` in batches of hypothesis runs until N rule steps have run, then
prints the steps, the wall time and steps/s. On a counterexample it prints
hypothesis's report (the failing steps, shrunk, as code) and exits 1.
`--all-invariants` also checks those today's code is known to break (the
strict xfail tests of test_chaos.py), as a mutation run does. The baseline
is the same machine with the reconciler left out (`--baseline`): what the
fabric, hypothesis and the checks cost by themselves.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from engine import test_chaos as chaos


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000, help="rule steps to run")
    parser.add_argument(
        "--steps-per-run", type=int, default=100, help="hypothesis stateful_step_count"
    )
    parser.add_argument(
        "--all-invariants", action="store_true", help="check the known violations too"
    )
    parser.add_argument("--baseline", action="store_true", help="no reconciler passes")
    args = parser.parse_args()
    if args.all_invariants:
        chaos.ChaosMachine.checked = tuple(chaos.INVARIANTS)
    machine: type[chaos.ChaosMachine] = chaos.ChaosMachine
    if args.baseline:
        machine = _without_reconciler()
    per_batch = 50
    began = time.perf_counter()
    first = chaos.steps_run()
    found: BaseException | None = None
    while chaos.steps_run() - first < args.steps:
        left = args.steps - (chaos.steps_run() - first)
        runs = max(1, min(per_batch, -(-left // args.steps_per_run)))
        try:
            run_state_machine_as_test(
                machine,
                settings=settings(
                    max_examples=runs,
                    stateful_step_count=args.steps_per_run,
                    deadline=None,
                    database=None,
                    suppress_health_check=list(HealthCheck),
                ),
            )
        except Exception as exc:  # noqa: BLE001 (the counterexample is the output)
            found = exc
            break
        done = chaos.steps_run() - first
        print(f"  {done} steps, {done / (time.perf_counter() - began):.0f} steps/s", flush=True)
    seconds = time.perf_counter() - began
    steps = chaos.steps_run() - first
    checked = len(chaos.ChaosMachine.checked)
    print(
        f"chaos: {steps} steps in {seconds:.1f} s: {steps / seconds:.0f} steps/s "
        f"({chaos.ChaosMachine.machines} runs, {checked} of {len(chaos.INVARIANTS)} invariants"
        f"{', no reconciler' if args.baseline else ''})"
    )
    if found is not None:
        print("counterexample:")
        print("".join(traceback.format_exception(found)), end="")
        return 1
    return 0


def _without_reconciler() -> type[chaos.ChaosMachine]:
    """The machine with every reconciler pass left out (nothing plans, nothing starts)."""
    empty = chaos.plan.Plan(vms=(), actions=(), unmanaged=())

    class Baseline(chaos.ChaosMachine):
        def _reconcile(self) -> None:
            self.steps += 1

        def _settle(self) -> chaos.plan.Plan:
            return empty

    return Baseline


if __name__ == "__main__":
    sys.exit(main())
