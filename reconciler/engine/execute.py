"""The executor: runs the planner's actions against a provider.

One `Executor.step` polls the jobs drctl started to a terminal state and
records their outcome, observes the fabric, plans, and starts the actions the
plan marks ready, within each plan's `maxParallel`. Every start is recorded in
the journal as an intent before the provider is called. `apply` repeats steps
until the desired state is reached or cannot be. Called by `drctl apply` and,
later, by the daemon.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from reconciler.core import plan, state
from reconciler.core.desired import EMBEDDED_FABRIC, DesiredState
from reconciler.core.plan import Phase
from reconciler.engine import fabrics as fabrics_
from reconciler.engine import journal as journals
from reconciler.errors import ProviderError, TerminalError, ThrottledError, TransientError
from reconciler.fabric import base
from reconciler.kits import clock as clocks
from reconciler.kits import gcpause


@dataclass(frozen=True)
class Settings:
    poll_interval: float = 0.5
    backoff_base: float = 2.0
    backoff_cap: float = 60.0
    max_attempts: int = plan.MAX_ATTEMPTS

    def backoff(self, failures: int) -> float:
        """Seconds to wait after the n-th consecutive failure: base, 2x base, 4x base..."""
        return float(min(self.backoff_cap, self.backoff_base * 2 ** max(0, failures - 1)))


class EventKind(StrEnum):
    STARTED = "started"
    ADOPTED = "adopted"  # still running from a previous drctl run: followed, not restarted
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REFUSED = "refused"  # the provider refused to start it
    THROTTLED = "throttled"


@dataclass(frozen=True)
class Event:
    kind: EventKind
    plan: str
    vm: str
    operation: state.Operation
    target_site: str | None
    at: datetime
    job_id: str | None = None
    seconds: float | None = None
    error: str | None = None
    data_loss_seconds: float | None = None


class Executor:
    """Starts ready actions and follows the jobs it started until they end."""

    def __init__(
        self,
        provider: base.Provider | fabrics_.Fabrics,
        journal: journals.Journal,
        clock: clocks.Clock,
        settings: Settings | None = None,
        on_event: Callable[[Event], None] | None = None,
    ) -> None:
        # One provider is the embedded fabric alone; `Fabrics` drives several.
        self.fabrics = (
            provider if isinstance(provider, fabrics_.Fabrics) else fabrics_.Fabrics.of(provider)
        )
        self.journal = journal
        self.clock = clock
        self.settings = settings or Settings()
        self._emit = on_event or (lambda _event: None)
        self._running: dict[str, journals.Entry] = {}  # job id -> our journal entry
        self.last_observed: state.Observed | None = None  # every fabric in one view
        self.observed: dict[str, state.Observed] = {}  # by fabric
        self._fabric_of: dict[str, str] = {}  # plan -> fabric
        self._throttled_until: datetime | None = None
        self._resume()

    @property
    def running(self) -> int:
        """How many jobs drctl started that have not ended yet."""
        return len(self._running)

    def _resume(self) -> None:
        """Adopt the actions a previous run left open, so none is issued twice."""
        now = self.clock.now()
        unresolved = self.journal.open_entries()
        if not unresolved:
            return
        known = {e.job_id for e in self.journal.entries() if e.job_id}
        jobs = None
        for entry in unresolved:
            if entry.job_id is not None:
                self._adopt(entry, entry.job_id)
                continue
            # Intent recorded, then the process died: did the fabric get the call?
            if jobs is None:
                jobs = self.fabrics.list_jobs()
            match = next(
                (
                    j
                    for j in jobs
                    if j.vm == entry.vm
                    and j.operation is entry.operation
                    and j.id not in known
                    and j.started_at >= entry.intended_at - timedelta(seconds=1)
                ),
                None,
            )
            if match is None:
                self.journal.record_outcome(
                    entry.id,
                    journals.NOT_ISSUED,
                    now,
                    "interrupted before the fabric accepted the call",
                )
                continue
            known.add(match.id)
            self.journal.record_started(entry.id, match.id, match.started_at)
            self._adopt(entry, match.id)

    def _adopt(self, entry: journals.Entry, job_id: str) -> None:
        self._running[job_id] = entry
        self._emit(
            Event(
                EventKind.ADOPTED,
                entry.plan,
                entry.vm,
                entry.operation,
                entry.target_site,
                self.clock.now(),
                job_id,
            )
        )

    def step(
        self,
        desired: DesiredState,
        revision: str,
        *,
        start: bool = True,
        hold: Callable[[plan.Action], bool] | None = None,
    ) -> plan.Plan:
        """Poll our jobs, observe, plan, and start what is ready.

        Nothing starts when `start` is False; an action for which `hold`
        returns True waits (the daemon's settle time after a change).
        """
        self.fabrics.use(desired)
        self._poll_jobs()
        self.observed = self.fabrics.observe(observed_fabrics(desired))
        self.last_observed = fabrics_.merge(self.observed.values())
        self._fabric_of = {p.name: p.fabric for p in desired.plans}
        now = self.clock.now()
        attempts = self.journal.attempts(revision, self.settings.backoff)
        with gcpause.gc_paused():
            built = plan.build_plans(
                desired, self.observed, now, attempts, self.settings.max_attempts
            )
        if start:
            self._start_ready(built, revision, hold)
        return built

    def _poll_jobs(self) -> None:
        for job_id, entry in list(self._running.items()):
            try:
                job = self.fabrics.get_job(job_id)
            except TransientError:
                continue  # ask again next step
            except TerminalError as exc:
                # The fabric forgot the job (it was replaced): its outcome is
                # unknowable; the next observation says what state the VM is in.
                del self._running[job_id]
                error = f"the fabric no longer knows job {job_id}: {exc}"
                self.journal.record_outcome(entry.id, journals.FAILED, self.clock.now(), error)
                self._emit(
                    Event(
                        EventKind.FAILED,
                        entry.plan,
                        entry.vm,
                        entry.operation,
                        entry.target_site,
                        self.clock.now(),
                        job_id,
                        error=error,
                    )
                )
                continue
            if job.running:
                continue
            del self._running[job_id]
            ended = job.finished_at or self.clock.now()
            ok = job.state is state.JobState.SUCCEEDED
            self.journal.record_outcome(
                entry.id,
                journals.SUCCEEDED if ok else journals.FAILED,
                ended,
                None if ok else (job.error or "the job failed without an error message"),
                job.data_loss_seconds,
            )
            self._emit(
                Event(
                    EventKind.SUCCEEDED if ok else EventKind.FAILED,
                    entry.plan,
                    entry.vm,
                    entry.operation,
                    entry.target_site,
                    ended,
                    job_id,
                    (ended - job.started_at).total_seconds(),
                    job.error,
                    job.data_loss_seconds,
                )
            )

    def _start_ready(
        self, built: plan.Plan, revision: str, hold: Callable[[plan.Action], bool] | None
    ) -> None:
        now = self.clock.now()
        if self._throttled_until is not None and now < self._throttled_until:
            return
        in_flight = collections.Counter(
            vp.plan
            for vp in built.vms
            if vp.observed is not None and vp.observed.job is not None and vp.observed.job.running
        )
        for action in built.ready_actions():
            if in_flight[action.plan] >= built.max_parallel.get(action.plan, 1):
                continue
            if hold is not None and hold(action):
                continue
            entry_id = self.journal.record_intent(action, revision, now)
            request = base.Request(
                action.vm,
                action.operation,
                action.target_site,
                shutdown_source=action.shutdown_source,
            )
            try:
                job_id = self.fabrics.start(
                    self._fabric_of.get(action.plan, EMBEDDED_FABRIC), request
                )
            except ThrottledError as exc:
                wait = exc.retry_after or self.settings.backoff(1)
                self._throttled_until = now + timedelta(seconds=wait)
                self.journal.record_outcome(entry_id, journals.NOT_ISSUED, now, str(exc))
                self._emit(_event(EventKind.THROTTLED, action, now, error=str(exc)))
                return
            except ProviderError as exc:
                self.journal.record_outcome(entry_id, journals.FAILED, now, str(exc))
                self._emit(_event(EventKind.REFUSED, action, now, error=str(exc)))
                continue
            self.journal.record_started(entry_id, job_id, now)
            self._running[job_id] = journals.Entry(
                entry_id,
                action.plan,
                action.vm,
                action.operation,
                action.target_site,
                revision,
                now,
                job_id,
                journals.RUNNING,
                None,
                now,
                direction=action.direction,
            )
            in_flight[action.plan] += 1
            self._emit(_event(EventKind.STARTED, action, now, job_id=job_id))


def observed_fabrics(desired: DesiredState) -> list[str]:
    """The fabrics to observe: those the plans use; the embedded one when none is declared
    (its VMs are then listed as unmanaged even without a plan)."""
    names = desired.fabric_names()
    if not desired.fabrics and EMBEDDED_FABRIC not in names:
        names.append(EMBEDDED_FABRIC)
    return names


def _event(kind: EventKind, action: plan.Action, at: datetime, **extra: str) -> Event:
    return Event(kind, action.plan, action.vm, action.operation, action.target_site, at, **extra)  # type: ignore[arg-type]


def can_progress(built: plan.Plan, executor: Executor) -> bool:
    """Whether waiting can change anything without a human changing the spec or fabric."""
    if executor.running:
        return True
    for vp in built.vms:
        if vp.converged:
            continue
        if vp.observed is not None and vp.observed.job is not None and vp.observed.job.running:
            return True
        if vp.phase in {Phase.WAITING_FOR_SITE, Phase.SYNCING}:
            return True
        if vp.action is not None and (vp.action.ready or "backoff" in vp.action.waiting_for):
            return True
    return False


@dataclass
class Outcome:
    plan: plan.Plan
    converged: bool
    timed_out: bool = False
    interrupted: bool = False


def apply(
    executor: Executor,
    desired: DesiredState,
    revision: str,
    timeout: float,
    stop_requested: Callable[[], bool] = lambda: False,
    after_step: Callable[[plan.Plan], None] = lambda _plan: None,
) -> Outcome:
    """Step until converged, blocked, out of time, or asked to stop.

    After a stop request no operation is started; the jobs already running
    are followed to their end (never cancelled) before returning.
    """
    clock = executor.clock
    deadline = clock.now() + timedelta(seconds=timeout)
    while True:
        stopping = stop_requested()
        built = executor.step(desired, revision, start=not stopping)
        after_step(built)
        if built.converged:
            return Outcome(built, converged=True)
        if stopping and not executor.running:
            return Outcome(built, converged=False, interrupted=True)
        if not stopping and not can_progress(built, executor):
            return Outcome(built, converged=False)
        if clock.now() >= deadline:
            return Outcome(built, converged=False, timed_out=True)
        clock.sleep(executor.settings.poll_interval)
