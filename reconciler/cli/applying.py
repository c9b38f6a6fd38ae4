"""`drctl apply`: execute the plan until converged, or until only a person can go on.

`cli.main` wires the command here. Ctrl-C once starts nothing more and
follows the running jobs (never cancelled); twice leaves at once.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from collections.abc import Iterator
from types import FrameType
from typing import TYPE_CHECKING

from reconciler import errors
from reconciler.cli import options
from reconciler.gitops import specdir

if TYPE_CHECKING:
    from pathlib import Path

    from reconciler.engine import execute
    from reconciler.engine.lease.flock import Lease


class _StopOnInterrupt:
    """First Ctrl-C: start nothing more, follow running jobs. Second: leave now."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, _signum: int, _frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print(
            "\ndrctl: stopping: no new operation will start; running jobs are never "
            "cancelled and are followed to their end. Ctrl-C again to leave now (they keep "
            "running in the fabric).",
            file=sys.stderr,
            flush=True,
        )

    def restore(self) -> None:
        signal.signal(signal.SIGINT, self._previous)


@contextlib.contextmanager
def _lock(state_dir: Path, purpose: str) -> Iterator[Lease]:
    """The fabric lock; a lock file that cannot be written is one line (exit 3)."""
    from reconciler.engine import state_check
    from reconciler.engine import state_dir as layout
    from reconciler.engine.lease import flock

    with contextlib.ExitStack() as stack:
        try:
            lease = stack.enter_context(flock.hold(state_dir, purpose))
        except OSError as exc:
            raise state_check.refusal(layout.lock_path(state_dir), exc) from exc
        yield lease


def apply_command(args: argparse.Namespace) -> int:
    from reconciler.engine import execute, fabrics, journal, journal_file, state_check
    from reconciler.gitops import revision
    from reconciler.kits import clock
    from reconciler.ui import report

    desired = specdir.load_plans(args.specs_dir)
    found = revision.spec_revision(args.specs_dir)
    rev = found.id
    wall = clock.WallClock()
    settings = options.settings_of(args)
    # Before the fabric and the lock: a state dir that cannot be written is
    # one line naming the path, and nothing is started.
    state_check.require_usable(args.state_dir)
    provider = fabrics.open_for(desired, args.state_dir, wall)
    with provider, _lock(args.state_dir, "apply") as lease:
        progress = report.Progress()
        history = journal.Journal(args.state_dir)
        if history.lost is not None:
            print(f"drctl: warning: {journal_file.lost_warning(history.lost)}", file=sys.stderr)
        executor = execute.Executor(
            provider,
            history,
            wall,
            settings,
            on_event=progress.event,
            check_lock=lease.check,
            on_retired=progress.retired,
        )
        print(f"applying {errors.shown_path(str(args.specs_dir))} at revision {rev}", flush=True)
        stop = _StopOnInterrupt()
        try:
            outcome = execute.apply(
                executor,
                desired,
                rev,
                args.timeout,
                lambda: stop.requested,
                progress.step,
                revision_made_at=found.made_at,
            )
        except KeyboardInterrupt:
            print(
                "drctl: left while jobs still run in the fabric; run drctl apply again to "
                "follow them",
                file=sys.stderr,
            )
            return errors.EXIT_NOT_CONVERGED
        finally:
            stop.restore()
    return _summarise(outcome)


def _summarise(outcome: execute.Outcome) -> int:
    built = outcome.plan
    if outcome.converged:
        print(f"converged: {len(built.vms)} VMs at their desired site and protected")
        return errors.EXIT_OK
    if outcome.interrupted:
        print("stopped on request before converging", file=sys.stderr)
    elif outcome.timed_out:
        print("timed out before converging", file=sys.stderr)
    else:
        print("cannot converge without a change by a human:", file=sys.stderr)
    for vp in built.vms:
        if not vp.converged:
            print(f"  {vp.plan}/{vp.name}: {vp.phase}: {vp.reason}", file=sys.stderr)
    return errors.EXIT_NOT_CONVERGED
