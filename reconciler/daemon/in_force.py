"""The revision in force: the newest valid revision the daemon has seen, kept in the state dir.

An invalid revision changes nothing: the last valid one stays in force, and is
saved (`save`) so that a daemon restarted while HEAD is invalid acts on it too
(`restore`). Whatever a revision holds is a `SpecError` or a desired state
(`load`), never the end of the daemon. A saved revision that cannot be read
is ignored, said loudly. `moves` tells whether a new revision moves VMs of a
plan (its RTO clock starts). When each plan's settle window last started
(`settling_since`, see daemon/change.py) is kept with it, so that a daemon
restarted inside the window still waits it out. Called by `daemon.loop`.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

from reconciler.core.desired import DesiredState, PlanSpec
from reconciler.daemon.logs import log
from reconciler.engine import state_dir as layout
from reconciler.errors import SpecError, SpecProblem
from reconciler.gitops import spec_cache, specdir


@dataclasses.dataclass
class InForce:
    """The desired state the daemon acts on: the newest valid revision it has seen."""

    revision: str
    desired: DesiredState
    seen_at: datetime
    made_at: datetime | None = None  # committed (or its files last changed)
    # When each plan's move started (revision seen), until it is converged.
    moving_since: dict[str, datetime] = dataclasses.field(default_factory=dict)
    placed: set[str] = dataclasses.field(default_factory=set)
    # When each plan's settle window started: the revision that last moved its
    # VMs or widened what drctl may do to them was seen (daemon/change.py).
    settling_since: dict[str, datetime] = dataclasses.field(default_factory=dict)


# How much of an unexpected error's text a log line or status quotes.
_QUOTED = 200


def load(specs_dir: Path, cache: spec_cache.SpecCache | None = None) -> DesiredState:
    """The desired state in `specs_dir`; `SpecError` for whatever is wrong with it.

    The daemon's boundary for reading a revision: an error the loader did not
    expect (a byte its reader chokes on, a name it cannot print) makes the
    revision invalid, like a schema error, and the one in force stays. With
    `cache` (the loop's), only the files changed since its last load are parsed.
    """
    try:
        return specdir.load_specs(specs_dir) if cache is None else cache.load(specs_dir)
    except SpecError:
        raise
    except Exception as exc:  # whatever a revision holds must not end the daemon
        said = ascii(str(exc))[1:-1]
        if len(said) > _QUOTED:
            said = said[:_QUOTED] + "..."
        problem = f"cannot read the specs: {type(exc).__name__}: {said}"
        raise SpecError([SpecProblem(str(specs_dir), 0, problem)]) from exc


def save(state_dir: Path, specs_dir: Path, force: InForce) -> None:
    """Keep the specs of the revision in force, for a restart while HEAD is invalid."""
    target = layout.in_force_dir(state_dir)
    staging = layout.in_force_staging_dir(state_dir)
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "specs").mkdir(parents=True)
    for file in specdir.spec_files(specs_dir):
        dest = staging / "specs" / file.relative_to(specs_dir)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, dest)
    (staging / "revision").write_text(force.revision + "\n")
    if force.made_at is not None:
        (staging / "made-at").write_text(force.made_at.isoformat() + "\n")
    settling = {plan: at.isoformat() for plan, at in force.settling_since.items()}
    (staging / "settling.json").write_text(json.dumps(settling) + "\n")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)


def restore(state_dir: Path, now: datetime) -> tuple[InForce | None, str | None]:
    """The revision in force a previous daemon saved, if it is there and valid.

    The second value says, when there is one but it cannot be read, what is
    wrong with it (it is then ignored: the daemon acts on the specs' HEAD).
    """
    saved = layout.in_force_dir(state_dir)
    if not saved.exists():
        return None, None
    desired: DesiredState | None = None
    try:
        rev = (saved / "revision").read_text(encoding="ascii").strip()
        desired = load(saved / "specs") if _is_revision(rev) else None
    except (OSError, ValueError, SpecError) as exc:  # Unicode errors are ValueErrors
        why = str(exc).splitlines()[0][:_QUOTED] if str(exc) else type(exc).__name__
    else:
        why = f"not a revision: {rev[:80]!r}"
    if desired is None:
        unreadable = (
            f"the revision in force kept in {saved} cannot be read ({why}): it is ignored, and "
            "drctl acts on the specs as they are; it is kept again at the next valid revision"
        )
        log.error("%s", unreadable, extra={"event": "revision_in_force_unreadable"})
        return None, unreadable
    made = saved / "made-at"
    try:
        made_at = datetime.fromisoformat(made.read_text().strip()) if made.is_file() else None
    except (OSError, ValueError):
        made_at = None  # damaged: as if unknown (an out-of-band move then stays held)
    log.info(
        "restored revision in force %s from the state dir",
        rev,
        extra={"event": "revision_restored", "revision": rev},
    )
    restored = InForce(rev, desired, now, made_at)
    restored.settling_since = _restore_settling(saved / "settling.json", desired, now)
    return restored, None


def peek(state_dir: Path) -> tuple[str, DesiredState, datetime | None] | None:
    """The revision in force a daemon keeps in `state_dir`, read only, said nowhere.

    For `drctl status` beside a running daemon whose newest specs are refused:
    (revision, desired state, made at), or None when there is none to read.
    """
    saved = layout.in_force_dir(state_dir)
    try:
        rev = (saved / "revision").read_text(encoding="ascii").strip()
        if not _is_revision(rev):
            return None
        desired = load(saved / "specs")
        made = saved / "made-at"
        made_at = datetime.fromisoformat(made.read_text().strip()) if made.is_file() else None
    except (OSError, ValueError, SpecError):
        return None
    return rev, desired, made_at


def _restore_settling(path: Path, desired: DesiredState, now: datetime) -> dict[str, datetime]:
    """When each plan's settle window started, as saved; from `now` for every plan if the
    file is damaged or missing (waiting once more is safe, acting early is not)."""
    try:
        saved = json.loads(path.read_text())
        found = {str(plan): datetime.fromisoformat(at) for plan, at in saved.items()}
        if all(at.tzinfo is not None for at in found.values()):
            return found
    except (OSError, ValueError, TypeError, AttributeError):
        pass
    log.warning("%s is missing or damaged: every plan's settle window starts again", path)
    return {plan.name: now for plan in desired.plans}


def _is_revision(text: str) -> bool:
    """A revision id as `revision.spec_revision` makes them: one word of printable ASCII."""
    return bool(text) and text.isprintable() and len(text.split()) == 1


def moves(
    plan_spec: PlanSpec,
    observed: Any,
    previous: DesiredState | None,
) -> bool:
    """Whether this revision moves VMs of the plan: a desired site differs from now."""
    before = {} if previous is None else {vm.name: vm.active_site for vm in previous.vms()}
    for vm in plan_spec.vms:
        if before.get(vm.name, vm.active_site) != vm.active_site:
            return True
        o = None if observed is None else observed.vms.get(vm.name)
        if o is not None and o.active_site != vm.active_site:
            return True
    return False
