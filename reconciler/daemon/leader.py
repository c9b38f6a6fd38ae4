"""Becoming the one actor on the fabrics: waiting for the lock of the state dir.

`loop.Daemon.run` calls `hold_lock` before anything else. While `drctl apply`
(or another daemon) holds the lock it waits and says so once; while the lock
file cannot be written, or is not a file, the trouble is said and measured
(`health.StateHealth`) and waited for. Holding it, the daemon is the leader
(`drctl_leader` 1).
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

from reconciler.daemon import health
from reconciler.daemon.logs import log
from reconciler.engine import metrics as metrics_
from reconciler.engine import state_check
from reconciler.engine import state_dir as layout
from reconciler.engine.lease import flock
from reconciler.errors import LockHeldError, StateFileError, StateWriteError


def hold_lock(
    state_dir: Path,
    stop: threading.Event,
    state_health: health.StateHealth,
    metrics: metrics_.Metrics,
    retry: float,
) -> tuple[contextlib.ExitStack, flock.Lease] | None:
    """The fabric lock; while `drctl apply` holds it, wait for it and say so.

    The stack holds the lock until it is closed; the lease checks it is
    still ours. None when asked to stop while waiting: nothing was
    started, exit cleanly. While the lock file cannot be written, waits
    `retry` seconds between tries.
    """
    stack = contextlib.ExitStack()
    told = False
    while True:
        try:
            lease = stack.enter_context(flock.hold(state_dir, "run"))
        except LockHeldError as exc:
            if not told:
                log.warning("%s; waiting for the lock", exc)
                told = True
            if stop.wait(1.0):
                return None
            continue
        except (OSError, StateFileError) as exc:
            # The lock file cannot be written (read-only), or is not one (a
            # directory, a link): said, measured, and waited for.
            lock = layout.lock_path(state_dir)
            state_health.trouble(
                state_check.refusal(lock, exc)
                if isinstance(exc, OSError)
                else StateWriteError(lock, str(exc))
            )
            if stop.wait(retry):
                return None
            continue
        metrics.set_leader(True)
        return stack, lease
