"""The spec fuzzer at length: N damaged spec directories, with figures.

Run by hand: `.venv/bin/python bench/spec_fuzz.py [--cases 20000] [--seed 1]`.
It runs tests/specfuzz.py's cases as tests/test_spec_fuzz.py does (in this
process, `drctl validate`, one case in ten `drctl plan` on a simulated
fabric), then prints cases/s, the outcomes by kind of damage (exit 0, exit
2, anything else), every violation of the contract (a traceback, an exit
code out of the contract, a message not `file:line` in range, a message too
long, a case over 10 s) and the slowest cases. The baseline is the same
cases built and removed without running drctl: what the fuzzer costs by
itself. Exits 1 if any case broke the contract.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import specfuzz

from reconciler.cli import main as cli

INVENTORY = Path(__file__).resolve().parent.parent / "examples" / "inventory.yaml"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        state = root / "state"
        cli.main(["fabric", "init", str(INVENTORY), "--state-dir", str(state)])
        baseline = _baseline(root / "baseline", args.cases, args.seed)
        return _fuzz(root / "run", state, args.cases, args.seed, baseline)


def _baseline(root: Path, cases: int, seed: int) -> float:
    rng = random.Random(seed)  # noqa: S311 (a seeded fuzzer, no secret)
    texts = specfuzz.seeds()
    started = time.perf_counter()
    for _ in range(cases):
        case = specfuzz.generate(rng, texts)
        specfuzz.build(case, specfuzz.fresh(root))
    return time.perf_counter() - started


def _fuzz(root: Path, state: Path, cases: int, seed: int, baseline: float) -> int:
    rng = random.Random(seed)  # noqa: S311 (a seeded fuzzer, no secret)
    texts = specfuzz.seeds()
    outcomes: dict[str, Counter[str]] = defaultdict(Counter)
    reasons: Counter[str] = Counter()  # what `plan` said when it exited 3
    broken: list[str] = []
    slowest: list[tuple[float, int, str]] = []
    started = time.perf_counter()
    for number in range(cases):
        case = specfuzz.generate(rng, texts)
        specs = specfuzz.build(case, specfuzz.fresh(root))
        outcome = specfuzz.run_in_process(specfuzz.argv_for(case, specs, state))
        outcomes[case.kind][f"{case.command} {outcome.code}"] += 1
        if case.command == "plan" and outcome.code == 3:
            reasons[outcome.stderr.decode(errors="replace").strip()[:90]] += 1
        slowest = sorted([*slowest, (outcome.seconds, number, case.describe()[:160])])[-5:]
        broken.extend(
            f"case {number}: {case.describe()[:160]}: {what}"
            for what in specfuzz.violations(case, outcome, specs)
        )
    elapsed = time.perf_counter() - started
    print(
        f"{cases} cases (seed {seed}) in {elapsed:.1f} s: {cases / elapsed:.0f} cases/s; "
        f"baseline (build the cases only) {baseline:.1f} s"
    )
    print(f"violations of the contract: {len(broken)}")
    for line in broken[:50]:
        print(f"  {line}")
    print("outcomes by kind (command, exit code: cases):")
    for kind in sorted(outcomes):
        counts = ", ".join(f"{what} {n}" for what, n in sorted(outcomes[kind].items()))
        print(f"  {kind:18} {counts}")
    print("why plan exited 3 (a fabric it cannot open is a runtime error):")
    for reason, n in reasons.most_common(5):
        print(f"  {n:5}  {reason}")
    print("slowest cases:")
    for seconds, number, what in reversed(slowest):
        print(f"  {seconds * 1000:7.1f} ms  case {number}: {what}")
    return 1 if broken else 0


if __name__ == "__main__":
    raise SystemExit(main())
