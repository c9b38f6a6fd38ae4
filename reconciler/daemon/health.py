"""Whether the daemon can use its state dir now, said once per change: log, metrics, status.

The daemon (daemon/loop.py) opens its journal here, tells `trouble` about
every write that fails (the journal's, its status file's, the revision in
force's) and asks `may_start` before each pass: while the state dir takes no
writes (read-only, full) or the journal is refused (damaged, not drctl's,
replaced) or busy (another process holds its lock), drctl starts nothing,
since it never starts what it cannot journal first. It keeps running,
serving metrics and following its jobs, and finds out by itself when it
may go on: each pass probes the state dir and the journal with a write.
A journal that lost records while drctl was stopped is used, with a loud
warning (`warn_if_lost`), kept in the daemon's status for its lifetime.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path

from reconciler.daemon.logs import log
from reconciler.engine import fabrics, journal, journal_backend, journal_file, state_check
from reconciler.engine import metrics as metrics_
from reconciler.engine import state_dir as layout
from reconciler.errors import DrctlError, JournalBusyError, StateDirError, StateWriteError
from reconciler.kits import clock as clocks

# While something is wrong, the state dir is probed (a synced write) at most this often.
PROBE_EVERY = timedelta(seconds=1)


class StateHealth:
    """The daemon's view of its state dir: writable, journal usable, and what is wrong."""

    def __init__(
        self,
        state_dir: Path,
        metrics: metrics_.Metrics,
        clock: clocks.Clock,
        busy_timeout: float = journal.BUSY_TIMEOUT,
        opener: journal_backend.Opener | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.metrics = metrics
        self.clock = clock
        self._probed_at: datetime | None = None
        self.busy_timeout = busy_timeout
        self.writable = True
        self.journal_usable = True
        self.problem: str | None = None  # why nothing starts now, as logged
        self.warnings: list[str] = []  # what was found wrong at start and gone on with
        self._journal: journal_backend.Backend | None = None
        # The state dir's SQLite journal, unless the daemon journals elsewhere (etcd).
        self._opener = opener or (
            lambda: journal.Journal(self.state_dir, busy_timeout=self.busy_timeout)
        )
        self._in_force_kept = False  # whether a revision in force was kept when it opened

    def open_journal(self) -> journal_backend.Backend | None:
        """The journal, opened and checked; None (said) while it cannot be used."""
        try:
            opened = self._opener()
        except StateDirError as exc:
            self.trouble(exc)
            return None
        self._journal = opened
        # Read now: this daemon keeps the revision it reads there itself.
        self._in_force_kept = in_force_kept(self.state_dir)
        if opened.lost is not None:
            self._warn_lost(opened.lost)
        if not self.journal_usable:
            self.journal_usable = True
            if self.writable:
                self._fine_again(f"the journal {opened.path} can be used again")
            self._publish()
        return opened

    def forget_journal(self) -> None:
        """The journal was found damaged while open: it is opened (and checked) again."""
        if self._journal is not None:
            self._journal.close()
        self._journal = None

    def warn_if_lost(self, fabrics_: fabrics.Fabrics, names: Iterable[str]) -> None:
        """A new journal with no record of an older one: warn if drctl worked here before.

        Asked before this daemon starts a job: the jobs of fabrics `names`
        that a drctl started (all of them, on a fabric that keeps no intent ids).
        """
        if self._journal is None or not self._journal.identity.created or self._journal.lost:
            return
        jobs = 0
        for name in names:
            try:
                listed = fabrics_.list_jobs(name)
                keeps = fabrics_.keeps_intent_ids(name)
            except DrctlError:
                continue  # not answering now: its jobs are not counted
            jobs += sum(1 for j in listed if j.intent_id or not keeps)
        lost = journal_file.lost_evidence(self.state_dir, self._in_force_kept, jobs)
        if lost is not None:
            self._warn_lost(lost)

    def trouble(self, exc: StateDirError) -> None:
        """A write failed, or the journal was refused: nothing starts until it passes."""
        if isinstance(exc, StateWriteError) and not isinstance(exc, JournalBusyError):
            self.writable = False
        else:
            self.journal_usable = False
        self._publish()
        message = str(exc)
        if message == self.problem:
            return
        self.problem = message
        log.error(
            "%s",
            message,
            extra={"event": "state_dir_unusable", "error": message, "kind": type(exc).__name__},
        )

    def may_start(self) -> bool:
        """Whether this pass may start operations: after a failed write, a probe must pass."""
        if self.problem is None:
            return True
        now = self.clock.now()
        if self._journal is None or (
            self._probed_at is not None and now < self._probed_at + PROBE_EVERY
        ):
            return False
        self._probed_at = now
        try:
            state_check.require_writable(self.state_dir)
            self._journal.probe()
        except StateDirError as exc:
            self.trouble(exc)
            return False
        what = "writable" if not self.writable else "usable"
        self.writable = self.journal_usable = True
        self._fine_again(f"the state dir {self.state_dir} is {what} again")
        return True

    def _fine_again(self, message: str) -> None:
        self.problem = None
        self._publish()
        log.info(
            "%s: drctl starts operations again",
            message,
            extra={"event": "state_dir_usable", "state_dir": str(self.state_dir)},
        )

    def _warn_lost(self, lost: str) -> None:
        warning = journal_file.lost_warning(lost)
        self.warnings.append(warning)
        log.error("%s", warning, extra={"event": "journal_lost", "error": lost})

    def _publish(self) -> None:
        self.metrics.set_state_dir(writable=self.writable, journal_usable=self.journal_usable)


def in_force_kept(state_dir: Path) -> bool:
    """Whether a daemon kept a revision in force in `state_dir`."""
    return (layout.in_force_dir(state_dir) / "revision").is_file()
