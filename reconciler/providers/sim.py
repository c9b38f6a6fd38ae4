"""The embedded simulated two-site fabric: drctl's default provider, and its fault injection.

`SimFabric` implements `providers.base.Provider` over a SQLite database in
the state directory (`sim_store`), so a daemon and CLI calls share one fabric.
The CLI (`fabric_cli`) creates it with `init_fabric` and drives its faults
(site_down, inject_failure, lag, move, ...); the executor and the daemon only
use the Provider methods.

Time comes from an injected clock: a job started at t with duration d is
finished by the first call that looks after t + d (observe, start, get_job,
list_jobs), and finishes as of t + d. The lifecycle model decides what is
allowed when a job starts (`lifecycle.check_operation`) and what the job did
when it finishes (`lifecycle.apply_effect`); as in the real fabric, a job is
accepted first and can fail later, leaving the VM as it was.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reconciler import errors, lifecycle
from reconciler.clock import Clock, WallClock
from reconciler.providers import base, sim_observe, sim_store
from reconciler.providers import sim_timeline as tl
from reconciler.providers.inventory import Inventory
from reconciler.state import (
    FailoverKind,
    Health,
    Job,
    JobState,
    Observed,
    Operation,
    ProtectionState,
    ReplicationState,
    TestFailoverState,
)

FLAVOUR = lifecycle.ASR_VMM

_JOB_COLUMNS = ("id, vm, operation, state, target_site, started_at, due_at, finished_at, error, "
                "data_loss, recovery_point, source_stopped, injected_error, written_until")
# Built from a constant column list, never from input.
_SELECT_JOBS = f"SELECT {_JOB_COLUMNS} FROM jobs "  # noqa: S608


@dataclass(frozen=True, slots=True)
class _JobRow:
    id: int
    vm: str
    operation: str
    state: str
    target_site: str | None
    started_at: float
    due_at: float
    finished_at: float | None
    error: str | None
    data_loss: float | None
    recovery_point: float | None
    source_stopped: int
    injected_error: str | None
    written_until: float | None


def init_fabric(state_dir: Path, inventory: Inventory, clock: Clock | None = None) -> bool:
    """Create the fabric of `inventory` in `state_dir`; True if it replaced one."""
    now = (clock or WallClock()).now().timestamp()
    anchor = tl.grid_floor(now, inventory.timings.replication_interval)
    rows = []
    for vm in inventory.vms:
        peer = inventory.sites[1] if vm.active_site == inventory.sites[0] else inventory.sites[0]
        if vm.replication is None:
            state = lifecycle.unprotected(vm.active_site, peer)
        else:
            state = lifecycle.protected(vm.active_site, peer)
        rows.append(_EMPTY_ROW._replace(name=vm.name, **tl.state_columns(state),
                                        sync_anchor=anchor if vm.replication else None))
    store, existed = sim_store.Store.create(state_dir)
    try:
        with store.write() as db:
            store.reset(db, inventory.sites, inventory.timings, now)
            sim_store.insert_vms(db, rows)
    finally:
        store.close()
    return existed


_EMPTY_ROW = sim_store.VMRow(
    name="", active_site="", active_running=0, peer_running=0, protection="", replication="",
    last_failover=None, test_failover=TestFailoverState.NONE.value, job_id=None,
    sync_anchor=None, lag=0.0, resync_from=None, resync_until=None, writes_stopped_at=None,
    rp_latest=None, rp_oldest=None, written_until=None)


def job_id_text(number: int) -> str:
    return f"job-{number:06d}"


class SimFabric:
    """A simulated two-site fabric in `<state_dir>/fabric.db` (see `init_fabric`)."""

    def __init__(self, state_dir: Path, clock: Clock | None = None) -> None:
        self._clock = clock or WallClock()
        self._store = sim_store.Store.open(state_dir)

    def close(self) -> None:
        self._store.close()

    # --- the Provider Protocol ----------------------------------------------

    def observe(self) -> Observed:
        t = self._now()
        self._finish_due(t)
        with self._store.read() as db:
            world = self._world(db, t)
            jobs = [self._job(_JobRow(*r), t) for r in db.execute(
                _SELECT_JOBS + "WHERE state = 'Running' ORDER BY id")]
            return sim_observe.build_observed(db, world, jobs, FLAVOUR)

    def start(self, request: base.Request) -> str:
        t = self._now()
        with self._store.write() as db:
            self._finish_due_in(db, t)
            world = self._world(db, t)
            row = self._vm_row(db, request.vm)
            return job_id_text(self._start(db, world, row, request))

    def get_job(self, job_id: str) -> Job:
        number = _job_number(job_id)
        t = self._now()
        self._finish_due(t)
        with self._store.read() as db:
            found = db.execute(_SELECT_JOBS + "WHERE id = ?",
                               (number,)).fetchone()
        if found is None:
            raise errors.TerminalError(f"no job {job_id} in this fabric: drctl fabric show "
                                       "lists every job")
        return self._job(_JobRow(*found), t)

    def list_jobs(self) -> list[Job]:
        t = self._now()
        self._finish_due(t)
        with self._store.read() as db:
            rows = db.execute(_SELECT_JOBS + "ORDER BY id").fetchall()
        return [self._job(_JobRow(*r), t) for r in rows]

    # --- fault injection (`drctl fabric ...`), not part of the Protocol --------

    def site_down(self, site: str) -> bool:
        """Disconnect `site`; False if it was already down."""
        t = self._now()
        with self._store.write() as db:
            self._finish_due_in(db, t)
            world = self._world(db, t)
            _check_site(world, site)
            if site in world.down_at:
                return False
            db.execute("INSERT INTO outages (site, down_at) VALUES (?, ?)", (site, t))
            return True

    def site_up(self, site: str) -> bool:
        """Reconnect `site`; False if it was connected."""
        t = self._now()
        with self._store.write() as db:
            self._finish_due_in(db, t)
            world = self._world(db, t)
            _check_site(world, site)
            if site not in world.down_at:
                return False
            db.execute("UPDATE outages SET up_at = ? WHERE site = ? AND up_at IS NULL", (t, site))
            return True

    def inject_failure(self, vm: str, operation: Operation, times: int = 1) -> None:
        """Make the next `times` jobs of `operation` on `vm` fail."""
        if times < 1:
            raise errors.UsageError(f"--times must be at least 1, not {times}")
        with self._store.write() as db:
            self._vm_row(db, vm, usage=True)
            db.execute("INSERT INTO failures (vm, operation, remaining) VALUES (?, ?, ?) "
                       "ON CONFLICT (vm, operation) DO UPDATE SET remaining = excluded.remaining",
                       (vm, operation.value, times))

    def lag(self, vm: str, seconds: float) -> Health:
        """Keep replication of `vm` `seconds` behind (0 clears it); returns its health now."""
        if not seconds >= 0:
            raise errors.UsageError(f"lag must be 0 or more seconds, not {seconds}")
        t = self._now()
        with self._store.write() as db:
            self._finish_due_in(db, t)
            row = self._vm_row(db, vm, usage=True)
            if seconds and row.sync_anchor is None:
                raise errors.UsageError(f"{vm} does not replicate ({row.protection}): only a "
                                        "replicating VM can lag")
            row = row._replace(lag=seconds)
            sim_store.save_vm(db, row)
            return tl.health(row, self._world(db, t))

    def resync_required(self, vm: str) -> float:
        """Make replication of `vm` need a resync; returns when the fabric's own resync ends."""
        t = self._now()
        with self._store.write() as db:
            self._finish_due_in(db, t)
            world = self._world(db, t)
            row = self._vm_row(db, vm, usage=True)
            _check_idle(row)
            if tl.replication_state(row, world) is not ReplicationState.REPLICATING:
                raise errors.UsageError(f"{vm} is not replicating ({row.protection}, replication "
                                        f"{tl.replication_state(row, world)}): only a "
                                        "replicating VM can need a resync")
            until = t + world.timings.initial_replication
            # Nothing ships from now until the resync ends (see sim_timeline),
            # so the last sync stays the one before now.
            sim_store.save_vm(db, row._replace(
                replication=ReplicationState.RESYNC_REQUIRED.value, resync_from=t,
                resync_until=until, sync_anchor=tl.replication_anchor(row, world)))
            return until - t

    def move(self, vm: str, site: str) -> None:
        """A manual failover behind drctl's back: `vm` runs at `site` only, replicating out."""
        t = self._now()
        with self._store.write() as db:
            self._finish_due_in(db, t)
            world = self._world(db, t)
            _check_site(world, site)
            row = self._vm_row(db, vm, usage=True)
            _check_idle(row)
            if row.active_site == site:
                raise errors.UsageError(f"{vm} is already active at {site}: move it to "
                                        f"{world.peer(site)}, or leave it")
            state = replace(lifecycle.protected(site, world.peer(site)),
                            last_failover=FailoverKind.PLANNED)
            sim_store.save_vm(db, row._replace(**tl.state_columns(state),
                                               **_replication_restarted(world)))

    # --- internals --------------------------------------------------------------

    def _now(self) -> float:
        return self._clock.now().timestamp()

    def _world(self, db: sqlite3.Connection, t: float) -> tl.World:
        return tl.World(t, sim_store.sites(db), sim_store.timings(db),
                        sim_store.outages_at(db, t))

    def _vm_row(self, db: sqlite3.Connection, name: str, *,
                usage: bool = False) -> sim_store.VMRow:
        found = sim_store.vm_row(db, name)
        if found is None:
            error = errors.UsageError if usage else errors.TerminalError
            raise error(f"no VM '{name}' in the simulated fabric: drctl fabric show lists "
                        "its VMs")
        return found

    def _job(self, job: _JobRow, t: float) -> Job:
        return sim_observe.job(job_id_text(job.id), job.vm, job.operation, job.state,
                               job.target_site, job.started_at, job.due_at, job.finished_at,
                               job.error, job.data_loss, t)

    def _start(self, db: sqlite3.Connection, world: tl.World, row: sim_store.VMRow,
               request: base.Request) -> int:
        op = request.operation
        state = tl.vm_state(row, world)
        cond = lifecycle.Conditions(world.connected, tl.health(row, world),
                                    self._running_job_text(db, row))
        reason = lifecycle.check_operation(state, op, cond, FLAVOUR, request.target_site)
        if reason is not None:
            raise errors.RejectedError(f"{row.name}: {op} is not allowed: {reason}")
        target = lifecycle.resolve_target(state, op, request.target_site)
        point, loss, written = self._data_at_start(row, world, op, request)
        source_stopped = request.shutdown_source and row.active_site in world.connected
        cursor = db.execute(
            "INSERT INTO jobs (vm, operation, state, target_site, started_at, due_at, data_loss, "
            "recovery_point, source_stopped, injected_error, written_until) "
            "VALUES (?, ?, 'Running', ?, ?, ?, ?, ?, ?, ?, ?)",
            (row.name, op.value, target, world.t, world.t + world.timings.duration(state, op),
             loss, point, int(source_stopped), _take_failure(db, row.name, op), written))
        number = cursor.lastrowid
        assert number is not None  # noqa: S101 (an INSERT always sets it)
        sim_store.save_vm(db, row._replace(job_id=number))
        return number

    def _running_job_text(self, db: sqlite3.Connection, row: sim_store.VMRow) -> str | None:
        if row.job_id is None:
            return None
        op = db.execute("SELECT operation FROM jobs WHERE id = ?", (row.job_id,)).fetchone()
        return f"{job_id_text(row.job_id)} ({op[0]})"

    def _data_at_start(self, row: sim_store.VMRow, world: tl.World, op: Operation,
                       request: base.Request) -> tuple[float | None, float | None, float | None]:
        """(recovery point booted, seconds of writes lost, source's last write) of a job."""
        if op in {Operation.PLANNED_FAILOVER, Operation.UNPLANNED_FAILOVER}:
            written = tl.written_until(row, world)
            synced = tl.last_sync(row, world)
            assert synced is not None  # noqa: S101 (a failover needs replication)
            # A planned failover ships what is left: its replica holds every write.
            point = written if op is Operation.PLANNED_FAILOVER else min(synced, written)
            return point, lifecycle.failover_data_loss(op, written, synced), written
        if op is Operation.APPLY_RECOVERY_POINT:
            points = tl.recovery_points(row, world)
            point = points[0] if request.recovery_point is None else _parse_point(
                request.recovery_point, points, row.name)
            written = point if row.written_until is None else row.written_until
            return point, max(0.0, written - point), written
        return None, None, None

    def _finish_due(self, t: float) -> None:
        # A cheap read first: most observations find nothing due and must not
        # queue behind another process's write lock.
        with self._store.read() as db:
            due = db.execute("SELECT 1 FROM jobs WHERE state = 'Running' AND due_at <= ? "
                             "LIMIT 1", (t,)).fetchone()
        if due is not None:
            with self._store.write() as db:
                self._finish_due_in(db, t)

    def _finish_due_in(self, db: sqlite3.Connection, t: float) -> None:
        due = [_JobRow(*r) for r in db.execute(
            _SELECT_JOBS + "WHERE state = 'Running' AND due_at <= ? ORDER BY due_at, id", (t,))]
        for job in due:
            self._finish(db, job)

    def _finish(self, db: sqlite3.Connection, job: _JobRow) -> None:
        """Finish `job` as of its due time: apply its effect, or fail it and change nothing."""
        world = self._world(db, job.due_at)
        row = self._vm_row(db, job.vm)
        op = Operation(job.operation)
        state = tl.vm_state(row, world)
        error = job.injected_error or _site_lost(db, state, op, job)
        if error is not None:
            db.execute("UPDATE jobs SET state = ?, finished_at = ?, error = ? WHERE id = ?",
                       (JobState.FAILED.value, job.due_at, error, job.id))
            sim_store.save_vm(db, row._replace(job_id=None))
            return
        new = lifecycle.apply_effect(state, op, FLAVOUR, target=job.target_site,
                                     source_stopped=bool(job.source_stopped))
        sim_store.save_vm(db, row._replace(**tl.state_columns(new), job_id=None,
                                           **_time_columns(row, world, op, new, job)))
        db.execute("UPDATE jobs SET state = ?, finished_at = ? WHERE id = ?",
                   (JobState.SUCCEEDED.value, job.due_at, job.id))


