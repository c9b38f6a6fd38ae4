"""What the hosts answer, read into drctl's observed model. Pure.

`copies_of` reads one host's projection (`script.PROJECTION`): one `Copy`
per VM with replication on that host. `observed_vm` joins the copies of one
VM (one per site, matched by VMId, which the replica shares with its
primary) into an `ObservedVM`:

- the active site is the replica's when it is failed over
  (FailedOverWaitingCompletion: CommitPending; FailedOver: Committed), else
  the primary's; with the primary's host silent, the primary server the
  replica names;
- replication flows from the primary, in the state the primary reports
  (the replica's when the primary is silent), named as drctl names states;
- power is the copy's `Get-VM` state where its host answered, Unknown where
  the host did not (the copy may run), Off at a site that has no copy;
- allowed operations are the lifecycle model's for that state, narrowed to
  what this provider runs (`OFFERED`);
- recovery points are the replica's recovery snapshots (`Get-VMSnapshot
  -SnapshotType Replica`, newest first, id = the snapshot's Id), reported
  only where a decision needs them: where an unplanned failover is allowed,
  the one moment Hyper-V takes a point (`Start-VMFailover -VMRecoverySnapshot`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from reconciler import errors
from reconciler.core import lifecycle
from reconciler.core.state import (
    FailoverKind,
    Health,
    Job,
    ObservedVM,
    Operation,
    ProtectionState,
    RecoveryPoint,
    Replication,
    ReplicationState,
    TestFailoverState,
)

# What this provider runs (Hyper-V Replica's cmdlets, `job.plan_of`).
OFFERED = frozenset(
    {
        Operation.PLANNED_FAILOVER,
        Operation.UNPLANNED_FAILOVER,
        Operation.COMMIT,
        Operation.REVERSE_REPLICATE,
        Operation.TEST_FAILOVER,
        Operation.TEST_FAILOVER_CLEANUP,
        Operation.RESYNC,
        Operation.STOP_VM,
        Operation.START_VM,
    }
)
# Get-VM states in which the copy does not run (Saved holds no running guest).
_NOT_RUNNING = frozenset({"Off", "Saved", "OffCritical", "SavedCritical"})
# ReplicationState names (Hyper-V module 2.0) as drctl's replication states.
_REPLICATION = {
    "Replicating": ReplicationState.REPLICATING,
    "PreparedForFailover": ReplicationState.REPLICATING,
    "ReadyForInitialReplication": ReplicationState.INITIAL_SYNC,
    "InitialReplicationInProgress": ReplicationState.INITIAL_SYNC,
    "WaitingForInitialReplication": ReplicationState.INITIAL_SYNC,
    "WaitingForStartResynchronize": ReplicationState.RESYNC_REQUIRED,
    "Resynchronizing": ReplicationState.RESYNC_REQUIRED,
    "ResynchronizeSuspended": ReplicationState.RESYNC_REQUIRED,
    "Suspended": ReplicationState.PAUSED,
    "Error": ReplicationState.ERROR,
}
_HEALTH = {"Normal": Health.NORMAL, "Warning": Health.WARNING, "Critical": Health.CRITICAL}


@dataclass(frozen=True, slots=True)
class Copy:
    """One copy of a VM as the host holding it reports it."""

    site: str
    host: str
    name: str
    vm_id: str
    power: str  # Get-VM State name
    mode: str  # Primary, Replica, ExtendedReplica, TestReplica
    state: str  # ReplicationState name
    health: str
    primary: str | None = None  # PrimaryServer
    replica: str | None = None  # ReplicaServer (a broker on a cluster)
    frequency: float | None = None
    last_replication: datetime | None = None
    failed_over_type: str = "None"
    test_vm: str | None = None
    test_vm_power: str | None = None
    points: tuple[RecoveryPoint, ...] = ()  # a replica's recovery snapshots, newest first

    @property
    def running(self) -> bool:
        return self.power not in _NOT_RUNNING

    @property
    def failed_over(self) -> bool:
        return self.mode == "Replica" and self.state in {
            "FailedOverWaitingCompletion",
            "FailedOver",
        }


def copies_of(site: str, host: str, answer: Any) -> list[Copy]:
    """The copies one host's projection lists; a shape it does not have is a transient error."""
    if not isinstance(answer, list):
        raise errors.TransientError(f"{host} answered the projection with {type(answer).__name__}")
    found: list[Copy] = []
    for item in answer:
        if not isinstance(item, dict) or not item.get("VMName") or not item.get("VMId"):
            raise errors.TransientError(f"{host} answered a projection entry without a VM")
        found.append(
            Copy(
                site=site,
                host=host,
                name=str(item["VMName"]),
                vm_id=str(item["VMId"]).lower(),
                power=str(item.get("Power") or "Other"),
                mode=str(item.get("Mode") or "None"),
                state=str(item.get("State") or "Disabled"),
                health=str(item.get("Health") or "NotApplicable"),
                primary=item.get("PrimaryServer"),
                replica=item.get("ReplicaServer"),
                frequency=None if item.get("FrequencySec") is None else float(item["FrequencySec"]),
                last_replication=_time(item.get("LastReplicationTime")),
                failed_over_type=str(item.get("FailedOverReplicationType") or "None"),
                test_vm=item.get("TestVM"),
                test_vm_power=item.get("TestVMPower"),
                points=_points(host, item.get("Points")),
            )
        )
    return found


