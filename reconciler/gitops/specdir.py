"""The directory of spec files: which files are specs, read them, validate them.

`load_specs(directory)` is what the CLI and the daemon call: it reads every
`*.yaml`/`*.yml` file under the directory (hidden paths skipped) and hands the
texts to the pure `core.spec`, with the cyclic garbage collector paused (a
100k-VM spec builds a large heap of young objects; perf-notes.md). The texts
validated are the ones lines are found in, never a second read of a file.
"""

from __future__ import annotations

from pathlib import Path, PurePath

from reconciler.core import spec
from reconciler.core.desired import DesiredState
from reconciler.errors import SpecError, SpecProblem
from reconciler.kits import gcpause


def load_specs(directory: Path) -> DesiredState:
    """Load and validate every RecoveryPlan and Fabric under `directory`."""
    texts: dict[Path, str] = {}
    unreadable: dict[Path, str] = {}
    for file in spec_files(directory):
        try:
            texts[file] = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            unreadable[file] = str(exc)
    with gcpause.gc_paused():
        return spec.load_files(texts, unreadable)


def spec_files(directory: Path) -> list[Path]:
    """Every YAML file under `directory`, in a stable order; hidden paths skipped."""
    if not directory.is_dir():
        raise SpecError([SpecProblem(str(directory), 0, "not a directory of spec files")])
    found = [
        p for p in directory.rglob("*") if is_spec_path(p.relative_to(directory)) and p.is_file()
    ]
    return sorted(found)


def is_spec_path(relative: PurePath) -> bool:
    """Whether a path relative to the spec directory names a spec file (not hidden)."""
    return relative.suffix in {".yaml", ".yml"} and not any(
        part.startswith(".") for part in relative.parts
    )
