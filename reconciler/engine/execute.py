"""The executor: runs the planner's actions against the fabrics (`engine.fabrics`).

One `Executor.step` polls the jobs drctl started to a terminal state and
records their outcome, observes the fabric, plans, and starts the actions the
plan marks ready, within each plan's `maxParallel`. Every start is recorded in
the journal as an intent before the provider is called, and the call carries
the intent's id; after a restart the job of an interrupted call is found by
`adopt.find_job` (by that id where the fabric keeps it, never by comparing
clocks), so no call is issued twice. `apply` repeats steps
until the desired state is reached or cannot be. Called by `drctl apply` and by
the daemon (`daemon.loop`).

The three kinds of failure of a call (controller-runtime, Flux) are handled
apart. A failed job or a TerminalError spends one of the attempts of a (VM,
operation, revision). A RejectedError (not allowed in the VM's state now)
spends none: the next pass plans again from what it observes. A
TransientError or a ThrottledError spends none either: the call backs off,
per VM and operation or per job, and `next_retry_at` says until when. A
blip of the fabric's API never makes a VM Blocked. An action drctl's hard
rules forbid (`engine.guard`: never CancelFailover or CompleteMigration,
DisableReplication only when confirmed) is journaled as refused and never
reaches the provider. `check_lock` (the held `lease.flock.Lease.check`, or
the etcd lease's `lease.etcd.Election.check`) runs at each step that may
start, before each intent and again just before each provider call: raising
LockLostError there, it ends the step before anything more starts.

A journal write that fails (the state dir read-only or full, its lock held
by another process) starts nothing more: no call is made whose intent is not
journaled. What could not be recorded is kept and written again on a later
step: a job that ended stays followed, a start whose job id could not be
recorded is found again by its intent id. `write_error` says why, for the
step it happened in; `apply` stops with it (exit 3), the daemon waits. That
bookkeeping is `engine.intent`; the events emitted are `engine.event`.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum

from reconciler.core import plan, state
from reconciler.core.desired import EMBEDDED_FABRIC, DesiredState
from reconciler.engine import backoff as backoffs
from reconciler.engine import drill as drills_
from reconciler.engine import drill_record, guard, journal_backend
from reconciler.engine import event as events
from reconciler.engine import fabrics as fabrics_
from reconciler.engine import intent as intents
from reconciler.engine import journal as journals
from reconciler.engine import scope as scopes
from reconciler.errors import (
    ProviderError,
    RejectedError,
    StateDirError,
    TerminalError,
    ThrottledError,
    TransientError,
)
from reconciler.fabric import base
from reconciler.kits import clock as clocks
from reconciler.kits import gcpause

# The executor's events, by the names its callers have always used.
Event = events.Event
EventKind = events.EventKind


@dataclass(frozen=True)
class Settings:
    """How often to poll, how long to back off (after failures and transient errors)."""

    poll_interval: float = 0.5
    backoff_base: float = 2.0
    backoff_cap: float = 60.0
    max_attempts: int = plan.MAX_ATTEMPTS
    # `--max-parallel`: jobs in flight across every plan and fabric (None: each plan's own cap).
    max_parallel: int | None = None
    # `--max-failovers-per-revision`: above it a revision moves none of its VMs.
    max_failovers_per_revision: int | None = None

    def backoff(self, failures: int) -> float:
        """Seconds to wait after the n-th consecutive failure: base, 2x base, 4x base..."""
        return float(min(self.backoff_cap, self.backoff_base * 2 ** max(0, failures - 1)))


class Executor:
    """Starts ready actions and follows the jobs it started until they end."""

    def __init__(
        self,
        provider: base.Provider | fabrics_.Fabrics,
        journal: journal_backend.Backend,
        clock: clocks.Clock,
        settings: Settings | None = None,
        on_event: Callable[[Event], None] | None = None,
        check_lock: Callable[[], None] | None = None,
        on_retired: Callable[[str, base.Retired], None] | None = None,
    ) -> None:
        # One provider is the embedded fabric alone; `Fabrics` drives several.
        self.fabrics = (
            provider if isinstance(provider, fabrics_.Fabrics) else fabrics_.Fabrics.of(provider)
        )
        self.journal = journal
        self.clock = clock
        self.settings = settings or Settings()
        # A drill's record is kept in step with its plan and its jobs' outcomes.
        self.drills = drills_.Drills(journal, clock)
        told = on_event or (lambda _event: None)

        def emit(event: Event) -> None:
            try:
                self.drills.on_event(event)
            except StateDirError as exc:
                # Like every journal write: said by `write_error`, never raised
                # out of a step; this step starts nothing more.
                self.write_error = exc
            told(event)

        self._emit = emit
        self._check_lock = check_lock or (lambda: None)
        # Told what became of the objects a fabric kept for a plan that left the spec.
        self._on_retired = on_retired or (lambda _fabric, _retired: None)
        self._running: dict[str, journals.Entry] = {}  # job id -> our journal entry
        self.last_observed: state.Observed | None = None  # every fabric in one view
        self.observed: dict[str, state.Observed] = {}  # by fabric
        self._fabric_of: dict[str, str] = {}  # plan -> fabric
        self._throttled_until: dict[str, datetime] = {}  # fabric -> no start before then
        self.suspended: set[str] = set()  # our jobs that wait for a person in the fabric
        # The journal writes refused and the calls not settled yet (`engine.intent`).
        self._intents = intents.Intents(journal, self.fabrics, clock, self._backoff)
        self.fabrics.keep_steps(journal)  # providers that run their own jobs journal each step
        self._resume()

    def raise_if_blind(self) -> None:
        """Raise the fabrics' error when no fabric in use could be observed this step."""
        fabrics_.raise_if_blind(self.observed)

    @property
    def running(self) -> int:
        """How many jobs drctl started that have not ended yet."""
        return len(self._running)

    @property
    def write_error(self) -> StateDirError | None:
        """Why a journal write failed in the latest step (or while resuming); None if none did."""
        return self._intents.write_error

    @write_error.setter
    def write_error(self, error: StateDirError | None) -> None:
        self._intents.write_error = error

    @functools.cached_property
    def _backoff(self) -> backoffs.Backoff:
        """Calls that failed transiently, each waiting until its own retry time."""
        return backoffs.Backoff(self.settings.backoff)

    @property
    def next_retry_at(self) -> datetime | None:
        """The earliest time a call this executor holds back may be made again."""
        times = [*self._throttled_until.values()]
        if (backoff := self._backoff.next_at()) is not None:
            times.append(backoff)
        return min(times, default=None)

    def _resume(self) -> None:
        """Adopt the actions a previous run left open, so none is issued twice."""
        unresolved = self.journal.open_entries()
        # Intents a crash interrupted, and starts whose answer may have been lost.
        self._intents.unresolved = [entry for entry in unresolved if entry.job_id is None]
        self._intents.unresolved.extend(self.journal.deferred_tails())
        for entry in unresolved:
            if entry.job_id is not None:
                self._adopt(entry, entry.job_id)
        self._intents.resolve(self._adopt)

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
        revision_made_at: datetime | None = None,
    ) -> plan.Plan:
        """Poll our jobs, observe, plan, and start what is ready.

        Nothing starts when `start` is False; an action for which `hold`
        returns True waits (the daemon's settle time after a change).
        `revision_made_at` is when the revision was made: a VM moved outside
        drctl after it is held, never moved back.
        """
        if start:
            self._check_lock()
        self.write_error = None
        self.fabrics.use(desired)
        self._poll_jobs(revision)
        self.observed = self.fabrics.observe(desired.fabrics_in_use())
        self.last_observed = fabrics_.merge(self.observed.values())
        self._fabric_of = {p.name: p.fabric for p in desired.plans}
        built = plan_observed(
            self.journal,
            self.observed,
            desired,
            revision,
            self.clock.now(),
            self.settings,
            revision_made_at,
        )
        if start and self.write_error is None:
            try:
                self.drills.before_start(built, desired, self.last_observed.vms, revision)
            except StateDirError as exc:
                self.write_error = exc  # a drill starts nothing it has not journaled
        if start and self.write_error is None:
            self.start_ready(built, desired, revision, hold)
        if start and self.write_error is None:
            # An ASR recovery plan drctl wrote for a plan no longer in the spec.
            for fabric, retired in self.fabrics.retire_plans(desired):
                self._on_retired(fabric, retired)
        return built

    def _poll_jobs(self, revision: str) -> None:
        self._intents.resolve(self._adopt, revision)
        now = self.clock.now()
        throttled: set[str] = set()  # fabrics that asked to be called less: next step
        for job_id, entry in list(self._running.items()):
            if entry.fabric in throttled or not self._backoff.due(job_id, now):
                continue
            try:
                job = self.fabrics.get_job(job_id)
            except TransientError as exc:
                # The job runs on regardless; ask again after a backoff.
                self._backoff.fail(job_id, now, backoffs.retry_after(exc))
                if isinstance(exc, ThrottledError):
                    throttled.add(entry.fabric)
                continue
            except TerminalError as exc:
                # The fabric forgot the job (it was replaced): its outcome is
                # unknowable; the next observation says what state the VM is in.
                error = f"the fabric no longer knows job {job_id}: {exc}"
                if not self._intents.record(
                    self.journal.record_outcome, entry.id, journals.FAILED, self.clock.now(), error
                ):
                    continue  # followed on until its outcome is journaled
                del self._running[job_id]
                self._backoff.forget(job_id)
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
            self._backoff.forget(job_id)
            if job.suspended:
                self.suspended.add(job_id)  # followed, but only a person moves it on
                continue
            self.suspended.discard(job_id)
            if job.running:
                continue
            ended = job.finished_at or self.clock.now()
            ok = job.state is state.JobState.SUCCEEDED
            if not self._intents.record(
                self.journal.record_outcome,
                entry.id,
                journals.SUCCEEDED if ok else journals.FAILED,
                ended,
                None if ok else (job.error or "the job failed without an error message"),
                job.data_loss_seconds,
                job_started_at=job.started_at,
            ):
                continue  # followed on until its outcome is journaled
            del self._running[job_id]
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

    def start_ready(
        self,
        built: plan.Plan,
        desired: DesiredState,
        revision: str,
        hold: Callable[[plan.Action], bool] | None = None,
    ) -> None:
        """Start the actions `built` marks ready (`step` calls it with the plan it made).

        drctl's hard rules (`guard`) are checked last, for each action, just
        before its provider call, against `desired`: an action they forbid is
        journaled as refused and emitted, and never reaches the fabric.
        """
        now = self.clock.now()
        for fabric, until in list(self._throttled_until.items()):
            if now >= until:
                del self._throttled_until[fabric]
        unresolved = {entry.vm for entry in self._intents.unresolved}
        in_flight = collections.Counter(
            vp.plan
            for vp in built.vms
            if vp.observed is not None and vp.observed.job is not None and vp.observed.job.running
        )
        cap = self.settings.max_parallel
        for action in built.ready_actions():
            if cap is not None and in_flight.total() >= cap:
                break  # across every plan and fabric (`--max-parallel`)
            if in_flight[action.plan] >= built.max_parallel.get(action.plan, 1):
                continue
            fabric = self._fabric_of.get(action.plan, EMBEDDED_FABRIC)
            if fabric in self._throttled_until or action.vm in unresolved:
                continue
            if hold is not None and hold(action):
                continue
            started = self._start(action, desired, revision, fabric, now)
            if self.write_error is not None:
                return  # the journal took no write: nothing more starts (intent before call)
            if started is _Started.YES:
                in_flight[action.plan] += 1
            elif started is _Started.MAYBE:
                unresolved.add(action.vm)

    def _start(
        self,
        action: plan.Action,
        desired: DesiredState,
        revision: str,
        fabric: str,
        now: datetime,
    ) -> _Started:
        """Journal the intent, check the hard rules, call the fabric, journal the outcome."""
        self._check_lock()  # another drctl may hold the lock now: start nothing
        try:
            intent = self.journal.record_intent(action, revision, now, fabric)
        except StateDirError as exc:
            self.write_error = exc
            return _Started.NO
        denied = guard.refusal(action, desired)
        if denied is not None:
            self._intents.record_or_hold(
                intent,
                self.journal.record_outcome,
                intent.id,
                journals.REFUSED,
                now,
                denied,
            )
            self._emit(events.of_action(EventKind.REFUSED, action, now, error=denied))
            return _Started.NO
        request = base.Request(
            action.vm,
            action.operation,
            action.target_site,
            shutdown_source=action.shutdown_source,
            recovery_point=action.recovery_point,
            intent_id=intent.intent_id,
            plan=action.plan if action.plan_groups else None,
            plan_groups=action.plan_groups,
            vm_ids=_pinned(self.fabrics.pins(fabric), action),
            network=action.network,
        )
        # Just before the call: the lease's local deadline (etcd), or the state
        # dir still the one locked. From here to the fabric is the fencing window.
        self._check_lock()
        try:
            job_id = self.fabrics.start(fabric, request)
        except ThrottledError as exc:
            # Asked to call less: no start on that fabric until then, and this
            # action waits as long in the plan (the journal's retry time).
            wait = self.settings.backoff(1) if exc.retry_after is None else exc.retry_after
            self._throttled_until[fabric] = now + timedelta(seconds=wait)
            self._intents.record_or_hold(
                intent,
                self.journal.record_deferred,
                intent.id,
                now,
                str(exc),
                wait,
            )
            self._emit(events.of_action(EventKind.THROTTLED, action, now, error=str(exc)))
            return _Started.NO
        except TransientError as exc:
            # A timeout may have been accepted: until the fabric's job list
            # says it was not, this VM starts nothing more.
            deferred = self._intents.record(self.journal.record_deferred, intent.id, now, str(exc))
            held = dataclasses.replace(intent, result=journals.DEFERRED) if deferred else intent
            self._intents.unresolved.append(held)
            self._emit(events.of_action(EventKind.DEFERRED, action, now, error=str(exc)))
            return _Started.MAYBE
        except ProviderError as exc:
            # Rejected: the fabric's state moved since the observation, planned
            # again. Otherwise terminal, or unclassified: an attempt spent.
            rejected = isinstance(exc, RejectedError)
            result = journals.REFUSED if rejected else journals.FAILED
            self._intents.record_or_hold(
                intent, self.journal.record_outcome, intent.id, result, now, str(exc)
            )
            kind = EventKind.REFUSED if rejected else EventKind.FAILED
            self._emit(events.of_action(kind, action, now, error=str(exc)))
            return _Started.NO
        record = self.journal.record_started
        if self._intents.record_or_hold(intent, record, intent.id, job_id, now):
            self._running[job_id] = dataclasses.replace(
                intent, job_id=job_id, result=journals.RUNNING, started_at=now
            )
        self._emit(events.of_action(EventKind.STARTED, action, now, job_id=job_id))
        return _Started.YES