def _points(host: str, answer: Any) -> tuple[RecoveryPoint, ...]:
    """The recovery snapshots of one projection entry, newest first (by time, whatever the
    order they came in)."""
    if answer is None:
        return ()
    if not isinstance(answer, list):
        answer = [answer]  # 5.1 writes a one-item array bare when it is not forced
    found: list[RecoveryPoint] = []
    for point in answer:
        when = _time(point.get("Time")) if isinstance(point, dict) else None
        if when is None or not point.get("Id"):
            raise errors.TransientError(f"{host} answered a recovery snapshot without id or time")
        found.append(RecoveryPoint(str(point["Id"]).lower(), when))
    return tuple(sorted(found, key=lambda p: p.time, reverse=True))


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise errors.TransientError(f"a projection time is not ISO 8601: {value!r}") from exc
    return parsed if parsed.tzinfo is not None else None


@dataclass(frozen=True, slots=True)
class Sides:
    """The copies of one VM: at most one per site, and the sites that did not answer."""

    copies: Mapping[str, Copy]  # by site
    silent: frozenset[str]  # sites none of whose hosts answered

    def primary(self) -> Copy | None:
        return next((c for c in self.copies.values() if c.mode == "Primary"), None)

    def replica(self) -> Copy | None:
        return next((c for c in self.copies.values() if c.mode == "Replica"), None)


def active_site(sides: Sides, site_of: Any, sites: tuple[str, str]) -> str:
    """Where the VM's authoritative copy is (see the module docstring)."""
    replica, primary = sides.replica(), sides.primary()
    if replica is not None and replica.failed_over:
        return replica.site
    if primary is not None:
        return primary.site
    if replica is not None and replica.primary:
        found = site_of(replica.primary)
        if found is not None:
            return str(found)
    any_copy = next(iter(sides.copies.values()))
    return any_copy.site if any_copy.site in sites else sites[0]


def observed_vm(
    sides: Sides,
    sites: tuple[str, str],
    site_of: Any,
    connected: frozenset[str],
    job: Job | None,
    *,
    last_failover: tuple[str, datetime | None, float | None] | None = None,
    seen_at: datetime | None = None,
) -> ObservedVM:
    """One VM's copies as drctl's observation; `last_failover`: (job, end, loss) of drctl's
    latest failover that made the active copy active."""
    first = next(iter(sides.copies.values()))
    active = active_site(sides, site_of, sites)
    peer = sites[1] if active == sites[0] else sites[0]
    primary, replica = sides.primary(), sides.replica()
    on_active = sides.copies.get(active)
    kind: FailoverKind | None = None
    replication: Replication | None = None
    if on_active is not None and on_active.failed_over:
        protection = (
            ProtectionState.COMMIT_PENDING
            if on_active.state == "FailedOverWaitingCompletion"
            else ProtectionState.COMMITTED
        )
        kind = (
            FailoverKind.PLANNED
            if on_active.failed_over_type == "Planned"
            else FailoverKind.UNPLANNED
        )
    else:
        reporter = primary or replica or first
        state = _REPLICATION.get(reporter.state)
        if state is None:
            protection = ProtectionState.UNKNOWN
            state = ReplicationState.ERROR
        else:
            protection = ProtectionState.PROTECTED
        last = (replica or reporter).last_replication or reporter.last_replication
        replication = Replication(
            active,
            peer,
            state,
            _HEALTH.get((primary or reporter).health, Health.NORMAL),
            last,
            reporter.frequency,
        )
    running = tuple(s for s in sites if s in sides.copies and sides.copies[s].running)
    unknown = tuple(s for s in sites if s in sides.silent)
    test = TestFailoverState.NONE
    if replica is not None and replica.test_vm:
        test = TestFailoverState.RUNNING
    model = lifecycle.VMState(
        active,
        peer,
        frozenset(running),
        protection,
        ReplicationState.OFF if replication is None else replication.state,
        kind,
        test,
    )
    conditions = lifecycle.Conditions(
        connected=connected,
        job_running=None if job is None or not job.running else f"{job.id} ({job.operation})",
    )
    allowed = lifecycle.allowed_operations(model, conditions) & OFFERED
    raw = "; ".join(f"{c.site}: {c.mode} {c.state}" for c in _ordered(sides.copies, sites))
    points: tuple[RecoveryPoint, ...] = ()
    if Operation.UNPLANNED_FAILOVER in allowed and replica is not None:
        points = replica.points
    failover_job, failover_at, loss = last_failover or (None, None, None)
    return ObservedVM(
        name=first.name,
        active_site=active,
        running=running,
        protection_state=protection,
        replication=replication,
        allowed_operations=allowed,
        job=job,
        recovery_points=points,
        test_failover=test,
        last_failover=kind,
        last_failover_job=failover_job,
        last_failover_at=failover_at,
        last_failover_loss_seconds=loss,
        power_unknown=unknown,
        power_seen_at=seen_at if unknown else None,
        raw_state=raw,
        raw_state_description=None,
        failover_health=(primary or first).health,
        vm_id=first.vm_id,
    )


def _ordered(copies: Mapping[str, Copy], sites: Iterable[str]) -> list[Copy]:
    return [copies[s] for s in sites if s in copies]
