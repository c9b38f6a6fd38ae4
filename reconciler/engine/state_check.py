"""Whether drctl can write its state dir now: each file it must write, said by its path.

`drctl apply` calls `require_usable` before it opens a fabric or takes the
lock, so that a read-only, full or mis-made state dir is one line naming the
path (exit 3), never a traceback half-way. The daemon (daemon/health.py)
calls it while a write has failed, to learn when it may start operations
again: drctl starts nothing it cannot journal first.

A directory that takes a new file may still refuse a write to a file open
before it became read-only, and a disk may fill between this check and the
next write: the journal's own writes (engine/journal.py) say so too.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

from reconciler import errors
from reconciler.engine import state_dir as layout

# A write this size, synced, must get through: SQLite writes a journal entry
# as a few 4 KiB pages plus the WAL's frame headers.
PROBE_BYTES = 64 * 1024


def require_usable(state_dir: Path) -> None:
    """Raise what stands in the way of writing the state dir, naming the path; else nothing."""
    _require_files(state_dir)
    require_writable(state_dir)


def require_writable(state_dir: Path) -> None:
    """`StateWriteError` naming the path when the state dir or one of its files refuses a write."""
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise refusal(state_dir, exc) from exc
    probe = state_dir / f".write-probe-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"\0" * PROBE_BYTES)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise refusal(state_dir, exc) from exc
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
    for path in _written_files(state_dir):
        # Asked, never opened: closing a descriptor of the journal's files in
        # this process would drop the POSIX locks SQLite holds on them.
        if path.exists() and not os.access(path, os.W_OK):
            raise refusal(path, os.strerror(errno.EACCES if _mount_writable(path) else errno.EROFS))


def refusal(path: Path, exc: OSError | str) -> errors.StateWriteError:
    """The one line that says `path` cannot be written, why, and what drctl does meanwhile."""
    why = exc if isinstance(exc, str) else (exc.strerror or str(exc))
    return errors.StateWriteError(
        path,
        f"cannot write {path}: {why}: drctl starts nothing it cannot journal first; make the "
        "state dir writable or free space on it (drctl run goes on by itself once it can)",
    )


def _require_files(state_dir: Path) -> None:
    """A lock or journal path that is not a regular file (a directory, say) is refused."""
    for path, what in (
        (layout.lock_path(state_dir), "lock file"),
        (layout.journal_path(state_dir), "journal"),
    ):
        kind = not_a_file(path)
        if kind is not None:
            raise errors.StateFileError(
                f"{path} is {kind}, not drctl's {what}: move it away (drctl makes a new "
                f"{what}), or choose another --state-dir"
            )


def not_a_file(path: Path) -> str | None:
    """What `path` is when it is there and not a regular file ("a directory"); else None."""
    try:
        mode = path.lstat().st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISLNK(mode):
        target = path.resolve()
        return (
            None if target.is_file() or not target.exists() else f"a link to {not_a_file(target)}"
        )
    if stat.S_ISDIR(mode):
        return "a directory"
    return "a special file"


def _written_files(state_dir: Path) -> list[Path]:
    """The files drctl writes in place (the others are replaced by a rename)."""
    journal = layout.journal_path(state_dir)
    return [
        layout.lock_path(state_dir),
        journal,
        journal.with_name(journal.name + "-wal"),
        journal.with_name(journal.name + "-shm"),
    ]


def _mount_writable(path: Path) -> bool:
    """Whether the file system holding `path` is mounted writable (else: read-only)."""
    return not os.statvfs(path).f_flag & os.ST_RDONLY
