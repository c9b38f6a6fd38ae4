"""The lock that lets only one drctl act on a fabric at a time.

`drctl apply`, `drctl fabric init` and `drctl run` hold it while they start
operations; read-only commands (plan, status) do not take it. The kernel
drops it when the process dies, so a killed apply never leaves a stale lock.

What is locked is the state dir itself, an flock on a descriptor of the
directory: an operator cleaning up the state dir can delete the file
`drctl.lock` from under its holder, and a lock on that file alone then let
a second drctl lock a new file of the same name and act beside the first.
A directory can still be moved away, or deleted and made again (a state dir
restored from a copy): that is another directory, free to lock. So the
holder checks before each operation (`Lease.check`, called by the executor)
that the directory at the path is still the one it locked, and if not,
starts nothing more (LockLostError).

`drctl.lock` stays, and is locked too: it names the holder for whoever is
refused, and keeps out an older drctl that locks only it. Deleted, the
holder writes it again at its next check; meanwhile a refused drctl names
the holder's pid from the kernel's lock table (/proc/locks).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from reconciler.engine import state_dir as layout
from reconciler.errors import LockHeldError, LockLostError, StateFileError

_PROC_LOCKS = Path("/proc/locks")


class Lease:
    """The held lock: a descriptor of the state dir (flocked) and the lock file naming us."""

    def __init__(self, state_dir: Path, holder: str, dir_fd: int, file_fd: int | None) -> None:
        self.state_dir = state_dir
        self.holder = holder
        self._path = state_dir.absolute()  # a later chdir must not change what is checked
        self._dir_fd = dir_fd
        self._file_fd = file_fd

    def check(self) -> None:
        """Raise LockLostError unless the state dir at its path is the directory locked.

        Called before each operation: a directory put in its place (deleted and
        made again, restored from a copy) is free for another drctl to lock.
        """
        try:
            there = self._path.stat()
        except OSError:
            there = None
        if there is None or not _same(there, os.fstat(self._dir_fd)):
            raise LockLostError(
                f"{self.state_dir} is no longer the directory this drctl locked (deleted, moved "
                "or replaced while it ran): nothing more is started, since another drctl may now "
                "lock the new one; restart this drctl to act on it"
            )
        self._name_again()

    def _name_again(self) -> None:
        """Write the lock file again if it was deleted: best effort, the directory is the lock."""
        path = layout.lock_path(self._path)
        try:
            there = path.lstat()
        except FileNotFoundError:
            there = None
        except OSError:
            return
        if (
            there is not None
            and self._file_fd is not None
            and _same(there, os.fstat(self._file_fd))
        ):
            return
        try:
            fd = _open_lock_file(path)
        except (OSError, StateFileError):
            return  # not writable, or not a file now: the directory still is ours
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return
        _write_name(fd, self.holder)
        if self._file_fd is not None:
            os.close(self._file_fd)
        self._file_fd = fd

    def release(self) -> None:
        if self._file_fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._file_fd, 0)
            os.close(self._file_fd)
            self._file_fd = None
        os.close(self._dir_fd)


@contextlib.contextmanager
def hold(state_dir: Path, purpose: str) -> Iterator[Lease]:
    """Hold the fabric lock, or raise LockHeldError naming who holds it.

    StateFileError when the state dir or its lock file is not what drctl made
    (a file where the directory should be, a directory named drctl.lock).
    """
    lease = acquire(state_dir, purpose)
    try:
        yield lease
    finally:
        lease.release()


def acquire(state_dir: Path, purpose: str) -> Lease:
    holder = f"drctl {purpose} (pid {os.getpid()})"
    dir_fd = _lock_directory(state_dir)
    path = layout.lock_path(state_dir)
    try:
        file_fd: int | None = _open_lock_file(path)
    except OSError:
        file_fd = None  # a state dir we may not write to: the directory alone is the lock
    except StateFileError:
        os.close(dir_fd)
        raise
    if file_fd is not None:
        try:
            fcntl.flock(file_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:  # an older drctl, which locks the file alone
            os.close(file_fd)
            os.close(dir_fd)
            raise _held_error(state_dir, _read_name(path) or "another process") from exc
        _write_name(file_fd, holder)
    return Lease(state_dir, holder, dir_fd, file_fd)


def _lock_directory(state_dir: Path) -> int:
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:
        raise StateFileError(
            f"the state dir {state_dir} is not a directory: move it away, or choose another "
            "--state-dir"
        ) from exc
    except OSError as exc:
        raise StateFileError(f"cannot make the state dir {state_dir}: {exc.strerror}") from exc
    # Twice at most: a directory put in the path's place between the open
    # and the lock is not the one at the path; lock the one there now.
    for _attempt in range(3):
        try:
            fd = os.open(state_dir, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            raise StateFileError(f"cannot open the state dir {state_dir}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            held = os.fstat(fd)
            os.close(fd)
            raise _held_error(state_dir, _holder_of(state_dir, held)) from exc
        except OSError as exc:
            os.close(fd)
            raise StateFileError(f"cannot lock the state dir {state_dir}: {exc.strerror}") from exc
        with contextlib.suppress(OSError):
            if _same(state_dir.stat(), os.fstat(fd)):
                return fd
        os.close(fd)
    raise LockLostError(f"{state_dir} keeps being replaced while drctl locks it: try again")


def _open_lock_file(path: Path) -> int:
    """The lock file, opened for writing (made if missing); StateFileError if it is not a file."""
    what = None
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    except IsADirectoryError:
        what = "a directory"
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        what = "a symbolic link"
    else:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            return fd
        os.close(fd)
        what = "not a regular file"
    raise StateFileError(
        f"{path} is {what}, not drctl's lock file: remove it (drctl makes it again) and retry"
    )


def _write_name(fd: int, holder: str) -> None:
    with contextlib.suppress(OSError):  # a full disk: the name is for people, the lock holds
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder.encode(), 0)


def _read_name(path: Path) -> str:
    try:
        text = path.read_bytes()[:400].decode(errors="replace")
    except OSError:
        return ""
    return " ".join(text.split())[:200]  # one line, whatever was written there


def _holder_of(state_dir: Path, held: os.stat_result) -> str:
    """Who holds the state dir's lock: the lock file says, else the kernel's lock table."""
    path = layout.lock_path(state_dir)
    name = _read_name(path)
    if name:
        return name
    pid = _flock_holder_pid(held)
    if pid is not None:
        return f"a drctl (pid {pid}; its lock file {path} was removed)"
    return "another process"


def _flock_holder_pid(held: os.stat_result) -> int | None:
    """The pid holding an flock on the file `held`, from /proc/locks (Linux), or None.

    A line reads `1: FLOCK  ADVISORY  WRITE 1760 fe:00:260072 0 EOF`: the
    pid, then the device (major:minor, in hex) and inode of the file; a
    process waiting for the lock has `->` after the number.
    """
    key = f"{os.major(held.st_dev):02x}:{os.minor(held.st_dev):02x}:{held.st_ino}"
    try:
        lines = _PROC_LOCKS.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == key:
            pid = fields[4]
            return int(pid) if pid.isdigit() and int(pid) > 0 else None
    return None


def _held_error(state_dir: Path, holder: str) -> LockHeldError:
    return LockHeldError(
        f"{holder} is acting on the fabric of {state_dir}: only one drctl may act at a "
        "time; wait for it to finish or stop it"
    )


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
