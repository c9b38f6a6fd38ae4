"""The lock that lets only one drctl act on a fabric at a time.

`drctl apply`, `drctl fabric init` and `drctl run` hold an flock on the state
dir's lock file while they start operations; read-only commands (plan,
status) do not take it. The kernel drops the lock when the process dies, so a killed apply never
leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from reconciler.engine import state_dir as layout
from reconciler.errors import LockHeldError


@contextlib.contextmanager
def hold(state_dir: Path, purpose: str) -> Iterator[None]:
    """Hold the fabric lock, or raise LockHeldError naming who holds it."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = layout.lock_path(state_dir)
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise LockHeldError(
                f"{holder} is acting on the fabric of {state_dir}: only one drctl may act at a "
                "time; wait for it to finish or stop it"
            ) from exc
        handle.seek(0)
        handle.truncate()
        handle.write(f"drctl {purpose} (pid {os.getpid()})")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)
