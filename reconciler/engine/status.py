"""What the daemon last said about itself, in the state dir's `daemon.json`.

The daemon (daemon/loop.py) writes a `DaemonStatus` after every pass and when
it stops; `drctl status` (cli) reads it with `running_daemon` and ui/report.py
shows it (its JSON is the `"daemon"` object of `drctl status --output json`,
a contract: `to_json` keeps its keys and values). The status page shows the
same status, handed to it in memory after each pass (ui/status_feed.py).

Written atomically (a temporary file renamed over it), so a reader sees the
previous status or the next, never half of one. Not fsynced: it is rewritten
every pass, and after a crash a damaged or partial file reads as no status,
never as an error.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from reconciler import errors
from reconciler.engine import state_dir as layout

_KEYS = frozenset(
    {"pid", "running", "revisionInForce", "revisionSeen", "specValid", "specErrors", "updatedAt"}
)


@dataclass(frozen=True)
class Untrusted:
    """The newest revision, kept out by `--require-signed-commits`: why, and what it would move."""

    revision: str
    reasons: tuple[str, ...]
    vms: tuple[tuple[str, str], ...] = ()  # (plan, vm) whose desired site or replication it changes

    def to_json(self) -> dict[str, Any]:
        return {
            "revision": self.revision,
            "reasons": list(self.reasons),
            "vms": [{"plan": plan, "vm": vm} for plan, vm in self.vms],
        }

    @classmethod
    def from_json(cls, value: object) -> Untrusted | None:
        """`revisionUntrusted`, absent from the status of a drctl that requires no signature."""
        if value is None:
            return None
        rev, reasons = _refused(value, "revisionUntrusted") or ("", [])
        vms = value.get("vms") if isinstance(value, dict) else None
        if not isinstance(vms, list) or not all(
            isinstance(v, dict) and isinstance(v.get("plan"), str) and isinstance(v.get("vm"), str)
            for v in vms
        ):
            raise errors.StateFileError(f"revisionUntrusted: vms not plans and VMs: {vms!r}")
        return cls(rev, tuple(reasons), tuple((v["plan"], v["vm"]) for v in vms))


@dataclass(frozen=True)
class DaemonStatus:
    pid: int
    running: bool  # False once it has stopped
    revision_in_force: str | None  # the revision it acts on
    revision_seen: str | None  # the newest it has read, valid or not
    spec_valid: bool  # whether the newest revision seen is valid
    spec_errors: tuple[str, ...]  # what is wrong with it, `file:line: problem`
    updated_at: datetime  # timezone-aware
    # The newest valid revision, refused (it would orphan moves in flight), and why.
    refused: tuple[str, list[str]] | None = None
    revision_error: str | None = None  # why the revision could not be read (git), if so
    # Why it starts nothing now: its state dir takes no writes, or its journal
    # is refused or locked by another process (None when all is well).
    state_problem: str | None = None
    # What it found wrong at start and went on with: a journal that lost
    # records, a revision in force it could not read.
    state_warnings: tuple[str, ...] = ()
    # With `--lock etcd://...`: this replica's identity, whether it leads, the
    # holder it saw, the lock, and the revision in force of every replica.
    replica: dict[str, Any] | None = None
    # With `--require-signed-commits`: the newest revision, kept out, unless it is trusted.
    untrusted: Untrusted | None = None
    # `--max-failovers-per-revision N` of `drctl run`: `drctl status` plans with it too.
    max_failovers_per_revision: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "running": self.running,
            "revisionInForce": self.revision_in_force,
            "revisionSeen": self.revision_seen,
            "specValid": self.spec_valid,
            "specErrors": list(self.spec_errors),
            "updatedAt": self.updated_at.isoformat(timespec="microseconds"),
            "revisionRefused": (
                None
                if self.refused is None
                else {"revision": self.refused[0], "reasons": list(self.refused[1])}
            ),
            "revisionError": self.revision_error,
            "stateProblem": self.state_problem,
            "stateWarnings": list(self.state_warnings),
            "revisionUntrusted": None if self.untrusted is None else self.untrusted.to_json(),
            "maxFailoversPerRevision": self.max_failovers_per_revision,
            # Only a replica of `--lock etcd://...` says it (a lone daemon's JSON is as it was).
            **({} if self.replica is None else {"replica": self.replica}),
        }

    @classmethod
    def from_json(cls, data: object) -> DaemonStatus:
        """The status in `data` (parsed JSON); `StateFileError` naming what is wrong with it."""
        if not isinstance(data, dict):
            raise errors.StateFileError(f"not an object: {type(data).__name__}")
        missing = sorted(_KEYS - data.keys())
        if missing:
            raise errors.StateFileError(f"no {', '.join(missing)}")  # a file cut short, or not ours
        pid = data["pid"]
        if type(pid) is not int or pid <= 0:
            raise errors.StateFileError(f"pid: not a process id: {pid!r}")
        problems = data["specErrors"]
        if not isinstance(problems, list) or not all(isinstance(p, str) for p in problems):
            raise errors.StateFileError(f"specErrors: not a list of strings: {problems!r}")
        updated = data["updatedAt"]
        if not isinstance(updated, str):
            raise errors.StateFileError(f"updatedAt: not a time: {updated!r}")
        try:
            at = datetime.fromisoformat(updated)
        except ValueError as exc:
            raise errors.StateFileError(f"updatedAt: not a time: {updated!r}") from exc
        if at.tzinfo is None:
            raise errors.StateFileError(f"updatedAt: no timezone: {updated!r}")
        # Not in the status of a daemon older than them: as if all was well.
        warnings = data.get("stateWarnings", [])
        if not isinstance(warnings, list) or not all(isinstance(w, str) for w in warnings):
            raise errors.StateFileError(f"stateWarnings: not a list of strings: {warnings!r}")
        return cls(
            refused=_refused(data.get("revisionRefused")),
            revision_error=_optional_str(data, "revisionError")
            if "revisionError" in data
            else None,
            pid=pid,
            running=_bool(data, "running"),
            revision_in_force=_optional_str(data, "revisionInForce"),
            revision_seen=_optional_str(data, "revisionSeen"),
            spec_valid=_bool(data, "specValid"),
            spec_errors=tuple(problems),
            updated_at=at,
            state_problem=_optional_str({"stateProblem": None, **data}, "stateProblem"),
            state_warnings=tuple(warnings),
            replica=data["replica"] if isinstance(data.get("replica"), dict) else None,
            untrusted=Untrusted.from_json(data.get("revisionUntrusted")),
            max_failovers_per_revision=_limit(data.get("maxFailoversPerRevision")),
        )


def write_status(state_dir: Path, status: DaemonStatus) -> None:
    """Replace the daemon's status in `state_dir`, atomically."""
    path = layout.daemon_status_path(state_dir)
    # One writer at a time (the daemon holds the fabric lock): a fixed name.
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(status.to_json(), indent=2) + "\n")
    tmp.replace(path)