def _time_columns(row: sim_store.VMRow, world: tl.World, op: Operation, new: lifecycle.VMState,
                  job: _JobRow) -> dict[str, Any]:
    """How the replication anchors change when `op` finishes at `world.t`."""
    if op in {Operation.PLANNED_FAILOVER, Operation.UNPLANNED_FAILOVER}:
        if new.protection is ProtectionState.PROTECTED:  # a flavour that reverses at once
            return _replication_restarted(world)
        point = job.recovery_point
        anchor = tl.replication_anchor(row, world)
        # An unplanned failover keeps the points it could have booted, until
        # Commit; a planned one keeps only the point it shipped.
        oldest = point
        if op is Operation.UNPLANNED_FAILOVER and point is not None and anchor is not None:
            oldest = min(anchor, point)
        return {"sync_anchor": None, "resync_from": None, "resync_until": None,
                "writes_stopped_at": None, "rp_latest": point, "rp_oldest": oldest,
                "written_until": job.written_until}
    if op is Operation.COMMIT:
        # Commit deletes every other recovery point.
        return {"rp_latest": None, "rp_oldest": None, "written_until": None}
    if op is Operation.APPLY_RECOVERY_POINT:
        return {}
    if op in {Operation.REVERSE_REPLICATE, Operation.ENABLE_REPLICATION}:
        return _replication_restarted(world)
    if op is Operation.DISABLE_REPLICATION:
        return {"sync_anchor": None, "resync_from": None, "resync_until": None}
    if op is Operation.STOP_VM and job.target_site == row.active_site:
        return {"writes_stopped_at": world.t}
    if op is Operation.START_VM:
        return {"writes_stopped_at": None}
    return {}


