"""The kept spec fuzzer: thousands of damaged spec directories, each answered in the contract.

Seeded (DRCTL_FUZZ_SEED, default below; DRCTL_FUZZ_CASES for more cases),
so that a failure is reproduced by its seed and case number. Each case is a
directory made from the example specs with one kind of damage
(tests/specfuzz.py); `drctl validate` runs on it in this process, one case in
ten `drctl plan` on a simulated fabric, and a few run as real `drctl`
processes for the printing path. Each answer must be: no traceback, exit 0
or 2 (`plan`: 0, 1, 2, or 3 for a fabric it cannot open), every line of an
exit 2 `file:line: ...` with the line inside the file (or the directory,
said as such), at most a few hundred characters, within 10 s.
`bench/spec_fuzz.py` runs the same for longer and prints the figures.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import specfuzz

from reconciler.cli import main as cli

SEED = int(os.environ.get("DRCTL_FUZZ_SEED", "1010"))
CASES = int(os.environ.get("DRCTL_FUZZ_CASES", "2000"))
TIME_BOX = 240.0  # seconds for all the cases: on a loaded 2-core machine, about 15 s
INVENTORY = Path(__file__).resolve().parent.parent / "examples" / "inventory.yaml"


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulated fabric holding the example VMs, for `drctl plan` (which only reads it)."""
    state = tmp_path_factory.mktemp("state")
    assert cli.main(["fabric", "init", str(INVENTORY), "--state-dir", str(state)]) == 0
    return state


def test_thousands_of_damaged_spec_directories_are_each_answered_in_the_contract(
    tmp_path: Path, state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = random.Random(SEED)  # noqa: S311 (a seeded fuzzer, no secret)
    texts = specfuzz.seeds()
    seen: Counter[str] = Counter()
    broken: list[str] = []
    started = time.monotonic()
    for number in range(CASES):
        if time.monotonic() - started > TIME_BOX:
            pytest.fail(f"only {number} of {CASES} cases ran in {TIME_BOX:.0f} s")
        case = specfuzz.generate(rng, texts)
        specs = specfuzz.build(case, specfuzz.fresh(tmp_path))
        outcome = specfuzz.run_in_process(specfuzz.argv_for(case, specs, state_dir))
        seen[case.kind] += 1
        broken.extend(
            f"case {number} (seed {SEED}), {case.describe()[:200]}: {what}"
            for what in specfuzz.violations(case, outcome, specs)
        )
    capsys.readouterr()
    assert broken == [], "\n".join(broken[:20])
    assert set(seen) == set(specfuzz.kinds()), "kinds never generated"


# The kinds whose printing is most at risk: odd file and directory names,
# characters that do not print, bytes that are not UTF-8.
_REAL = ["odd-file-name", "odd-file-name", "control-char", "non-utf8", "alias-bomb", "specs-dir"]


@pytest.mark.e2e
@pytest.mark.parametrize("kind", _REAL)
def test_a_real_drctl_validate_prints_in_the_contract(tmp_path: Path, kind: str) -> None:
    rng = random.Random(f"{SEED}-{kind}-{tmp_path.name}")  # noqa: S311 (seeded)
    case = specfuzz.generate(rng, specfuzz.seeds(), kind)
    case.command = "validate"
    if kind == "specs-dir":
        case.specs = "odd-name"
    specs = specfuzz.build(case, tmp_path)
    drctl = Path(sys.executable).parent / "drctl"
    started = time.perf_counter()
    done = subprocess.run(
        [os.fsencode(drctl), b"validate", os.fsencode(specs)],
        capture_output=True,
        timeout=60,
        check=False,
    )
    outcome = specfuzz.Outcome(
        done.returncode, done.stdout, done.stderr, time.perf_counter() - started
    )
    assert list(specfuzz.violations(case, outcome, specs)) == [], case.describe()
