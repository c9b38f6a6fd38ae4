"""Turns rows of the simulated fabric into the observed-state values of `state`.

`providers.sim` reads the rows in one snapshot and calls `build_observed`;
this is the hot path of every reconcile (100k VMs), so VMs at rest that share
every column but their name share one computed set of fields.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from reconciler import lifecycle
from reconciler.providers import sim_timeline as tl
from reconciler.state import (
    Health,
    Job,
    JobState,
    Observed,
    ObservedVM,
    Operation,
    ProtectionState,
    Replication,
    ReplicationState,
    Site,
)

# While these jobs run, replication towards the peer is being built.
_SYNCING_JOBS = frozenset({Operation.REVERSE_REPLICATE, Operation.ENABLE_REPLICATION})

_VMParts = tuple[Any, ...]  # the fields of an ObservedVM after its name, in order


def build_observed(world: tl.World, rows: Sequence[tuple[Any, ...]], running_jobs: list[Job],
                   flavour: lifecycle.Flavour) -> Observed:
    """The whole fabric as observed at `world.t`."""
    by_vm = {job.vm: job for job in running_jobs}
    cache: dict[tuple[Any, ...], _VMParts] = {}
    vms: dict[str, ObservedVM] = {}
    for raw in rows:
        name = raw[0]
        job = by_vm.get(name)
        if job is None:
            key = raw[1:]
            parts = cache.get(key)
            if parts is None:
                parts = cache[key] = _vm_parts(tl.VMRow(*raw), world, None, flavour)
        else:
            parts = _vm_parts(tl.VMRow(*raw), world, job, flavour)
        vms[name] = ObservedVM(name, *parts)
    connected = world.connected
    return Observed(
        sites={s: Site(s, s in connected) for s in world.sites},
        vms=vms,
        at=to_datetime(world.t),
        can_stop_vms=True,
        jobs=tuple(running_jobs),
    )


def _vm_parts(row: tl.VMRow, world: tl.World, job: Job | None,
              flavour: lifecycle.Flavour) -> _VMParts:
    state = tl.vm_state(row, world)
    replication = _replication(row, state, world, job)
    health = replication.health if replication is not None else Health.NORMAL
    job_text = None if job is None else f"{job.id} ({job.operation})"
    allowed = lifecycle.allowed_operations(
        state, lifecycle.Conditions(world.connected, health, job_text), flavour)
    running = tuple(s for s in world.sites if s in state.running)
    points = tuple(to_datetime(p) for p in tl.recovery_points(row, world))
    return (state.active_site, running, state.protection, replication, allowed, job, points,
            state.test_failover, state.last_failover)


def _replication(row: tl.VMRow, state: lifecycle.VMState, world: tl.World,
                 job: Job | None) -> Replication | None:
    interval = world.interval
    if job is not None and job.operation in _SYNCING_JOBS:
        return Replication(state.active_site, state.peer_site, ReplicationState.INITIAL_SYNC,
                           Health.NORMAL, None, interval)
    if state.protection is not ProtectionState.PROTECTED:
        return None
    synced = tl.last_sync(row, world)
    return Replication(state.active_site, state.peer_site, state.replication,
                       tl.health(row, world), None if synced is None else to_datetime(synced),
                       interval)


def job(job_id: str, vm: str, operation: str, job_state: str, target_site: str | None,
        started_at: float, due_at: float, finished_at: float | None, error: str | None,
        data_loss: float | None, t: float) -> Job:
    """A job as the fabric reports it at `t`."""
    status = JobState(job_state)
    if status is JobState.RUNNING:
        duration = due_at - started_at
        progress = 1.0 if duration <= 0 else min(1.0, max(0.0, (t - started_at) / duration))
    else:
        progress = 1.0
    return Job(
        id=job_id,
        vm=vm,
        operation=Operation(operation),
        state=status,
        started_at=to_datetime(started_at),
        finished_at=None if finished_at is None else to_datetime(finished_at),
        progress=progress,
        target_site=target_site,
        error=error,
        # The job result says how much a failover lost, once it succeeded.
        data_loss_seconds=data_loss if status is JobState.SUCCEEDED else None,
    )


def to_datetime(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)