def _replication_restarted(world: tl.World) -> dict[str, Any]:
    """Replication (re)starts now with a full copy, its first recovery point on the grid."""
    return {"sync_anchor": tl.grid_floor(world.t, world.interval), "resync_from": None,
            "resync_until": None, "writes_stopped_at": None, "rp_latest": None,
            "rp_oldest": None, "written_until": None}


def _site_lost(db: sqlite3.Connection, state: lifecycle.VMState, op: Operation,
               job: _JobRow) -> str | None:
    """The error of a job one of whose sites went down while it ran, if one did."""
    sites = sorted(lifecycle.required_sites(state, op, job.target_site))
    if not sites:
        return None
    found = db.execute(
        f"SELECT site, down_at FROM outages WHERE site IN ({', '.join('?' * len(sites))}) "  # noqa: S608
        "AND down_at <= ? AND (up_at IS NULL OR up_at > ?) ORDER BY down_at LIMIT 1",
        (*sites, job.due_at, job.started_at)).fetchone()
    if found is None:
        return None
    site, down_at = found
    return (f"{op} of {job.vm} failed: site {site} went down at {_iso(down_at)} while the job "
            f"ran; the VM is as it was before the job; retry when {site} is back")


def _take_failure(db: sqlite3.Connection, vm: str, op: Operation) -> str | None:
    """Consume one injected failure of `op` on `vm`, if any: the error the job will end with."""
    found = db.execute("SELECT remaining FROM failures WHERE vm = ? AND operation = ?",
                       (vm, op.value)).fetchone()
    if found is None:
        return None
    if found[0] <= 1:
        db.execute("DELETE FROM failures WHERE vm = ? AND operation = ?", (vm, op.value))
    else:
        db.execute("UPDATE failures SET remaining = remaining - 1 WHERE vm = ? AND "
                   "operation = ?", (vm, op.value))
    return (f"{op} of {vm} failed: the fabric reported an error (injected with drctl fabric "
            "fail); the VM is as it was before the job")


def _check_site(world: tl.World, site: str) -> None:
    if site not in world.sites:
        raise errors.UsageError(f"no site '{site}' in the simulated fabric: its sites are "
                                f"{', '.join(world.sites)}")


def _check_idle(row: sim_store.VMRow) -> None:
    if row.job_id is not None:
        raise errors.UsageError(f"{row.name} has job {job_id_text(row.job_id)} running: wait "
                                "for it to finish")


def _job_number(job_id: str) -> int:
    prefix, _, digits = job_id.partition("-")
    if prefix != "job" or not digits.isdigit():
        raise errors.TerminalError(f"no job {job_id!r} in this fabric: job ids look like "
                                   "job-000042")
    return int(digits)


def _parse_point(text: str, points: Iterable[float], vm: str) -> float:
    available = list(points)
    try:
        wanted = datetime.fromisoformat(text).timestamp()
    except ValueError:
        wanted = None
    for point in available:
        if wanted is not None and abs(point - wanted) < 1e-3:
            return point
    shown = ", ".join(_iso(p) for p in available) or "none"
    raise errors.RejectedError(f"{vm}: no recovery point {text!r}: the VM keeps {shown}")


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="microseconds")
