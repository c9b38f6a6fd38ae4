"""Turns rows of the simulated fabric into the observed-state values of `state`.

`sim.provider` calls `build_observed` inside one read transaction. This is
the hot path of every reconcile (100k VMs): it reads each VM's name,
state_key and id only, and computes the fields once per distinct state; VMs
at rest in the same state differ only by name and id. The few VMs a fault
changes (a rename, an unknown raw state: `sim.overrides`) are changed after;
a name two VMs report goes to `Observed.duplicates`, in no `vms` entry.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from reconciler.core import lifecycle
from reconciler.core.state import (
    Health,
    Job,
    JobState,
    Observed,
    ObservedVM,
    Operation,
    ProtectionState,
    RecoveryPoint,
    Replication,
    ReplicationState,
    Site,
    TestFailoverState,
)
from reconciler.fabric.sim import overrides, raw
from reconciler.fabric.sim import store as sim_store
from reconciler.fabric.sim import timeline as tl
from reconciler.kits import gcpause

# While these jobs run, replication towards the peer is being built.
# Where a simulated test copy answers (its isolated network is the loopback).
TEST_ADDRESS = "127.0.0.1"
_SYNCING_JOBS = frozenset({Operation.REVERSE_REPLICATE, Operation.ENABLE_REPLICATION})

_VMParts = tuple[Any, ...]  # the fields of an ObservedVM after its name and before its id


def build_observed(
    db: sqlite3.Connection, world: tl.World, running: list[sim_store.JobRow]
) -> Observed:
    """The whole fabric as observed at `world.t`, read inside one transaction of `db`.

    `running` holds the rows of the jobs not over yet.
    """
    changed = overrides.overrides(db)  # few VMs have one: looked up by name
    names = {vm: o.name for vm, o in changed.items() if o.name is not None}
    jobs = [job(row, world.t, names) for row in running]
    by_vm = {row.vm: j for row, j in zip(running, jobs, strict=True)}
    failovers = sim_store.last_failovers(db)  # few VMs have one: looked up by name
    computed: dict[str, _VMParts] = {}
    vms: dict[str, ObservedVM] = {}
    same_name: dict[str, list[ObservedVM]] = {}
    with gcpause.gc_paused():
        for name, key, vm_id in sim_store.vm_keys(db):
            parts = computed.get(key)
            if parts is None:
                row = sim_store.vm_row(db, name)
                assert row is not None  # noqa: S101 (same transaction)
                parts = computed[key] = _vm_parts(row, world, by_vm.get(name))
            vm = ObservedVM(*(name, *parts, vm_id))  # vm_id: the last field
            last = failovers.get(name)
            if last is not None:
                vm = dataclasses.replace(
                    vm,
                    last_failover_job=job_id(last[0]),
                    last_failover_at=to_datetime(last[1]),
                    last_failover_loss_seconds=last[2],
                )
            if vm.test_failover is TestFailoverState.RUNNING:
                # The simulated isolated network is the loopback: a test serves
                # the copy's ports there, and a drill's checks probe them.
                vm = dataclasses.replace(vm, test_address=TEST_ADDRESS)
            if changed and name in changed:
                vm = _overridden(vm, changed[name])
            if names and vm.name in vms:
                # Only a rename makes two VMs report one name: none of them is in `vms`.
                same_name.setdefault(vm.name, []).append(vm)
                continue
            vms[vm.name] = vm
    duplicates = {shown: (vms.pop(shown), *more) for shown, more in same_name.items()}
    connected = world.connected
    return Observed(
        sites={s: Site(s, s in connected) for s in world.sites},
        vms=vms,
        at=to_datetime(world.t),
        can_stop_vms=True,
        jobs=tuple(jobs),
        duplicates=duplicates,
        typical_durations=world.timings.typical(),
    )


def _overridden(vm: ObservedVM, override: overrides.Override) -> ObservedVM:
    """`vm` as a fault makes it report: another name, a raw state the fabric cannot map."""
    if override.raw_state is None:
        return dataclasses.replace(vm, name=override.name or vm.name)
    return dataclasses.replace(
        vm,
        name=override.name or vm.name,
        # Read through the same map as every text the fabric says: an unknown
        # text is reported Unknown, with the text, never the state behind it.
        protection_state=raw.protection_of(override.raw_state),
        raw_state=override.raw_state,
        raw_state_description=override.raw_description,
    )


def _vm_parts(row: sim_store.VMRow, world: tl.World, job: Job | None) -> _VMParts:
    state = tl.vm_state(row, world)
    replication = _replication(row, state, world, job)
    health = replication.health if replication is not None else Health.NORMAL
    # The fabric's own text for the state, read back through the same map a
    # provider of a real fabric would use (never anything but `state` here).
    raw_state, raw_description = raw.protection_text(state)
    job_text = None if job is None else _busy(job.id, job.operation, job.suspended)
    allowed = lifecycle.allowed_operations(
        state, lifecycle.Conditions(world.connected, health, job_text)
    )
    # Power at a site the fabric cannot see (down, or its management plane
    # cut off) is Unknown whatever the simulator knows: a real fabric cannot
    # tell there whether a copy runs.
    unseen = world.unseen_since
    running = tuple(s for s in world.sites if s in state.running and s not in unseen)
    unknown = tuple(s for s in world.sites if s in unseen)
    seen_at = to_datetime(min(unseen.values())) if unseen else None
    points = tuple(
        RecoveryPoint(tl.point_id(p), to_datetime(p), tl.point_type(p, world))
        for p in tl.recovery_points(row, world)
    )
    failover_health, health_errors = raw.failover_health(replication, tl.behind_seconds(row, world))
    return (
        state.active_site,
        running,
        raw.protection_of(raw_state),
        replication,
        allowed,
        job,
        points,
        state.test_failover,
        state.last_failover,
        None,  # last_failover_job, _at and _loss_seconds: set per VM, from the jobs
        None,
        None,
        unknown,
        seen_at,
        None if row.rp_applied is None else tl.point_id(row.rp_applied),
        raw_state,
        raw_description,
        failover_health,
        health_errors,
    )


def _replication(
    row: sim_store.VMRow, state: lifecycle.VMState, world: tl.World, job: Job | None
) -> Replication | None:
    interval = world.interval
    if job is not None and job.operation in _SYNCING_JOBS:
        return Replication(
            state.active_site,
            state.peer_site,
            ReplicationState.INITIAL_SYNC,
            Health.NORMAL,
            None,
            interval,
        )
    if state.protection is not ProtectionState.PROTECTED:
        return None
    synced = tl.last_sync(row, world)
    return Replication(
        state.active_site,
        state.peer_site,
        state.replication,
        tl.health(row, world),
        None if synced is None else to_datetime(synced),
        interval,
    )


def job_id(number: int) -> str:
    """The id a job is known by: readable, unique within the fabric."""
    return f"job-{number:06d}"


def busy_text(row: sim_store.JobRow) -> str:
    """The job that holds a VM, as a refusal names it."""
    return _busy(job_id(row.id), row.operation, row.state == JobState.SUSPENDED.value)


def _busy(number: str, operation: str, suspended: bool) -> str:
    waiting = ", suspended waiting for a person" if suspended else ""
    return f"{number} ({operation}{waiting})"


# The raw state texts, as ASR words them (`stateDescription`).
_DESCRIPTIONS = {
    JobState.RUNNING: "InProgress",
    JobState.SUCCEEDED: "Completed",
    JobState.FAILED: "Failed",
}


def job(row: sim_store.JobRow, t: float, names: Mapping[str, str]) -> Job:
    """A job as the fabric reports it at `t`, naming its VM as the VM reports itself now.

    `names` maps the inventory name of each renamed VM to the name it reports
    (`overrides.reported_names`). Its progress is the share of its work done:
    a suspended job stays where it stopped, and the time it waited does not count.
    """
    status = JobState(row.state)
    progress = 1.0
    if status in {JobState.RUNNING, JobState.SUSPENDED} and row.work > 0:
        at = row.suspended_at if row.suspended_at is not None else t
        progress = min(1.0, max(0.0, (at - row.started_at - row.paused) / row.work))
    if status is JobState.SUSPENDED:
        description = (
            f"Waiting for user input: complete the manual action of {row.operation} on "
            f"{row.vm} (simulated: drctl fabric resume {job_id(row.id)})"
        )
    else:
        description = _DESCRIPTIONS.get(status, str(status))
    return Job(
        id=job_id(row.id),
        vm=names.get(row.vm, row.vm),
        operation=Operation(row.operation),
        state=status,
        started_at=to_datetime(row.started_at),
        finished_at=None if row.finished_at is None else to_datetime(row.finished_at),
        progress=progress,
        target_site=row.target_site,
        error=row.error,
        # The job result says how much a failover lost, once it succeeded.
        data_loss_seconds=row.data_loss if status is JobState.SUCCEEDED else None,
        state_description=description,
        intent_id=row.intent_id,
    )


def to_datetime(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def iso(t: float) -> str:
    """ISO 8601 in UTC with microseconds, as every output of the fabric writes time."""
    return to_datetime(t).isoformat(timespec="microseconds")


def from_iso(text: str) -> float:
    """Seconds since the epoch of an ISO 8601 time (UTC if it names no zone)."""
    at = datetime.fromisoformat(text)
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.timestamp()
