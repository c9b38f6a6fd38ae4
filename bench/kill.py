"""The kill test at length: N SIGKILLs of a real `drctl run` during moves and flip-flopping commits.

Run by hand: `.venv/bin/python bench/kill.py [--kills 30] [--seed 1] [--max-delay 2]`.
It runs tests/e2e/kill.py's `run_kills` (a real git repository and watched
clone, the simulated fabric, `drctl run` as a subprocess killed with SIGKILL
at a random moment after each commit is pulled and started again), then
prints its settings and figures: kills (and how many landed with jobs
running), commits and reverts, the fabric's jobs and the journal's entries,
and what must be 0: intents issued twice, jobs the journal never recorded,
cancels, tracebacks in the daemon's log; and whether everything converged.
Exits 1 if any of those is not as it must be.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from e2e import kill


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=30, help="SIGKILLs (each then a restart)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the moments and moves")
    parser.add_argument(
        "--max-delay", type=float, default=2.0, help="a kill comes up to this long after a pull"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="drctl-kill-") as root:
        figures = kill.run_kills(Path(root), args.kills, args.seed, args.max_delay)
    print(
        f"kill: {args.kills} SIGKILLs of drctl run, seed {args.seed}, up to {args.max_delay:g} s "
        f"after each pull; timings {kill.TIMINGS} over the e2e harness's"
    )
    for field in dataclasses.fields(figures):
        value = getattr(figures, field.name)
        print(
            f"  {field.name}: {value:.1f}"
            if isinstance(value, float)
            else f"  {field.name}: {value}"
        )
    return 0 if figures.clean() else 1


if __name__ == "__main__":
    sys.exit(main())