def plan_observed(
    journal: journal_backend.Backend,
    observed: dict[str, state.Observed],
    desired: DesiredState,
    revision: str,
    now: datetime,
    settings: Settings,
    revision_made_at: datetime | None = None,
) -> plan.Plan:
    """The plan of what the fabrics report, with what the journal says drctl did.

    The attempts spent, drctl's own moves and stops, and its unsettled calls:
    the executor plans so each step, and a follower replica (daemon/loop.py)
    so each pass, reading the journal only.
    """
    attempts = journal.attempts(revision, settings.backoff)
    provenance = plan.Provenance(
        journal.own_jobs(),
        revision_made_at,
        revision,
        journal.unsettled(revision),
        journal.stopped_by_drctl(),
        drill_record.latest(journal.drills()),
    )
    with gcpause.gc_paused():
        return plan.build_plans(
            desired,
            observed,
            now,
            attempts,
            settings.max_attempts,
            provenance,
            settings.max_failovers_per_revision,
        )


class _Started(Enum):
    """Whether `Executor._start` started a job: MAYBE when the call may have reached the fabric."""

    YES = "yes"
    NO = "no"
    MAYBE = "maybe"


def can_progress(built: plan.Plan, executor: Executor) -> bool:
    """Whether waiting can change anything without a human changing the spec or fabric."""
    # A job suspended for a person does not end by waiting.
    progressing = executor.running - len(executor.suspended)
    return bool(progressing or executor.next_retry_at or plan.pending(built).can_progress)