def read_status(state_dir: Path) -> DaemonStatus | None:
    """The daemon's last status in `state_dir`; None if there is none or it is damaged."""
    try:
        text = layout.daemon_status_path(state_dir).read_text(encoding="utf-8")
        return DaemonStatus.from_json(json.loads(text))
    except (OSError, ValueError, errors.StateFileError):  # JSON, Unicode: ValueErrors
        return None


def running_daemon(state_dir: Path) -> DaemonStatus | None:
    """The status of the daemon working on `state_dir`, if it says it runs and its process does."""
    status = read_status(state_dir)
    if status is None or not status.running:
        return None
    try:
        os.kill(status.pid, 0)
    except PermissionError:
        return status  # alive, as another user (the daemon's service account)
    except (OSError, OverflowError):
        return None  # gone without saying so (killed), or no pid there can be
    return status


def _limit(value: object) -> int | None:
    """`maxFailoversPerRevision`: a whole number of at least 1, or absent (no limit)."""
    if value is None:
        return None
    if type(value) is not int or value < 1:
        raise errors.StateFileError(f"maxFailoversPerRevision: not a limit: {value!r}")
    return value


def _bool(data: dict[str, Any], key: str) -> bool:
    value = data[key]
    if not isinstance(value, bool):
        raise errors.StateFileError(f"{key}: not true or false: {value!r}")
    return value


def _optional_str(data: dict[str, Any], key: str) -> str | None:
    value = data[key]
    if value is not None and not isinstance(value, str):
        raise errors.StateFileError(f"{key}: not a string: {value!r}")
    return value


def _refused(value: object, key: str = "revisionRefused") -> tuple[str, list[str]] | None:
    """`revisionRefused` (or another `{revision, reasons}` at `key`), absent from the
    status of a drctl that refused nothing."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise errors.StateFileError(f"{key}: not an object: {value!r}")
    rev, reasons = value.get("revision"), value.get("reasons")
    if not isinstance(rev, str) or not isinstance(reasons, list):
        raise errors.StateFileError(f"{key}: no revision and reasons: {value!r}")
    if not all(isinstance(r, str) for r in reasons):
        raise errors.StateFileError(f"{key}: reasons not strings: {reasons!r}")
    return rev, [str(r) for r in reasons]
