"""The journal's open ends: intents whose call may have reached a fabric, and refused writes.

`execute.Executor` makes every journal write through `Intents.record`: a
write the state dir refuses (read-only, full, its lock held by another
process) sets `write_error` and returns False, and the executor starts
nothing more that step. A call whose outcome could not be journaled keeps its
intent here as unresolved (`record_or_hold`), as do intents a crash
interrupted and starts that failed transiently; `resolve` matches them
against the fabric's jobs (`adopt.find_job`) on each step. Until then their
VMs start nothing: their call may have reached the fabric.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec

from reconciler.engine import adopt, journal_backend
from reconciler.engine import backoff as backoffs
from reconciler.engine import fabrics as fabrics_
from reconciler.engine import journal as journals
from reconciler.errors import StateDirError, TransientError
from reconciler.kits import clock as clocks

_P = ParamSpec("_P")

_LIST_JOBS = "list_jobs"  # the backoff item of `Provider.list_jobs`; job ids are the others


class Intents:
    """The entries not settled in the journal yet, and why the latest write failed."""

    def __init__(
        self,
        journal: journal_backend.Backend,
        fabrics: fabrics_.Fabrics,
        clock: clocks.Clock,
        backoff: backoffs.Backoff,
    ) -> None:
        self.journal = journal
        self.fabrics = fabrics
        self.clock = clock
        self.backoff = backoff
        self.unresolved: list[journals.Entry] = []  # calls that may have reached a fabric
        # Why a journal write failed in the latest step (or while resuming); None if none did.
        self.write_error: StateDirError | None = None

    def record(self, write: Callable[_P, object], *args: _P.args, **kwargs: _P.kwargs) -> bool:
        """Make one journal write; False, with `write_error` set, when the journal refuses it."""
        try:
            write(*args, **kwargs)
        except StateDirError as exc:
            self.write_error = exc
            return False
        return True

    def record_or_hold(
        self,
        intent: journals.Entry,
        write: Callable[_P, object],
        *args: _P.args,
        **kwargs: _P.kwargs,
    ) -> bool:
        """Journal a call's outcome; if the journal refuses, hold its intent as unresolved.

        Until the outcome is journaled its VM starts nothing, and a job the
        call started is found again by its intent id (`resolve`).
        """
        if self.record(write, *args, **kwargs):
            return True
        self.unresolved.append(intent)
        return False

    def resolve(
        self, follow: Callable[[journals.Entry, str], None], revision: str | None = None
    ) -> None:
        """Did the fabric get the call? For intents a crash interrupted, and deferred starts.

        An intent recorded before the process died, and a start that failed
        transiently (a timeout may have been accepted), are matched against
        the jobs of the fabric they were for, by `adopt.find_job`. Until that
        fabric answers `list_jobs`, their VMs start nothing: their call may
        have reached it. One that several jobs could be is unsettled: its VM
        starts nothing until `revision`, the one in force, is another.
        """
        if not self.unresolved:
            return
        now = self.clock.now()
        by_fabric: dict[str, list[journals.Entry]] = {}
        for entry in self.unresolved:
            by_fabric.setdefault(entry.fabric, []).append(entry)
        still: list[journals.Entry] = []
        known: set[str] | None = None
        for fabric, entries in by_fabric.items():
            key = (_LIST_JOBS, fabric)
            if not self.backoff.due(key, now):
                still.extend(entries)
                continue
            try:
                jobs = self.fabrics.list_jobs(fabric)
            except TransientError as exc:
                self.backoff.fail(key, now, backoffs.retry_after(exc))
                still.extend(entries)
                continue
            self.backoff.forget(key)
            if known is None:
                known = {e.job_id for e in self.journal.entries() if e.job_id}
            keeps = self.fabrics.keeps_intent_ids(fabric)
            for entry in entries:
                found = adopt.find_job(entry, jobs, known, keeps)
                if found.job is not None:
                    job = found.job
                    if not self.record(
                        self.journal.record_started, entry.id, job.id, job.started_at
                    ):
                        still.append(entry)  # found again once the journal takes it
                        continue
                    known.add(job.id)
                    follow(entry, job.id)
                elif found.candidates:
                    still.extend(self._unsettle(entry, found, fabric, keeps, revision))
                elif entry.result != journals.DEFERRED and not self.record(
                    self.journal.record_outcome,
                    entry.id,
                    journals.NOT_ISSUED,
                    now,
                    "interrupted before the fabric accepted the call",
                ):
                    still.append(entry)
                # A deferred start that did not get through stays deferred.
        self.unresolved = still

    def _unsettle(
        self,
        entry: journals.Entry,
        found: adopt.Found,
        fabric: str,
        keeps: bool,
        revision: str | None,
    ) -> list[journals.Entry]:
        """Keep an entry several jobs could be open, its VM held, while its revision is in force.

        Another revision is a person's word after reading the reason: the
        entry is closed, claiming none of the jobs, and its VM planned again.
        """
        if revision is not None and revision != entry.revision:
            why = adopt.released_reason(entry, found, fabric, keeps, revision)
            closed = self.record(
                self.journal.record_outcome, entry.id, journals.ABANDONED, self.clock.now(), why
            )
            return [] if closed else [entry]
        reason = adopt.held_reason(entry, found, fabric, keeps)
        if entry.result != journals.UNSETTLED or entry.error != reason:
            try:
                entry = self.journal.record_unsettled(entry, reason)
            except StateDirError as exc:
                self.write_error = exc  # still open either way: held again next step
        return [entry]
