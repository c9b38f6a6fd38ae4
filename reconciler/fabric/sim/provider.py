"""The embedded simulated two-site fabric: drctl's default provider, and its fault injection.

`SimFabric` implements `fabric.base.Provider` over a SQLite database in
the state directory (`sim.store`), so a daemon and CLI calls share one fabric.
The CLI (`cli.simulator`) creates it with `init_fabric` and drives its faults
(site_down, partition, inject_failure, suspend_next, lag, resync_required,
move, set_raw_state and rename, see `sim.overrides`, ...) and plays the
operator in the portal (`start_by_hand`: a real job, checked like drctl's
own, that drctl's journal does not know); tests make the Provider calls
themselves fail (`inject_call_error`, see `sim.faults`); the executor and the
daemon only use the Provider methods, which name a VM as the fabric reports
it (the fault verbs use its inventory name).

Time comes from an injected clock: a job started at t with duration d is
finished by the first call that looks after t + d (observe, start, get_job,
list_jobs), as of t + d. The lifecycle model decides what is allowed when a
job starts (`lifecycle.check_operation`) and what the job did when it
finishes (`lifecycle.apply_effect`); as in the real fabric, a job is accepted
first and can fail later, leaving the VM as it was (or, for a planned
failover that fails after its shutdown step, with no copy running). A job
may suspend half-way, waiting for a person, until `resume`: it holds its VM
and makes no progress meanwhile.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType

from reconciler import errors
from reconciler.core import lifecycle
from reconciler.core.desired import EMBEDDED_FABRIC
from reconciler.core.state import (
    FailoverKind,
    Health,
    Job,
    JobState,
    Observed,
    Operation,
    ReplicationState,
    TestFailoverState,
)
from reconciler.fabric import base
from reconciler.fabric.config import FabricConfig
from reconciler.fabric.sim import faults, overrides, raw
from reconciler.fabric.sim import observe as sim_observe
from reconciler.fabric.sim import store as sim_store
from reconciler.fabric.sim import timeline as tl
from reconciler.fabric.sim.inventory import Inventory
from reconciler.fabric.sim.observe import iso, job_id
from reconciler.fabric.sim.store import JobRow, VMRow
from reconciler.kits.clock import Clock, WallClock

FLAVOUR = lifecycle.ASR_VMM
FAILOVERS = frozenset({Operation.PLANNED_FAILOVER, Operation.UNPLANNED_FAILOVER})

_EMPTY_ROW = VMRow(
    name="",
    active_site="",
    active_running=0,
    peer_running=0,
    protection="",
    replication="",
    last_failover=None,
    test_failover=TestFailoverState.NONE.value,
    job_id=None,
    sync_anchor=None,
    lag=0.0,
    resync_from=None,
    resync_until=None,
    writes_stopped_at=None,
    rp_latest=None,
    rp_oldest=None,
    written_until=None,
    size_gb=None,
)


def init_fabric(state_dir: Path, inventory: Inventory, clock: Clock | None = None) -> bool:
    """Create the fabric of `inventory` in `state_dir`; True if it replaced one.

    Every VM starts at its active site, protected in its direction with the
    initial sync done, or unprotected.
    """
    now = (clock or WallClock()).now().timestamp()
    anchor = tl.grid_floor(now, inventory.timings.replication_interval)
    rows = []
    for vm in inventory.vms:
        peer = inventory.sites[1] if vm.active_site == inventory.sites[0] else inventory.sites[0]
        if vm.replication is None:
            state = lifecycle.unprotected(vm.active_site, peer)
        else:
            state = lifecycle.protected(vm.active_site, peer)
        rows.append(
            _EMPTY_ROW._replace(
                name=vm.name,
                **tl.state_columns(state),
                sync_anchor=anchor if vm.replication else None,
                size_gb=vm.size_gb,
            )
        )
    store, existed = sim_store.Store.create(state_dir)
    try:
        with store.write() as db:
            store.reset(db, inventory.sites, inventory.timings, now)
            sim_store.insert_vms(db, rows, now)
    finally:
        store.close()
    return existed


# A file in the fabric's directory while `drctl fabric unreachable` holds: every
# Protocol call then fails as a network partition between drctl and the fabric
# would, while the fabric itself goes on (its jobs finish on time).
UNREACHABLE_MARK = "unreachable"


def open_provider(config: FabricConfig, clock: Clock) -> SimFabric:
    """The registry's entry point (`fabric.open_provider`)."""
    try:
        sim = SimFabric(config.data_dir, clock, name=config.name)
    except errors.TerminalError as exc:
        if config.embedded:
            raise
        raise errors.TerminalError(
            f"fabric '{config.name}' has no simulated fabric in {config.data_dir} yet: run "
            f"drctl fabric init --fabric {config.name} INVENTORY.yaml"
        ) from exc
    if config.sites and set(config.sites) != set(sim.sites):
        sim.close()
        raise errors.TerminalError(
            f"fabric '{config.name}' declares sites {', '.join(config.sites)} but its simulator "
            f"holds {', '.join(sim.sites)}: init it again with an inventory of the declared sites"
        )
    return sim


