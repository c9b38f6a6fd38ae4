"""What to say when a state dir holds no simulated fabric: which path, why it, and where to look.

`cli.main` calls `explain` when a command stops on `NoSimulatedFabricError`. A
missing state dir is most often the wrong one (a shell without
$DRCTL_STATE_DIR, another working directory), not a fabric to create: when
a running `drctl run` uses another state dir, the message names it and never
suggests `drctl fabric init`, which would make a second, empty fabric beside
the daemon's. Running daemons are found in /proc (their command line, working
directory and environment, where this user may read them); nothing is written.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from reconciler.cli import options

PROC = Path("/proc")
WELL_KNOWN = (Path("/var/lib/drctl"),)  # the systemd unit's StateDirectory
STATE_FILES = ("fabric.db", "journal.sqlite", "daemon.json")


@dataclass(frozen=True)
class Elsewhere:
    """A state dir that is not the one tried: a running daemon's, or a well-known one."""

    path: Path
    pid: int | None  # the daemon using it; None: a well-known directory with state in it


def explain(
    tried: str, proc: Path | None = None, well_known: tuple[Path, ...] | None = None
) -> str:
    """The whole message for a state dir `tried` that holds no simulated fabric."""
    path = Path(tried).absolute()
    head = f"no simulated fabric in {path} ({_chosen_by(tried)})"
    found = [
        e
        for e in _elsewhere(
            PROC if proc is None else proc, WELL_KNOWN if well_known is None else well_known
        )
        if e.path != path
    ]
    if not found:
        return (
            f"{head}: run drctl fabric init INVENTORY.yaml first to make a simulated fabric "
            "there, or declare a `kind: Fabric` in the specs for a real one"
        )
    named = ", ".join(
        f"{e.path} (drctl run, pid {e.pid})" if e.pid else f"{e.path} (state kept there)"
        for e in found[:3]
    )
    if len(found) == 1:
        one = found[0].path
        return (
            f"{head}; the state dir in use is {named}: pass --state-dir {one} (or set "
            f"DRCTL_STATE_DIR={one}) to read it"
        )
    return f"{head}; state dirs in use: {named}: pass --state-dir with the one you mean"


def _chosen_by(tried: str) -> str:
    if os.environ.get("DRCTL_STATE_DIR") == tried:
        return "from $DRCTL_STATE_DIR"
    if tried == options.DEFAULT_STATE_DIR:
        return f"the default {options.DEFAULT_STATE_DIR} in the working directory"
    return "from --state-dir"


def _elsewhere(proc: Path, well_known: tuple[Path, ...]) -> Iterator[Elsewhere]:
    seen: set[Path] = set()
    for found in _daemons(proc):
        if found.path not in seen:
            seen.add(found.path)
            yield found
    for path in well_known:
        if path not in seen and any((path / name).exists() for name in STATE_FILES):
            yield Elsewhere(path, None)


def _daemons(proc: Path) -> Iterator[Elsewhere]:
    """Each `drctl run` this user can see, with the state dir it uses."""
    with contextlib.suppress(OSError):
        for entry in sorted(proc.iterdir(), key=lambda p: p.name):
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            with contextlib.suppress(OSError, ValueError):
                argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
                state = _state_dir_of(argv, entry)
                if state is not None:
                    yield Elsewhere(state, int(entry.name))


def _state_dir_of(argv: list[str], entry: Path) -> Path | None:
    """The state dir of a `drctl run` command line (None: not one)."""
    words = [a for a in argv if a]
    # `drctl run`, `python .../drctl run` (the console script), `python -m reconciler run`;
    # not a command that only names drctl (`timeout 5 drctl run` is its child's parent).
    at = next((i for i, w in enumerate(words[:3]) if Path(w).name == "drctl"), None)
    if at is None and words[1:3] == ["-m", "reconciler"]:
        at = 2
    if at is None or (at > 0 and "python" not in Path(words[0]).name):
        return None
    if "run" not in words[at + 1 : at + 3]:  # `drctl run`, `drctl --debug run`
        return None
    given: str | None = None
    for i, word in enumerate(words):
        if word == "--state-dir" and i + 1 < len(words):
            given = words[i + 1]
        elif word.startswith("--state-dir="):
            given = word.split("=", 1)[1]
    if given is None:
        given = _environ(entry).get("DRCTL_STATE_DIR") or options.DEFAULT_STATE_DIR
    path = Path(given)
    if not path.is_absolute():
        path = (entry / "cwd").readlink() / path
    return path


def _environ(entry: Path) -> dict[str, str]:
    try:
        raw = (entry / "environ").read_bytes().decode(errors="replace")
    except OSError:
        return {}
    pairs = (item.partition("=") for item in raw.split("\0"))
    return {name: value for name, sep, value in pairs if sep}
