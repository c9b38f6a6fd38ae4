"""A damaged machine for tests: a full file system, a read-only directory, a locked journal.

`small_tmpfs` mounts a tmpfs of a few hundred KiB where the test may mount
one (root with CAP_SYS_ADMIN, as in this project's CI container), else skips
the test saying why. `read_only` makes a directory refuse new files: chmod
when not root; as root (whom chmod does not stop) a read-only bind mount
over the directory, skipped when even that is not allowed. A file opened for
writing before either keeps taking writes, as on a real system after a
chmod; a full tmpfs refuses any write that needs a new page. `journal_locked`
holds an SQLite file's write lock from another process, as an sqlite3 shell would.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest


def _mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True, check=False)


def _unmount(path: Path) -> None:
    # Lazy: a test's process may still hold a file open there.
    subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str = "512k") -> Iterator[Path]:
    """A tmpfs of `size` mounted at `path` (made if missing) for the block; skip if not allowed."""
    path.mkdir(parents=True, exist_ok=True)
    done = _mount("-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path))
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN): {done.stderr}")
    try:
        yield path
    finally:
        _unmount(path)


def fill(directory: Path) -> Path:
    """Write a file in `directory` until the file system is full; the file, to free it again."""
    filler = directory / "filler"
    chunk = b"\0" * 4096
    with filler.open("wb", buffering=0) as f:
        while True:
            try:
                f.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                return filler


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[str]:
    """`path` refuses new files and writes through new opens for the block; how, in words."""
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0o555)
        try:
            yield "chmod 0555"
        finally:
            path.chmod(mode)
        return
    done = _mount("--bind", str(path), str(path))
    if done.returncode == 0:
        done = _mount("-o", "remount,bind,ro", str(path))
        if done.returncode != 0:
            _unmount(path)
    if done.returncode != 0:
        pytest.skip(
            "running as root, whom chmod does not stop, and a read-only bind mount is not "
            f"allowed here: {done.stderr}"
        )
    try:
        yield "a read-only bind mount"
    finally:
        _unmount(path)


_HOLD_THE_LOCK = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
print("held", flush=True)
sys.stdin.read()
"""


@contextlib.contextmanager
def journal_locked(path: Path) -> Iterator[None]:
    """Another process holds the write lock of the SQLite file at `path` for the block."""
    with subprocess.Popen(
        [sys.executable, "-c", _HOLD_THE_LOCK, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        try:
            yield
        finally:
            holder.communicate("")
