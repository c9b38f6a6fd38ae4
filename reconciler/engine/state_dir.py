"""The names of the files in a state dir (`--state-dir`, `DRCTL_STATE_DIR`), each said once.

Every module that opens one asks here: the journal (engine/journal.py, and
gitops/audit.py and `drctl fabric init` to know whether there is one; its
file's checks in engine/journal_file.py, the state dir's in
engine/state_check.py), the
fabric lock (engine/lease/flock.py), the daemon's status (engine/status.py)
and the revision in force it keeps (daemon/loop.py), and the directory each
fabric keeps its own data in (the simulator names its database inside the
directory it is given: fabric/sim/store.py).

    <state dir>/
      journal.db           the journal (SQLite; with journal.db-wal and -shm beside it)
      journal.id           which journal this state dir uses, and how far drctl wrote it
      journal.db.damaged-* copies of a damaged journal, kept as evidence
      drctl.lock           flock of whoever acts on the fabrics
      daemon.json          what `drctl run` last said (engine/status.py)
      in-force/            the specs and revision the daemon acts on
      adopt-safely.json    the revision `drctl run --adopt-safely` holds, or that confirmed it
      fabric.db            the embedded simulator's fabric
      fabrics/<name>/      a named fabric's own data
"""

from __future__ import annotations

from pathlib import Path

from reconciler.core.desired import EMBEDDED_FABRIC

JOURNAL = "journal.db"
JOURNAL_RECORD = "journal.id"
LOCK = "drctl.lock"
DAEMON_STATUS = "daemon.json"
IN_FORCE = "in-force"
ADOPT_SAFELY = "adopt-safely.json"
FABRICS = "fabrics"


def journal_path(state_dir: Path) -> Path:
    return state_dir / JOURNAL


def journal_record_path(state_dir: Path) -> Path:
    return state_dir / JOURNAL_RECORD


def journal_backup_path(state_dir: Path, digest: str) -> Path:
    """Where a copy of a damaged journal is kept, named by a digest of its bytes."""
    return state_dir / f"{JOURNAL}.damaged-{digest}"


def lock_path(state_dir: Path) -> Path:
    return state_dir / LOCK


def daemon_status_path(state_dir: Path) -> Path:
    return state_dir / DAEMON_STATUS


def in_force_dir(state_dir: Path) -> Path:
    return state_dir / IN_FORCE


def adopt_safely_path(state_dir: Path) -> Path:
    return state_dir / ADOPT_SAFELY


def in_force_staging_dir(state_dir: Path) -> Path:
    """Where the next revision in force is written before it replaces `in_force_dir`."""
    return state_dir / f".{IN_FORCE}.new"


def fabric_dir(state_dir: Path, name: str) -> Path:
    """The directory fabric `name` keeps its own data in (a simulator's database).

    The embedded simulator's is the state dir itself, as it always was.
    """
    return state_dir if name == EMBEDDED_FABRIC else state_dir / FABRICS / name
