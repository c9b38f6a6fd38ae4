"""The daemon behind `drctl run`: watch the specs, reconcile, keep the last valid revision.

A watcher thread (gitops/watch.py, inotify) wakes the loop when a spec file or the
git HEAD changes; a resync interval wakes it anyway, so drift made outside git
is corrected. Each pass is level-triggered: read the revision (when something
changed), observe, plan, start what the plan allows; jobs in flight are
followed across passes by the executor. An invalid revision changes nothing:
the last valid one stays in force, and is kept in the state dir so that a
restarted daemon acts on it too. A state dir that takes no writes, or a
journal drctl refuses or waits for, stops nothing but the starts
(daemon/health.py): the daemon goes on by itself once it can journal again.
Waiting for the lock is daemon/leader.py; with `--lock etcd://...` it is
one replica of several (daemon/replica.py): it leads or follows, and a
follower's pass observes and plans without starting anything or writing the
journal. What each pass tells (its log lines, the outcome of a revision,
git notes) is daemon/progress.py. With `--require-signed-commits`, a
revision whose commits git does not verify is kept out like an invalid one
(daemon/trust.py). After each pass it publishes what it knows to the status
page (`feed`, ui/status_feed.py), which makes the page off this thread.
Called by `drctl run` (cli).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import os
import signal
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from types import FrameType

from reconciler.core import plan
from reconciler.core.desired import DesiredState
from reconciler.daemon import (
    admit,
    adoption,
    health,
    in_force,
    leader,
    probes,
    progress,
    replica,
    trust,
)
from reconciler.daemon.logs import log
from reconciler.engine import (
    etcd_gateway,
    execute,
    fabrics,
    journal,
    journal_backend,
    state_check,
    status,
)
from reconciler.engine import metrics as metrics_
from reconciler.engine import state_dir as layout
from reconciler.engine.lease import flock
from reconciler.errors import (
    EXIT_RUNTIME,
    GitError,
    LeadershipLostError,
    LockLostError,
    SpecError,
    StateDirError,
    StateFileError,
    WatchError,
)
from reconciler.fabric import base
from reconciler.gitops import revision, signature, spec_cache, specdir, watch
from reconciler.kits import clock as clocks
from reconciler.ui import status_feed, status_page, status_table

# The names `drctl run` (cli) has always used.
OnRevision = progress.OnRevision
note_outcome = progress.note_outcome

# After a change that leaves the specs dirty, wait this long for the commit
# (or the end of a pull) to land before acting on the dirty files.
DIRTY_GRACE = timedelta(milliseconds=150)
# How often to look again while something is pending that time alone resolves.
PENDING_POLL = 1.0
# How often to look again while the state dir or the journal cannot be used.
STATE_RETRY = 1.0
# /healthz says the loop stalled once no pass ended for this long (or 4 resyncs).
STALLED_AFTER = 120.0
# How many of the actions it saw lately the status page shows.
RECENT_ACTIONS = 20


@dataclasses.dataclass(frozen=True)
class Result:
    """How a pass ended and when to requeue it.

    `outcome` is the `drctl_reconcile_total` result, None when no pass was made.
    """

    outcome: str | None
    requeue_after: float


@dataclasses.dataclass(frozen=True)
class Config:
    specs_dir: Path
    state_dir: Path
    resync: float = 30.0
    poll_interval: float = 0.1
    settings: execute.Settings = dataclasses.field(default_factory=execute.Settings)
    watch: bool = True  # False: changes are seen only at each resync (no inotify)
    journal_busy_timeout: float = journal.BUSY_TIMEOUT
    # `--lock etcd://...`: one replica of several on an etcd lease, the journal in etcd.
    lock: etcd_gateway.Target | None = None
    lease_ttl: float = 15.0
    identity: str = ""
    # `--adopt-safely`: the first revision that would move a VM waits for a later commit.
    adopt_safely: bool = False
    # `--require-signed-commits`: only revisions git verifies act (daemon/trust.py).
    signed: signature.Policy | None = None


class Daemon:
    def __init__(
        self,
        config: Config,
        provider: base.Provider | fabrics.Fabrics,
        clock: clocks.Clock,
        metrics: metrics_.Metrics | None = None,
        on_revision: OnRevision | None = None,
    ) -> None:
        self.config = config
        self.provider = provider
        self.clock = clock
        self.metrics = metrics or metrics_.Metrics()
        self.stop = threading.Event()
        self.wake = threading.Event()
        self.in_force: in_force.InForce | None = None
        self.spec_error: SpecError | None = None
        # Each spec file's validated documents by content: a commit re-parses only its files.
        self.specs = spec_cache.SpecCache()
        self.gate = admit.Gate()  # refuses a revision that would orphan moves in flight
        self.adoption = adoption.Adoption(config.state_dir) if config.adopt_safely else None
        # Keeps out a revision whose commits are not signed as required (None: not required).
        self.trust = (
            None
            if config.signed is None
            else trust.Trust(config.specs_dir, config.signed, self.metrics)
        )
        self.git_error: str | None = None  # why the revision could not be read, at the last look
        self.revision_seen: str | None = None
        self.last_change_at: datetime | None = None
        self._changed = True
        self._pass_requested = False  # SIGUSR1 came (`request_pass`), not yet said
        self._executor: execute.Executor | None = None
        self._journal: journal_backend.Backend | None = None
        self._lease: flock.Lease | None = None  # the fabric lock, while `run` holds it
        self.replica: replica.Replica | None = None
        opener: journal_backend.Opener | None = None
        if config.lock is not None:
            self.replica = replica.Replica(
                config.lock, config.lease_ttl, config.identity, self.metrics, self.wake
            )
            opener = self.replica.leader_journal
        self.health = health.StateHealth(
            config.state_dir, self.metrics, clock, config.journal_busy_timeout, opener
        )
        # What each pass changed, told once (`progress`).
        self.progress = progress.Progress(clock, self.metrics, self.health, on_revision)
        self._fabrics: fabrics.Fabrics | None = None  # a lone provider, as a follower uses it
        self._unsaved = False  # the revision in force is not kept in the state dir yet
        self._journal_checked = False  # whether a new journal was checked for a lost one
        self.vitals = probes.Vitals()  # what /healthz and /readyz answer from
        self.feed = status_feed.Feed()  # what the status page shows, after each pass
        # The last plan, its revision, and each site's connection at that look.
        self._planned: tuple[plan.Plan, str, tuple[status_table.SiteState, ...]] | None = None
        self._recent: collections.deque[execute.Event] = collections.deque(maxlen=RECENT_ACTIONS)

    # --- the loop ------------------------------------------------------------

    def run(self) -> int:
        """Reconcile until asked to stop; hold the fabric lock (or campaign) throughout."""
        if self.replica is None:
            held = leader.hold_lock(
                self.config.state_dir, self.stop, self.health, self.metrics, STATE_RETRY
            )
            if held is None:
                log.info("stopped while waiting for the lock; nothing was started")
                return 0
            stack, self._lease = held
        else:
            stack = contextlib.ExitStack()
            stack.enter_context(self.replica.campaigning())
        with stack:
            self.prepare()
            self.vitals.started = True
            watcher = threading.Thread(target=self._watch, name="drctl-watch", daemon=True)
            if self.config.watch:
                watcher.start()
            next_resync = self.clock.now()
            try:
                while not self.stop.is_set():
                    now = self.clock.now()
                    if now >= next_resync:
                        self._changed = True
                        next_resync = now + timedelta(seconds=self.config.resync)
                    wait = self._pass_as_leader_or_follower()
                    wait = min(wait, max(0.0, (next_resync - self.clock.now()).total_seconds()))
                    if self.wake.wait(timeout=wait):
                        self.wake.clear()
            except LockLostError as exc:
                # Another drctl may hold the lock of the directory now at the
                # path: acting on would make two actors on one fabric.
                log.error("%s", exc, extra={"event": "lock_lost", "error": str(exc)})
                return EXIT_RUNTIME
            finally:
                self.stop.set()
                self.metrics.set_leader(False)
                self._write_daemon_file(running=False)
                self.close()
                if watcher.is_alive():
                    watcher.join(timeout=2)
        log.info("stopped; jobs still running in the fabric were left running")
        return 0

    def prepare(self) -> None:
        """Pick up what a previous daemon left: open journal entries, the revision in force.

        A replica opens its executor when it leads (`_pass_as_leader_or_follower`).
        """
        self._restore_in_force()
        if self.replica is None:
            self._open_executor()

    def _pass_as_leader_or_follower(self) -> float:
        """One pass; a replica that lost the lease drops its executor and follows."""
        if self.replica is not None and not self.replica.leading and self._executor is not None:
            self._step_down()
        try:
            return self.reconcile_once()
        except LeadershipLostError as exc:
            if self.replica is None:
                raise
            log.warning("%s", exc, extra={"event": "lease_lost", "error": str(exc)})
            self._step_down()
            return 0.0

    def _step_down(self) -> None:
        """Stop acting: the jobs run on in the fabric; the next leader follows them."""
        self.close()
        self.progress.recorded.clear()

    def _open_executor(self) -> bool:
        """Open the journal and the executor on it; False (said) while the journal cannot be."""
        self._journal = self.health.open_journal()
        if self._journal is None:
            return False
        self._journal_checked = False
        self._executor = execute.Executor(
            self.provider,
            self._journal,
            self.clock,
            self.config.settings,
            on_event=self._event,
            check_lock=self._check_lock(),
            on_retired=progress.tell_retired,
        )
        if self._executor.write_error is not None:
            self.health.trouble(self._executor.write_error)
        # A revision that came while the journal could not be used was not
        # weighed (`_read_revision`): look at the specs again now.
        self._changed = True
        return True

    def _check_lock(self) -> Callable[[], None] | None:
        if self.replica is not None:
            return self.replica.check
        return self._lease.check if self._lease is not None else None

    def _follow(self, force: in_force.InForce) -> Result:
        """A follower's pass: observe and plan from the shared journal; start and write nothing."""
        assert self.replica is not None  # noqa: S101 (only replicas follow)
        try:
            history = self.replica.reader()
            self.provider_fabrics.use(force.desired)
            observed = self.provider_fabrics.observe(force.desired.fabrics_in_use())
            built = execute.plan_observed(
                history,
                observed,
                force.desired,
                force.revision,
                self.clock.now(),
                self.config.settings,
                force.made_at,
            )
        except StateDirError as exc:
            self.health.trouble(exc)
            return Result(metrics_.RECONCILE_ERROR, STATE_RETRY)
        except Exception:
            log.exception("follower pass failed; retrying")  # the same broad catch, following
            return Result(metrics_.RECONCILE_ERROR, min(5.0, self.config.resync))
        self.metrics.update_from_plan(built, fabrics.merge(observed.values()))
        self._planned = (
            built,
            force.revision,
            status_table.site_states(observed, force.desired),
        )
        # Followers look again often: the jobs the leader follows move the VMs.
        return Result(metrics_.RECONCILE_SUCCESS, min(PENDING_POLL, self.config.resync))

    @property
    def provider_fabrics(self) -> fabrics.Fabrics:
        if isinstance(self.provider, fabrics.Fabrics):
            return self.provider
        if self._fabrics is None:
            self._fabrics = fabrics.Fabrics.of(self.provider, self.config.state_dir)
        return self._fabrics

    def close(self) -> None:
        """Close the journal: its WAL is checkpointed into journal.db (the loop's end does it)."""
        self.health.forget_journal()
        self._executor = self._journal = None

    def request_stop(self, _signum: int = 0, _frame: FrameType | None = None) -> None:
        """SIGTERM/SIGINT: start nothing more; the loop ends after this pass."""
        self.stop.set()
        self.wake.set()

    def request_pass(self, _signum: int = 0, _frame: FrameType | None = None) -> None:
        """SIGUSR1 (`drctl reconcile`): a pass now, the revision read again, as at a resync.

        Only wakes the loop: a pass under way ends first, and what the pass
        does is what any pass would.
        """
        # Said at the pass, not here: a handler that logs could interleave with a log line
        # the loop was writing when the signal came.
        self._pass_requested = True
        self._changed = True
        self.wake.set()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)
        signal.signal(signal.SIGUSR1, self.request_pass)

    def reconcile_once(self) -> float:
        """One pass; returns how long the loop may sleep before the next one."""
        started = time.monotonic()
        if self._pass_requested:
            self._pass_requested = False
            log.info(
                "a pass was requested (SIGUSR1: drctl reconcile)",
                extra={"event": "pass_requested"},
            )
        result = self._reconcile()
        if result.outcome is not None:
            self.metrics.record_reconcile(result.outcome, time.monotonic() - started)
            said = self._write_daemon_file(running=True)
            self._publish_page(said)
        self._tell_vitals()
        return result.requeue_after

    def _tell_vitals(self) -> None:
        """What the probes answer from, after each pass (`daemon.probes`)."""
        v = self.vitals
        v.last_pass = time.monotonic()
        v.revision_in_force = self.in_force.revision if self.in_force else None
        if self.spec_error is not None and self.spec_error.problems:
            v.refused = str(self.spec_error.problems[0])
        else:
            v.refused = self.git_error
        v.state_problem = self.health.problem
        observed = self._executor.observed if self._executor is not None else {}
        lost = [o.unreachable for o in observed.values() if o.unreachable is not None]
        v.blind = "; ".join(sorted(set(lost))) if observed and len(lost) == len(observed) else None
        if self.replica is None:
            v.role = "the only daemon on its state dir"
        else:
            v.role = "leader" if self.replica.leading else "standby replica"

    def healthz(self) -> tuple[int, str]:
        """/healthz: 503 only when the loop stalled (`daemon.probes`)."""
        stalled_after = max(STALLED_AFTER, 4 * self.config.resync)
        return probes.healthz(self.vitals, time.monotonic(), stalled_after)

    def readyz(self) -> tuple[int, str]:
        """/readyz: a revision in force, the state dir usable, a fabric answering."""
        if not self.vitals.started:
            # Before the first pass (the lock, or a state dir it cannot make): live.
            self.vitals.state_problem = self.health.problem
        return probes.readyz(self.vitals)

    def _reconcile(self) -> Result:
        """The pass as a story: read the revision, act on the one in force, say when to look again.

        Each step either succeeds or records why not and returns, like Flux's
        Reconcile: a bad spec waits for the files to change (the revision in
        force stays), a failure of the fabric or the journal is retried soon,
        and what the plan waits for decides the sleep.
        """
        if self._changed:
            if self._dirty_too_recent():
                return Result(None, DIRTY_GRACE.total_seconds())  # a commit or pull half-way
            self._read_revision()
        if self.in_force is None:
            held = self.adoption is not None and self._kept_out() is not None
            outcome = metrics_.RECONCILE_SUCCESS if held else metrics_.RECONCILE_INVALID_SPEC
            return Result(outcome, self.config.resync)
        if self.replica is not None and not self.replica.leading:
            return self._follow(self.in_force)
        if self._executor is None and not self._open_executor():
            return Result(metrics_.RECONCILE_ERROR, STATE_RETRY)  # the journal: said why
        assert self._executor is not None  # noqa: S101 (just opened)
        # Intent before call: nothing starts until the state dir takes writes again.
        may_start = self.health.may_start()
        if may_start and self._unsaved:
            self._save_in_force()
        try:
            if not self._journal_checked:  # before this daemon starts any job itself
                self._journal_checked = True
                fabrics_in_use = self.in_force.desired.fabrics_in_use()
                self.health.warn_if_lost(self._executor.fabrics, fabrics_in_use)
            built = self._executor.step(
                self.in_force.desired,
                self.in_force.revision,
                start=not self.stop.is_set() and may_start,
                hold=self._held,
                revision_made_at=self.in_force.made_at,
            )
            self.progress.after_pass(built, self.in_force, self._executor, self._journal)
            sites = status_table.site_states(self._executor.observed, self.in_force.desired)
            self._planned = (built, self.in_force.revision, sites)
        except LockLostError:
            raise  # not a failed pass: this daemon must stop acting (`run`)
        except StateDirError as exc:
            self.health.trouble(exc)
            if isinstance(exc, StateFileError):  # damaged while open: checked again
                self.close()
            return Result(metrics_.RECONCILE_ERROR, STATE_RETRY)
        except Exception:
            # The one broad catch (style.md): a provider or journal failure must
            # not kill the daemon; log, count, and try again on the next pass.
            log.exception("reconcile pass failed; retrying")
            return Result(metrics_.RECONCILE_ERROR, min(5.0, self.config.resync))
        if self._executor.write_error is not None:
            self.health.trouble(self._executor.write_error)
        if self._executor.last_observed is not None:
            self.metrics.update_from_plan(built, self._executor.last_observed)
        self.metrics.set_drills(self._executor.journal.drills())
        if self.progress.tell_lost_fabrics(self._executor.observed):
            # A fabric in use could not be observed: the pass did not do its
            # job for its plans, and reconcile alerts must say so.
            return Result(metrics_.RECONCILE_ERROR, self._next_wait(built))
        if self.health.problem is not None:  # nothing could start: likewise
            return Result(metrics_.RECONCILE_ERROR, min(STATE_RETRY, self._next_wait(built)))
        outcome = metrics_.RECONCILE_INVALID_SPEC if self.spec_error else metrics_.RECONCILE_SUCCESS
        return Result(outcome, self._next_wait(built))

    def _read_revision(self) -> None:
        """Read the specs at the revision in the work tree; git trouble keeps the one in force."""
        self._changed = False
        try:
            self._read_specs()
        except GitError as exc:
            # Never a content hash instead (git.py): retried at the next change
            # or resync; the revision in force stays, and status and metrics say so.
            self.git_error = str(exc)
            log.error(
                "cannot read the spec revision: %s; revision in force: %s",
                exc,
                self.in_force.revision if self.in_force else "none",
                extra={"event": "git_error", "error": str(exc)},
            )
        else:
            if self.git_error is not None:
                log.info("the spec revision can be read again", extra={"event": "git_readable"})
            self.git_error = None
        self._publish_revision()

    # --- desired state -------------------------------------------------------

    def _watch(self) -> None:
        try:
            for _batch in watch.spec_changes(watch.targets_of(self.config.specs_dir), self.stop):
                self.notice_change()
        except WatchError as exc:
            log.error("%s; changes are now picked up every %ss", exc, self.config.resync)

    def notice_change(self) -> None:
        """Something under the specs (or the git HEAD) changed: read the specs next pass."""
        self.last_change_at = self.clock.now()
        self._changed = True
        self.wake.set()

    def _dirty_too_recent(self) -> bool:
        """Right after a change, dirty files are often a pull or commit half-way."""
        if self.last_change_at is None:
            return False
        young = self.clock.now() - self.last_change_at < DIRTY_GRACE
        try:
            return young and revision.spec_revision(self.config.specs_dir).dirty
        except GitError:
            return False  # reading the revision says so, next

    def _read_specs(self) -> None:
        rev = revision.spec_revision(self.config.specs_dir)
        # A refused revision is weighed again at each look: it goes in force
        # by itself once the moves it would have orphaned are over.
        known = self.in_force is not None or self.spec_error
        # So is a revision not signed as required: a signer trusted since lets it in.
        untrusted = self.trust is not None and self.trust.untrusted is not None
        if rev.id == self.revision_seen and self.gate.refused is None and known and not untrusted:
            return
        if rev.id != self.revision_seen:
            log.info(
                "revision seen: %s", rev.id, extra={"event": "revision_seen", "revision": rev.id}
            )
        self.revision_seen = rev.id
        trusted = self.trust is None or self.trust.judge(rev, self.in_force)
        try:
            desired = in_force.load(self.config.specs_dir, self.specs)
            if self.in_force is None:
                # Nothing to act on yet: an empty or wrong directory is not a revision to
                # put in force (with one in force, `daemon.change` refuses it, saying so).
                specdir.require_plans(self.config.specs_dir, desired)
        except SpecError as exc:
            self.gate.refused = None
            self._reject(rev.id, exc)
            return
        self.spec_error = None
        if self.in_force is None or self.in_force.revision != rev.id:
            if not trusted:
                assert self.trust is not None  # noqa: S101 (only a trust judges)
                self.trust.keep_out(rev.id, desired, self.in_force)
                self._publish_spec()  # valid, and not signed: the revision in force stays
                return
            executor, history = self._executor, self._journal
            following = self.replica is not None and not self.replica.leading
            if following:
                pass  # a follower acts on nothing: the leader weighs what a revision orphans
            elif self.in_force is not None and (executor is None or history is None):
                # The journal cannot be used (health says why): what a new revision
                # would orphan cannot be weighed, so it waits for the next look.
                self.revision_seen = None
                return
            if (
                self.in_force is not None
                and executor is not None
                and history is not None
                and self.gate.refuses(rev.id, self.in_force, desired, executor.fabrics, history)
            ):
                self._publish_spec()  # valid, and refused: the revision in force stays
                return
            if not following and self._held_back(rev, desired):
                self._publish_spec()  # --adopt-safely: the revision in force stays
                return
            self._adopt(rev.id, desired, rev.made_at)
            self._save_in_force()
        else:
            self.gate.refused = None  # back at the revision in force
            if self.adoption is not None:
                self.adoption.waiting = None
        self._publish_spec()

    def _held_back(self, rev: revision.Revision, desired: DesiredState) -> bool:
        """--adopt-safely: whether `rev` waits for a later commit (`daemon.adoption`).

        Planned against a fresh observation of the fabrics `desired` uses, with
        drctl's journal, as the executor would plan it; a revision that cannot be
        weighed (no journal, a fabric that does not answer) is read again at the next look.
        """
        if self.adoption is None:
            return False
        said = self.adoption.answer(rev)
        if said is not None:
            return said
        executor, history = self._executor, self._journal
        if executor is None or history is None:
            self.revision_seen = None
            return True
        executor.fabrics.use(desired)
        observed = executor.fabrics.observe(desired.fabrics_in_use())
        built = execute.plan_observed(
            history, observed, desired, rev.id, self.clock.now(), self.config.settings, rev.made_at
        )
        held = self.adoption.weigh(rev, built, observed, self.clock.now())
        if self.adoption.waiting is not None:
            self.revision_seen = None  # weighed again at the next look
        return held

    def _kept_out(self) -> tuple[str, list[str]] | None:
        """The newest valid revision kept out of force and why: refused, or held back."""
        if self.gate.refused is not None:
            return self.gate.refused
        return None if self.adoption is None else self.adoption.refusal

    def _publish_spec(self) -> None:
        force = self.in_force
        self.metrics.set_spec(
            self.spec_error is None,
            force.revision if force else None,
            force.seen_at.timestamp() if force else None,
        )

    def _publish_revision(self) -> None:
        self.metrics.set_revision(
            refused=self._kept_out() is not None, readable=self.git_error is None
        )

    def _reject(self, rev: str, exc: SpecError) -> None:
        """An invalid revision: say what is wrong; the revision in force stays."""
        self.spec_error = exc
        self._publish_spec()
        kept = self.in_force.revision if self.in_force else "none"
        for problem in exc.problems:
            log.error(
                "invalid spec: %s",
                problem,
                extra={"event": "spec_invalid", "revision": rev, "problem": str(problem)},
            )
        log.warning(
            "revision %s is invalid: nothing changes; revision in force: %s",
            rev,
            kept,
            extra={"event": "spec_invalid", "revision": rev, "in_force": kept},
        )

    def _adopt(self, rev: str, desired: DesiredState, made_at: datetime | None) -> None:
        previous = self.in_force
        now = self.clock.now()
        self.in_force = in_force.InForce(rev, desired, now, made_at)
        if previous is not None:
            # A plan that was still moving keeps its start: its RTO runs on.
            self.in_force.moving_since = {
                p: t
                for p, t in previous.moving_since.items()
                if any(pl.name == p for pl in desired.plans)
            }
        observed = self._executor.last_observed if self._executor else None
        for plan_spec in desired.plans:
            admit.settle(self.in_force, previous, plan_spec, observed, now)
            if plan_spec.name in self.in_force.moving_since:
                continue
            if in_force.moves(plan_spec, observed, previous.desired if previous else None):
                self.in_force.moving_since[plan_spec.name] = now
        self.progress.recorded.clear()  # each VM's convergence is recorded under each revision
        log.info(
            "revision in force: %s", rev, extra={"event": "revision_in_force", "revision": rev}
        )

    def _save_in_force(self) -> None:
        """Keep the revision in force in the state dir; while it cannot, try again later."""
        assert self.in_force is not None  # noqa: S101
        try:
            in_force.save(self.config.state_dir, self.config.specs_dir, self.in_force)
        except OSError as exc:
            self._unsaved = True
            self.health.trouble(
                state_check.refusal(layout.in_force_dir(self.config.state_dir), exc)
            )
            return
        self._unsaved = False

    def _restore_in_force(self) -> None:
        restored, unreadable = in_force.restore(self.config.state_dir, self.clock.now())
        if unreadable is not None:
            self.health.warnings.append(unreadable)
        if restored is not None:
            self.in_force = restored
            self._publish_spec()

    # --- after each pass ------------------------------------------------------

    def _held(self, action: plan.Action) -> bool:
        """Hold a plan's actions until its settle window has passed (`admit.settle`)."""
        assert self.in_force is not None  # noqa: S101
        since = self.in_force.settling_since.get(action.plan)
        if since is None:
            return False
        settle = next(
            (p.settle_seconds for p in self.in_force.desired.plans if p.name == action.plan), 0.0
        )
        return settle > 0 and self.clock.now() < since + timedelta(seconds=settle)

    def _next_wait(self, built: plan.Plan) -> float:
        """How long the loop may sleep: what the plan waits for says (`plan.pending`)."""
        assert self._executor is not None  # noqa: S101
        if self._executor.running:
            return self.config.poll_interval
        if built.converged:
            return self.config.resync
        now = self.clock.now()
        wait = plan.pending(built).wake_in(
            now, self.config.poll_interval, PENDING_POLL, self.config.resync
        )
        # The executor's own backoffs (a job or list_jobs asked again later).
        retry_at = self._executor.next_retry_at
        if retry_at is not None:
            wait = min(wait, max(0.0, (retry_at - now).total_seconds()))
        return wait

    def _event(self, event: execute.Event) -> None:
        progress.tell_event(event)
        self.metrics.record_event(event)
        self._recent.append(event)

    def _publish_page(self, said: status.DaemonStatus) -> None:
        """Hand the status page this pass: references only, rendered when someone looks."""
        if self._planned is None:
            self.feed.publish(status_page.Snapshot(said, recent=tuple(self._recent)))
            return
        built, rev, sites = self._planned
        self.feed.publish(status_page.Snapshot(said, built, rev, tuple(self._recent), sites))

    def _write_daemon_file(self, *, running: bool) -> status.DaemonStatus:
        """What `drctl status` shows about a running daemon; returns it."""
        said = status.DaemonStatus(
            pid=os.getpid(),
            running=running,
            revision_in_force=self.in_force.revision if self.in_force else None,
            revision_seen=self.revision_seen,
            spec_valid=self.spec_error is None,
            spec_errors=tuple(str(p) for p in self.spec_error.problems) if self.spec_error else (),
            refused=self._kept_out(),
            revision_error=self.git_error,
            updated_at=self.clock.now(),
            state_problem=self.health.problem,
            state_warnings=tuple(self.health.warnings),
            replica=None
            if self.replica is None
            else self.replica.publish(self.in_force.revision if self.in_force else None),
            untrusted=self.trust.untrusted if self.trust is not None else None,
            max_failovers_per_revision=self.config.settings.max_failovers_per_revision,
        )
        try:
            status.write_status(self.config.state_dir, said)
        except OSError as exc:
            path = layout.daemon_status_path(self.config.state_dir)
            self.health.trouble(state_check.refusal(path, exc))
        return said
