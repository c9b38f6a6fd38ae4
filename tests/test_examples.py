"""Every example in specs/ is a valid desired state that matches the example inventory."""

from __future__ import annotations

from pathlib import Path

from reconciler import spec

ROOT = Path(__file__).resolve().parent.parent


def test_every_example_spec_validates() -> None:
    files = spec.spec_files(ROOT / "specs")
    assert files, "specs/ holds the example desired state"
    desired = spec.load_specs(ROOT / "specs")
    assert {Path(p.file).name for p in desired.plans} == {f.name for f in files}
