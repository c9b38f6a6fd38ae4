"""The journal's file: what it must be before drctl trusts it, and what it may have lost.

`Journal` (engine/journal.py) opens its SQLite file with `connect` and then
`identify`. drctl never starts afresh in silence over a journal it cannot
use, since that would forget the operations in flight and the retry budgets:
- a file SQLite cannot read (garbage, cut short) is refused, and a copy of
  it is kept beside it as evidence (`journal.db.damaged-<digest>`);
- a database of another program (another application id, no drctl table)
  and a directory at its path are refused;
- a journal other than the one the state dir last used (its record,
  `journal.id`, names another) was replaced while drctl was stopped: refused;
- a journal that is new, or holds fewer actions than drctl wrote into it
  (deleted, truncated, its `-wal` file deleted, an older copy restored), is
  used with a loud warning (`Identity.lost`): the fabric is the source of
  truth, but audit, git notes and retry budgets lost what happened.
Each refusal says what is wrong and what to do. SQLite's errors while in use
are translated here too (`translated`): busy, not writable, damaged.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import shutil
import sqlite3
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Concatenate, ParamSpec, Protocol, TypeVar, cast

from reconciler import errors
from reconciler.engine import state_check
from reconciler.engine import state_dir as layout

# drctl's journal says so in the SQLite header ("drJl"); journals written
# before it did hold an `actions` table and application id 0.
APPLICATION_ID = 0x64724A6C
_OWN_TABLES = frozenset({"actions", "convergences", "journal_meta", "steps"})
_WHAT_TO_DO = (
    "operations drctl started may still be in flight: check the fabric's job list "
    "(`drctl fabric show`, or the fabric's portal)"
)


@dataclass(frozen=True)
class Identity:
    """Which journal this is, and what the state dir says it lost (for a loud warning)."""

    journal_id: str
    created: bool  # made new by this open
    lost: str | None


def into_wal(db: sqlite3.Connection, busy_timeout: float) -> None:
    """Put the journal in WAL mode, waiting up to `busy_timeout` for others doing the same.

    SQLite answers a mode change that meets another connection's lock with
    "database is locked" at once, without its busy handler (seen when a
    `drctl status` opens a new journal while the daemon makes it): so wait here.
    """
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                db.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)
        else:
            return


def connect(path: Path, busy_timeout: float) -> tuple[sqlite3.Connection, bool]:
    """Open the journal at `path`, refusing a file drctl must not write into; whether it is new.

    A damaged file is copied beside itself first (`backup_path`), so that
    whatever is done next, the evidence stays.
    """
    kind = state_check.not_a_file(path)
    if kind is not None:
        raise errors.StateFileError(
            f"the journal {path} is {kind}, not drctl's journal: move it away (drctl then makes "
            "a new journal and warns), or choose another --state-dir"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise state_check.refusal(path.parent, exc) from exc
    try:
        db = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
    except sqlite3.Error as exc:
        raise (damaged(path, str(exc)) if _is_damage(exc) else translated(path, exc)) from exc
    try:
        tables = _check(db, path)
    except _Damaged as exc:
        # Closed before it is copied: a descriptor of it opened and closed
        # in this process would drop the POSIX locks of an open connection.
        db.close()
        raise damaged(path, exc.why) from exc.__cause__
    except BaseException:
        db.close()
        raise
    return db, not tables


class _Damaged(Exception):  # noqa: N818 (not an error of drctl's: turned into one at once)
    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


def _check(db: sqlite3.Connection, path: Path) -> set[str]:
    """The tables of a readable journal of drctl's (none when new); else the refusal."""
    try:
        problems = [str(row[0]) for row in db.execute("PRAGMA quick_check(3)")]
        tables = {
            str(r[0]) for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        app_id = int(db.execute("PRAGMA application_id").fetchone()[0])
    except sqlite3.Error as exc:
        if _is_damage(exc):
            raise _Damaged(str(exc)) from exc
        raise translated(path, exc) from exc
    if problems != ["ok"]:
        raise _Damaged("; ".join(problems)[:200])
    tables.discard("sqlite_sequence")
    if tables and app_id not in (0, APPLICATION_ID):
        raise _foreign(path, f"application id {app_id:#x}")
    if tables and app_id == 0 and "actions" not in tables:
        raise _foreign(path, "tables " + ", ".join(sorted(tables)[:5]))
    return tables


def _foreign(path: Path, what: str) -> errors.StateFileError:
    return errors.StateFileError(
        f"the journal {path} is not drctl's journal (an SQLite database with {what}): drctl "
        "writes nothing into it; move it away (drctl then makes a new journal) or choose "
        "another --state-dir"
    )


def damaged(path: Path, why: str, *, copy: bool = True) -> errors.StateFileError:
    """The refusal of a journal SQLite cannot read, after keeping a copy of it (`copy`)."""
    kept = _keep_copy(path) if copy else "drctl keeps a copy of it when it opens it again"
    return errors.StateFileError(
        f"the journal {path} is damaged ({why}): drctl acts on nothing until it is dealt with. "
        f"{kept}; {_WHAT_TO_DO}, then move the damaged journal away (drctl makes a new one and "
        "warns) or put a good copy back"
    )


def _is_damage(exc: sqlite3.Error) -> bool:
    name = str(getattr(exc, "sqlite_errorname", ""))
    return name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB"))


def backup_path(path: Path) -> Path:
    """Where the copy of the damaged journal at `path` is kept: named by its bytes, made once."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return layout.journal_backup_path(path.parent, digest.hexdigest()[:12])


def _keep_copy(path: Path) -> str:
    """Copy the damaged journal (and its -wal) beside it, once per content; say where."""
    try:
        target = backup_path(path)
        if not target.exists():
            staging = target.with_name(f".{target.name}.tmp")
            shutil.copyfile(path, staging)
            wal = path.with_name(path.name + "-wal")
            if wal.is_file() and wal.stat().st_size:
                shutil.copyfile(wal, target.with_name(target.name + "-wal"))
            staging.replace(target)
    except OSError as exc:
        return f"No copy of it could be kept ({exc.strerror or exc}): copy it away first"
    return f"A copy is kept at {target}"


def translated(path: Path, exc: sqlite3.Error) -> errors.StateDirError:
    """SQLite's error on the journal at `path` as drctl's: busy, not writable, or damaged."""
    name = str(getattr(exc, "sqlite_errorname", ""))
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return errors.JournalBusyError(
            path,
            f"the journal {path} is locked by another process ({exc}): drctl waits for it and "
            "starts nothing until it can journal; end that process's transaction (an sqlite3 "
            "shell, a backup tool)",
        )
    if name.startswith(
        ("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_FULL", "SQLITE_IOERR", "SQLITE_PERM")
    ):
        return state_check.refusal(path, str(exc))
    if _is_damage(exc):
        # Found while open: copied when opened (and checked) again, closed.
        return damaged(path, str(exc), copy=False)
    return errors.StateFileError(f"the journal {path} cannot be used: {exc}")


class _OnFile(Protocol):
    path: Path


_P = ParamSpec("_P")
_R = TypeVar("_R")
_J = TypeVar("_J", bound=_OnFile)


def translating(method: Callable[Concatenate[_J, _P], _R]) -> Callable[Concatenate[_J, _P], _R]:
    """SQLite's errors out of a method of the journal at `self.path` as drctl's (`translated`)."""

    def call(self: _J, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise translated(self.path, exc) from exc

    return cast("Callable[Concatenate[_J, _P], _R]", functools.wraps(method)(call))


# --- which journal it is ------------------------------------------------------


@dataclass(frozen=True)
class _Record:
    """The state dir's record of its journal: its id, and the highest action drctl wrote."""

    journal_id: str
    actions: int


def identify(db: sqlite3.Connection, state_dir: Path, created: bool, *, writer: bool) -> Identity:
    """Compare the journal with the state dir's record of it; refuse one that was replaced.

    A writer (apply, the daemon) brings the record up to date; a reader
    (status, plan, audit) only compares.
    """
    path = layout.journal_path(state_dir)
    row = db.execute("SELECT value FROM journal_meta WHERE key = 'id'").fetchone()
    journal_id = None if row is None else str(row[0])
    actions = int(db.execute("SELECT COALESCE(MAX(id), 0) FROM actions").fetchone()[0])
    record = read_record(state_dir)
    lost = None
    if record is not None and not created and journal_id != record.journal_id:
        raise errors.StateFileError(
            f"the journal {path} is not the one this state dir last used (it is "
            f"{journal_id or 'a journal without an id'}; {layout.JOURNAL_RECORD} names "
            f"{record.journal_id}, with {record.actions} actions): it was replaced while drctl "
            f"was stopped, and what the other one recorded is not in it. Put that journal back; "
            f"or, to go on with this one, {_WHAT_TO_DO}, then remove "
            f"{layout.journal_record_path(state_dir)}"
        )
    if record is not None and created:
        lost = (
            f"the journal {path} is new, but this state dir last used journal "
            f"{record.journal_id} with {record.actions} actions: it was deleted, truncated or "
            "lost its -wal file while drctl was stopped"
        )
    elif record is not None and actions < record.actions:
        lost = (
            f"the journal {path} holds {actions} actions, but drctl had written "
            f"{record.actions} into it: its newest records are gone (its -wal file deleted, or "
            "an older copy restored)"
        )
    if journal_id is None:  # new, or written before journals had ids
        # OR IGNORE, then read back: another drctl opening the same journal at
        # the same moment may have given it its id first.
        db.execute(
            "INSERT OR IGNORE INTO journal_meta (key, value) VALUES ('id', ?)",
            (uuid.uuid4().hex,),
        )
        journal_id = str(
            db.execute("SELECT value FROM journal_meta WHERE key = 'id'").fetchone()[0]
        )
    if writer and (record is None or record != _Record(journal_id, actions)):
        note_written(state_dir, journal_id, actions)
    return Identity(journal_id, created, lost)


def read_record(state_dir: Path) -> _Record | None:
    """The state dir's record of its journal; None when there is none or it is damaged."""
    try:
        text = layout.journal_record_path(state_dir).read_text(encoding="ascii")
        journal_id, actions = text.split()
        return _Record(journal_id, int(actions))
    except (OSError, ValueError):  # absent, cut short, not ours: as if none
        return None


def note_written(state_dir: Path, journal_id: str, actions: int) -> None:
    """Record that the journal `journal_id` holds `actions` actions; `StateWriteError` if it cannot.

    Atomic (a temporary file renamed over it) and not synced: after a crash
    it may say fewer actions than the journal holds, never more.
    """
    path = layout.journal_record_path(state_dir)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # one per process: never shared
    try:
        tmp.write_text(f"{journal_id} {actions}\n", encoding="ascii")
        tmp.replace(path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise state_check.refusal(path, exc) from exc


def lost_evidence(state_dir: Path, in_force: bool, jobs: int) -> str | None:
    """Why a new journal with no record of an older one may still have lost one; None if not.

    A revision in force kept in the state dir (`in_force`), or jobs a drctl
    started in the fabric, say a drctl worked here before.
    """
    evidence = []
    if in_force:
        evidence.append("the state dir holds a revision in force")
    if jobs:
        evidence.append(f"the fabric holds {jobs} jobs")
    if not evidence:
        return None
    return (
        f"the journal {layout.journal_path(state_dir)} is new, but {' and '.join(evidence)}: "
        "an earlier journal was deleted or lost"
    )


def lost_warning(lost: str) -> str:
    """The whole loud warning about a journal that lost records: what it means, what to do."""
    return (
        f"{lost}. What it recorded is gone: drctl goes on from what the fabric reports, but "
        f"audit, git notes and retry budgets do not know what happened; {_WHAT_TO_DO}. Restore "
        "journals only from a backup that took the -wal file too, or was made after a "
        "checkpoint (README: Reliability)"
    )