def next_retry_at(built: plan.Plan, executor: Executor) -> datetime | None:
    """When the first call held back by a backoff (in the plan or in the executor) is due."""
    times = [t for t in (plan.pending(built).retry_at, executor.next_retry_at) if t is not None]
    return min(times, default=None)


@dataclass
class Outcome:
    plan: plan.Plan  # the VMs of the scope (every VM without one)
    converged: bool
    timed_out: bool = False
    interrupted: bool = False
    # Actions the scope or a person held at the last pass: (plan, vm) -> why.
    held: dict[tuple[str, str], str] = field(default_factory=dict)


def apply(
    executor: Executor,
    desired: DesiredState,
    revision: str,
    timeout: float,
    stop_requested: Callable[[], bool] = lambda: False,
    after_step: Callable[[plan.Plan], None] = lambda _plan: None,
    revision_made_at: datetime | None = None,
    scope: scopes.Scope | None = None,
    confirm: Callable[[plan.Action], str | None] | None = None,
) -> Outcome:
    """Step until converged, blocked, out of time, or asked to stop.

    After a stop request no operation is started; the jobs already running
    are followed to their end (never cancelled) before returning. With a
    `scope`, only its VMs are judged and only their actions start; `confirm`
    may hold an action (a person did not confirm it), saying why.
    """
    clock = executor.clock
    deadline = clock.now() + timedelta(seconds=timeout)
    first = True
    within = scope or scopes.Scope()
    held: dict[tuple[str, str], str] = {}

    def hold(action: plan.Action) -> bool:
        why = within.holds(action)
        if why is None and confirm is not None:
            why = confirm(action)
        if why is not None:
            held[(action.plan, action.vm)] = why
        return why is not None

    while True:
        stopping = stop_requested()
        held.clear()
        stepped = executor.step(
            desired,
            revision,
            start=not stopping,
            hold=hold if scope is not None or confirm is not None else None,
            revision_made_at=revision_made_at,
        )
        built = scopes.scoped(stepped, within, held) if scope is not None or held else stepped
        if first:
            # Nothing at all can be seen: say so at once (exit 3), as a command
            # on one fabric always did, rather than wait out the timeout.
            executor.raise_if_blind()
            first = False
        if executor.write_error is not None:
            # Nothing more may start: say which file refused, and why (exit 3).
            raise executor.write_error
        after_step(built)
        if built.converged:
            return Outcome(built, converged=True, held=dict(held))
        if stopping and not executor.running:
            return Outcome(built, converged=False, interrupted=True, held=dict(held))
        if not stopping and not can_progress(built, executor):
            return Outcome(built, converged=False, held=dict(held))
        if clock.now() >= deadline:
            return Outcome(built, converged=False, timed_out=True, held=dict(held))
        clock.sleep(executor.settings.poll_interval)


def _pinned(pins: dict[str, str], action: plan.Action) -> tuple[tuple[str, str], ...]:
    """(name, id) of each VM `action` moves that the spec pins to one item of its fabric."""
    if not pins:
        return ()
    names = [action.vm, *(vm for group in action.plan_groups for vm in group)]
    return tuple((vm, pins[vm]) for vm in dict.fromkeys(names) if vm in pins)