@dataclass(frozen=True)
class _CutKind:
    """A kind of cut a site can suffer: where the world keeps it, how it begins and ends."""

    now: Callable[[tl.World], Mapping[str, float]]
    begin: Callable[[sqlite3.Connection, str, float], None]
    end: Callable[[sqlite3.Connection, str, float], None]


_outages = _CutKind(lambda w: w.down_at, sim_store.start_outage, sim_store.end_outage)
_partitions = _CutKind(
    lambda w: w.partitioned_at, sim_store.start_partition, sim_store.end_partition
)


class SimFabric:
    """A simulated two-site fabric in `<state_dir>/fabric.db` (see `init_fabric`)."""

    # Each job keeps the intent id of its request, as ASR keeps a client request id.
    keeps_intent_ids = True

    def __init__(self, state_dir: Path, clock: Clock | None = None, name: str = "") -> None:
        self._clock = clock or WallClock()
        self._store = sim_store.Store.open(state_dir)
        self._dir = state_dir
        self.name = name
        with self._store.read() as db:
            self.sites = sim_store.sites(db)

    def _answer(self) -> None:
        """Fail as a partition would while `drctl fabric unreachable` holds."""
        if (self._dir / UNREACHABLE_MARK).exists():
            fabric = f" --fabric {self.name}" if self.name and self.name != EMBEDDED_FABRIC else ""
            raise errors.TransientError(
                f"the fabric does not answer (simulated; drctl fabric reachable{fabric} ends it)"
            )

    def set_reachable(self, reachable: bool) -> bool:
        """Cut or restore drctl's connection to the fabric; False if it already was so."""
        mark = self._dir / UNREACHABLE_MARK
        if mark.exists() != reachable:
            return False
        if reachable:
            mark.unlink()
        else:
            mark.touch()
        return True

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> SimFabric:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- the Provider Protocol ----------------------------------------------

    def observe(self) -> Observed:
        """Every site and VM now; `Observed.jobs` holds the jobs not over (running, suspended)."""
        self._answer()
        self._raise_injected("observe")
        t = self._now()
        self._finish_due(t)
        with self._store.read() as db:
            return sim_observe.build_observed(db, _world(db, t), sim_store.running_jobs(db))

    def start(self, request: base.Request) -> str:
        self._answer()
        self._raise_injected("start", request.vm)
        t = self._now()
        with self._store.write() as db:
            self._finish_due_in(db, t)
            # Named as the fabric reports it: a name two VMs report is refused.
            row = overrides.row_reporting(db, request.vm)
            return job_id(_start(db, _world(db, t), row, request))

    def get_job(self, job_id: str) -> Job:
        self._answer()
        self._raise_injected("get_job")
        number = _job_number(job_id)
        t = self._now()
        self._finish_due(t)
        with self._store.read() as db:
            found = sim_store.job_row(db, number)
            names = overrides.reported_names(db)
        if found is None:
            raise errors.TerminalError(
                f"no job {job_id} in this fabric: drctl fabric show lists every job"
            )
        return sim_observe.job(found, t, names)

    def list_jobs(self) -> list[Job]:
        self._answer()
        self._raise_injected("list_jobs")
        t = self._now()
        self._finish_due(t)
        with self._store.read() as db:
            rows = sim_store.jobs(db)
            names = overrides.reported_names(db)
        return [sim_observe.job(row, t, names) for row in rows]

    # --- fault injection (`drctl fabric ...`), not part of the Protocol --------

    def site_down(self, site: str) -> bool:
        """Disconnect `site`; False if it was already down."""
        return self._cut(site, True, _outages)

    def site_up(self, site: str) -> bool:
        """Reconnect `site`; False if it was connected."""
        return self._cut(site, False, _outages)

    def partition(self, site: str) -> bool:
        """Cut drctl off from `site`'s management plane; False if it already was.

        Unlike `site_down`, the site stays up: its VMs keep running and taking
        writes, and replication keeps shipping. No operation reaches the site
        and the power of every VM there reads Unknown until `heal`.
        """
        return self._cut(site, True, _partitions)

    def heal(self, site: str) -> bool:
        """End the partition of `site`; False if there was none."""
        return self._cut(site, False, _partitions)

    def _cut(self, site: str, cut: bool, kind: _CutKind) -> bool:
        """Begin (`cut`) or end an outage or a partition of `site`; False if nothing changes."""
        t = self._now()
        with self._store.write() as db:
            self._finish_due_in(db, t)
            world = _world(db, t)
            _check_site(world, site)
            if (site in kind.now(world)) == cut:
                return False
            (kind.begin if cut else kind.end)(db, site, t)
            return True

    def inject_failure(
        self, vm: str, operation: Operation, times: int = 1, *, after_shutdown: bool = False
    ) -> None:
        """Make the next `times` jobs of `operation` on `vm` fail.

        `after_shutdown`: a planned failover fails after its first step shut
        the source down, leaving no copy running (`lifecycle.failed_after_shutdown`).
        """
        if times < 1:
            raise errors.UsageError(f"--times must be at least 1, not {times}")
        if after_shutdown and operation is not Operation.PLANNED_FAILOVER:
            raise errors.UsageError(
                f"--after-shutdown is for PlannedFailover (the operation that shuts the "
                f"source down first), not {operation}: leave the flag out"
            )
        with self._store.write() as db:
            _vm_row(db, vm, usage=True)
            sim_store.set_failures(db, vm, operation.value, times, after_shutdown=after_shutdown)

    def suspend_next(self, vm: str, operation: Operation) -> None:
        """Make the next job of `operation` on `vm` suspend half-way, waiting for a person."""
        with self._store.write() as db:
            _vm_row(db, vm, usage=True)
            sim_store.set_suspensions(db, vm, operation.value, 1)

    def resume(self, job: str) -> Job:
        """A person completes what the suspended `job` waits for: it runs on (its rest of work)."""
        t = self._now()
        number = _job_number(job, usage=True)
        with self._store.write() as db:
            self._finish_due_in(db, t)
            found = sim_store.job_row(db, number)
            if found is None:
                raise errors.UsageError(
                    f"no job {job} in this fabric: drctl fabric show lists every job"
                )
            if found.state != JobState.SUSPENDED.value:
                raise errors.UsageError(
                    f"{job} is {found.state}, not Suspended: only a suspended job resumes "
                    "(drctl fabric show lists the jobs and their states)"
                )
            sim_store.resume_job(db, found, t)
            resumed = sim_store.job_row(db, number)
            names = overrides.reported_names(db)
        assert resumed is not None  # noqa: S101 (same transaction)
        return sim_observe.job(resumed, t, names)

    def start_by_hand(self, request: base.Request) -> str:
        """An operator starts `request` in the portal: a job drctl's journal does not know.

        Checked by the lifecycle like drctl's own calls; a refusal is a
        UsageError with the lifecycle's reason. It does not go through
        drctl's connection to the fabric: `unreachable` and injected call
        errors do not stop it.
        """
        t = self._now()
        with self._store.write() as db:
            self._finish_due_in(db, t)
            world = _world(db, t)
            if request.target_site is not None:
                _check_site(world, request.target_site)
            row = _vm_row(db, request.vm, usage=True)
            try:
                return job_id(_start(db, world, row, request))
            except errors.RejectedError as exc:
                raise errors.UsageError(str(exc)) from exc

    def inject_call_error(
        self,
        call: str,
        error: faults.ErrorKind,
        *,
        times: int = 1,
        vm: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        """Make the next `times` calls of Provider method `call` (`*`: any) raise `error`.

        The call does not reach the fabric: nothing changes, no job starts.
        `vm` narrows a fault of `start` to the requests for that VM.
        """
        faults.check_fault(call, error, times, retry_after)
        with self._store.write() as db:
            if vm is not None:
                _vm_row(db, vm, usage=True)
            sim_store.add_call_fault(db, call, error, times, vm, retry_after)

    def lag(self, vm: str, seconds: float) -> Health:
        """Keep replication of `vm` `seconds` behind (0 clears it); returns its health now."""
        if not seconds >= 0:
            raise errors.UsageError(f"lag must be 0 or more seconds, not {seconds}")
        t = self._now()
        with self._store.write() as db:
            self._finish_due_in(db, t)
            row = _vm_row(db, vm, usage=True)
            if seconds and row.sync_anchor is None:
                raise errors.UsageError(
                    f"{vm} does not replicate ({row.protection}): only a replicating VM can lag"
                )
            row = row._replace(lag=seconds)
            sim_store.save_vm(db, row)
            return tl.health(row, _world(db, t))

    def resync_required(self, vm: str, *, manual: bool = False) -> float | None:
        """Make replication of `vm` need a resync; returns in how many seconds it resyncs.

        `manual`: the fabric does not resync it by itself (None): replication
        stays ResyncRequired until a Resync operation ends.
        """
        t = self._now()
        with self._store.write() as db:
            self._finish_due_in(db, t)
            world = _world(db, t)
            row = _vm_row(db, vm, usage=True)
            _check_idle(row)
            state = tl.replication_state(row, world)
            if row.sync_anchor is None or state is not ReplicationState.REPLICATING:
                raise errors.UsageError(
                    f"{vm} is not replicating ({row.protection}, replication "
                    f"{state}): only a replicating VM can need a resync"
                )
            # Nothing ships from now until the resync ends (see
            # fabric/sim/timeline.py), so the last sync stays the one before now.
            seconds = None if manual else world.timings.full_copy(row.size_gb)
            sim_store.save_vm(
                db,
                row._replace(
                    replication=ReplicationState.RESYNC_REQUIRED.value,
                    resync_from=t,
                    resync_until=None if seconds is None else t + seconds,
                    sync_anchor=tl.replication_anchor(row, world),
                ),
            )
            return seconds

    def move(self, vm: str, site: str) -> None:
        """A manual failover behind drctl's back: `vm` runs at `site` only, replicating out."""
        t = self._now()
        with self._store.write() as db:
            self._finish_due_in(db, t)
            world = _world(db, t)
            _check_site(world, site)
            row = _vm_row(db, vm, usage=True)
            _check_idle(row)
            if row.active_site == site:
                raise errors.UsageError(
                    f"{vm} is already active at {site}: move it to {world.peer(site)}, or leave it"
                )
            state = replace(
                lifecycle.protected(site, world.peer(site)), last_failover=FailoverKind.PLANNED
            )
            sim_store.save_vm(
                db, row._replace(**tl.state_columns(state), **tl.replication_restarted(world))
            )
            # As in the real fabric, the operator's failover is a job in its
            # list, one that drctl's journal does not know.
            sim_store.insert_job(
                db,
                JobRow(
                    0,
                    vm,
                    Operation.PLANNED_FAILOVER.value,
                    JobState.SUCCEEDED.value,
                    site,
                    t,
                    t,
                    t,
                    None,
                    0.0,
                    None,
                    1,
                    None,
                    None,
                ),
            )

    def set_raw_state(self, vm: str, text: str | None, description: str | None = None) -> None:
        """Make `vm` report the raw protection state `text`, one drctl does not know
        (`raw.check_unknown`), with `description`; None: its own state again."""
        if text is not None:
            raw.check_unknown(text)
        with self._store.write() as db:
            _vm_row(db, vm, usage=True)
            overrides.set_raw_state(db, vm, text, description)

    def rename(self, vm: str, name: str) -> tuple[str, ...]:
        """An operator renames `vm` (its inventory name) in the fabric: it reports `name`,
        its id unchanged; its inventory name ends the rename. Returns the ids of every
        VM that reports `name` now (two or more: a duplicate name)."""
        with self._store.write() as db:
            _vm_row(db, vm, usage=True)
            overrides.set_reported_name(db, vm, name)
            return overrides.ids_reporting(db, name)

    # --- finishing jobs ---------------------------------------------------------

    def _now(self) -> float:
        return self._clock.now().timestamp()

    def _raise_injected(self, call: str, vm: str | None = None) -> None:
        # A read first: a fabric with no fault injected takes no write lock.
        with self._store.read() as db:
            if not sim_store.any_call_fault(db):
                return
        with self._store.write() as db:
            fault = sim_store.take_call_fault(db, call, vm)
        if fault is not None:
            raise faults.error_for(call, fault.error, fault.retry_after)

    def _finish_due(self, t: float) -> None:
        # A cheap read first: most observations find nothing due and must not
        # queue behind another process's write lock.
        with self._store.read() as db:
            due = sim_store.any_job_due(db, t)
        if due:
            with self._store.write() as db:
                self._finish_due_in(db, t)

    def _finish_due_in(self, db: sqlite3.Connection, t: float) -> None:
        for job in sim_store.due_jobs(db, t):
            _finish(db, job)


def _world(db: sqlite3.Connection, t: float) -> tl.World:
    return tl.World(
        t,
        sim_store.sites(db),
        sim_store.timings(db),
        sim_store.outages_at(db, t),
        sim_store.partitions_at(db, t),
    )


def _start(db: sqlite3.Connection, world: tl.World, row: VMRow, request: base.Request) -> int:
    """Check `request` against the model and record its job; return the job's number."""
    op = request.operation
    state = tl.vm_state(row, world)
    running = None
    if row.job_id is not None:
        job = sim_store.job_row(db, row.job_id)
        running = f"{job_id(row.job_id)} (?)" if job is None else sim_observe.busy_text(job)
    cond = lifecycle.Conditions(world.connected, tl.health(row, world), running)
    reason = lifecycle.check_operation(state, op, cond, request.target_site)
    if reason is not None:
        raise errors.RejectedError(f"{row.name}: {op} is not allowed: {reason}")
    point, loss, written = _data_at_start(row, world, op, request)
    injected = None
    failure = sim_store.take_failure(db, row.name, op.value)
    after_shutdown = failure is not None and failure.after_shutdown
    if after_shutdown:
        injected = (
            f"{op} of {row.name} failed after shutting down the copy at {row.active_site} "
            "(injected with drctl fabric fail --after-shutdown): no copy of the VM runs; "
            f"it is still active at {row.active_site} and protected"
        )
    elif failure is not None:
        injected = (
            f"{op} of {row.name} failed: the fabric reported an error (injected with "
            "drctl fabric fail); the VM is as it was before the job"
        )
    work = world.timings.duration(
        state, op, behind_seconds=tl.behind_seconds(row, world), size_gb=row.size_gb
    )
    # A job that suspends is due half-way, when it stops for a person (see _finish).
    suspends = sim_store.take_suspension(db, row.name, op.value)
    number = sim_store.insert_job(
        db,
        JobRow(
            id=0,
            vm=row.name,
            operation=op.value,
            state=JobState.RUNNING.value,
            target_site=lifecycle.resolve_target(state, op, request.target_site),
            started_at=world.t,
            due_at=world.t + (work / 2 if suspends else work),
            finished_at=None,
            error=None,
            data_loss=loss,
            recovery_point=point,
            source_stopped=int(request.shutdown_source and row.active_site in world.connected),
            injected_error=injected,
            written_until=written,
            duration=work,
            suspends=int(suspends),
            fails_after_shutdown=int(after_shutdown),
            intent_id=request.intent_id,
        ),
    )
    sim_store.save_vm(db, row._replace(job_id=number))
    return number


def _data_at_start(
    row: VMRow, world: tl.World, op: Operation, request: base.Request
) -> tuple[float | None, float | None, float | None]:
    """(recovery point the job boots, seconds of writes it loses, the source's last write).

    Decided when a failover starts: that is when the source stops taking
    writes (or stopped earlier) and the replica's newest point is chosen.
    """
    if op in FAILOVERS:
        written = tl.written_until(row, world)
        synced = tl.last_sync(row, world)
        assert synced is not None  # noqa: S101 (the model allows no failover without replication)
        # A planned failover ships what is left first: its replica holds every write.
        point = written if op is Operation.PLANNED_FAILOVER else synced
        return point, lifecycle.failover_data_loss(op, written, synced), written
    if op is Operation.APPLY_RECOVERY_POINT:
        points = tl.recovery_points(row, world)
        point = (
            points[0]
            if request.recovery_point is None
            else _pick_point(request.recovery_point, points, row.name)
        )
        written = point if row.written_until is None else row.written_until
        return point, max(0.0, written - point), written
    return None, None, None


def _finish(db: sqlite3.Connection, job: JobRow) -> None:
    """Finish `job` as of its due time: apply its effect, or fail it and change nothing.

    A job due to suspend stops there instead, holding its VM, until `resume`.
    """
    if job.suspends:
        sim_store.suspend_job(db, job.id, job.due_at)
        return
    world = _world(db, job.due_at)
    row = _vm_row(db, job.vm)
    op = Operation(job.operation)
    state = tl.vm_state(row, world)
    error = job.injected_error
    needed = lifecycle.required_sites(state, op, job.target_site)
    lost = sim_store.first_outage(db, needed, job.started_at, job.due_at)
    cut = None if lost else sim_store.first_partition(db, needed, job.started_at, job.due_at)
    if error is None and lost is not None:
        site, down_at = lost
        error = (
            f"{op} of {job.vm} failed: site {site} went down at {iso(down_at)} while "
            f"the job ran; the VM is as it was before the job; retry when {site} is back"
        )
    elif error is None and cut is not None:
        site, since = cut
        error = (
            f"{op} of {job.vm} failed: the management plane of site {site} stopped "
            f"answering at {iso(since)} while the job ran; the VM is as it was before "
            f"the job; retry when {site} answers again"
        )
    if error is not None:
        sim_store.end_job(db, job.id, JobState.FAILED.value, job.due_at, error)
        left = row._replace(job_id=None)
        if job.fails_after_shutdown and error == job.injected_error:
            # The shutdown was the job's first step: no writes since it started.
            stopped = job.started_at
            if row.writes_stopped_at is not None:
                stopped = min(stopped, row.writes_stopped_at)
            left = left._replace(
                **tl.state_columns(lifecycle.failed_after_shutdown(state)),
                writes_stopped_at=stopped,
            )
        sim_store.save_vm(db, left)
        return
    new = lifecycle.apply_effect(
        state, op, FLAVOUR, target=job.target_site, source_stopped=bool(job.source_stopped)
    )
    sim_store.save_vm(
        db,
        row._replace(
            **tl.state_columns(new), job_id=None, **tl.time_columns(row, world, op, new, job)
        ),
    )
    sim_store.end_job(db, job.id, JobState.SUCCEEDED.value, job.due_at, None)


def _vm_row(db: sqlite3.Connection, name: str, *, usage: bool = False) -> VMRow:
    found = sim_store.vm_row(db, name)
    if found is None:
        error = errors.UsageError if usage else errors.TerminalError
        raise error(f"no VM '{name}' in the simulated fabric: drctl fabric show lists its VMs")
    return found


def _check_site(world: tl.World, site: str) -> None:
    if site not in world.sites:
        raise errors.UsageError(
            f"no site '{site}' in the simulated fabric: its sites are {', '.join(world.sites)}"
        )


def _check_idle(row: VMRow) -> None:
    if row.job_id is not None:
        raise errors.UsageError(
            f"{row.name} has job {job_id(row.job_id)} running: wait for it to finish"
        )


def _job_number(text: str, *, usage: bool = False) -> int:
    prefix, _, digits = text.partition("-")
    if prefix != "job" or not digits.isdigit():
        error = errors.UsageError if usage else errors.TerminalError
        raise error(f"no job {text!r} in this fabric: job ids look like job-000042")
    return int(digits)


def _pick_point(text: str, points: tuple[float, ...], vm: str) -> float:
    """The recovery point named by its id or its ISO 8601 time, among those the VM keeps."""
    try:
        wanted: float | None = sim_observe.from_iso(text)
    except ValueError:
        wanted = None
    for point in points:
        if text == tl.point_id(point) or (wanted is not None and abs(point - wanted) < 1e-3):
            return point
    shown = ", ".join(f"{tl.point_id(p)} ({iso(p)})" for p in points) or "none"
    raise errors.RejectedError(f"{vm}: no recovery point {text!r}: the VM keeps {shown}")
