"""Observed-state value types: what a fabric reports about its sites, VMs and jobs.

Providers build these; the planner, the CLI and the metrics read them. Plain
frozen dataclasses rather than pydantic models: an observation of 100k VMs
builds 100k of them on every reconcile, and they are never parsed from input.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class Operation(StrEnum):
    """Operations a fabric runs on one VM, named as the ASR REST API names them."""

    PLANNED_FAILOVER = "PlannedFailover"
    UNPLANNED_FAILOVER = "UnplannedFailover"
    APPLY_RECOVERY_POINT = "ApplyRecoveryPoint"
    COMMIT = "Commit"
    REVERSE_REPLICATE = "ReverseReplicate"
    TEST_FAILOVER = "TestFailover"
    TEST_FAILOVER_CLEANUP = "TestFailoverCleanup"
    ENABLE_REPLICATION = "EnableReplication"
    DISABLE_REPLICATION = "DisableReplication"
    STOP_VM = "StopVM"
    # Not in the fabric's list of DR operations, but needed to undo our own
    # StopVM when a spec is reverted before the failover it prepared.
    START_VM = "StartVM"
    # Resynchronise a replication that reads ResyncRequired and that the
    # fabric does not resync by itself (ASR's repairReplication, Hyper-V's
    # Resume-VMReplication -Resynchronize): a full comparison of the copies.
    RESYNC = "Resync"
    # Reported among a fabric's allowed operations, spelled as ASR's
    # ReplicationProtectedItemOperation spells them (its REST action for the
    # first is `failoverCancel`), and never called by drctl: see
    # engine/guard.py. CancelFailover leaves the VM unreplicated;
    # CompleteMigration ends replication for good (the way back is gone).
    CANCEL_FAILOVER = "CancelFailover"
    COMPLETE_MIGRATION = "CompleteMigration"


FAILOVERS = frozenset({Operation.PLANNED_FAILOVER, Operation.UNPLANNED_FAILOVER})


class ReplicationState(StrEnum):
    INITIAL_SYNC = "InitialSync"
    REPLICATING = "Replicating"
    RESYNC_REQUIRED = "ResyncRequired"
    PAUSED = "Paused"
    OFF = "Off"
    ERROR = "Error"


class Health(StrEnum):
    NORMAL = "Normal"
    WARNING = "Warning"
    CRITICAL = "Critical"


class ProtectionState(StrEnum):
    """Where a VM rests in its DR lifecycle (a running job is reported apart).

    Unknown is what a provider reports when the fabric's own text for the
    state (`ObservedVM.raw_state`) is one it cannot map: never a guess at
    the nearest known state. The planner acts on no such VM.
    """

    PROTECTED = "Protected"  # runs at its active site, replication configured
    UNPROTECTED = "Unprotected"  # runs at its active site, no replication
    COMMIT_PENDING = "CommitPending"  # failed over, recovery points still kept
    COMMITTED = "Committed"  # failover final, replication not yet reversed
    UNKNOWN = "Unknown"  # the fabric's raw state maps to none of the above


class TestFailoverState(StrEnum):
    NONE = "None"
    RUNNING = "Running"  # a test copy runs at the target on an isolated network


class JobState(StrEnum):
    """A job's state as ASR reports it; the raw text is `Job.state_description`.

    NotStarted, Running and Suspended are in progress (`Job.running`);
    Succeeded, Failed and Cancelled are final. Suspended waits for a person
    (a manual action of a recovery plan, say): it neither ends nor progresses
    until someone resumes it in the fabric.
    """

    NOT_STARTED = "NotStarted"
    RUNNING = "Running"
    SUSPENDED = "Suspended"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"


# A job in one of these states is not over: the VM stays busy and the job is
# followed until it ends, however long a person takes.
JOB_IN_PROGRESS = frozenset({JobState.NOT_STARTED, JobState.RUNNING, JobState.SUSPENDED})


class FailoverKind(StrEnum):
    PLANNED = "Planned"
    UNPLANNED = "Unplanned"


class Power(StrEnum):
    """Whether a copy of a VM runs at one site, as the fabric can tell.

    Unknown is what a fabric reports when it cannot see the site (its
    management plane does not answer, the site is dark, or the product keeps
    no power state): such a copy may run, so it is never read as Off.
    """

    RUNNING = "Running"
    OFF = "Off"
    UNKNOWN = "Unknown"


class PointType(StrEnum):
    """How consistent a recovery point is (ASR's recoveryPointType)."""

    CRASH_CONSISTENT = "CrashConsistent"  # as if the power was cut
    APP_CONSISTENT = "AppConsistent"  # the guest flushed its applications (VSS)


@dataclass(frozen=True, slots=True)
class RecoveryPoint:
    """A point a failed-over VM can boot from, until its failover is committed."""

    id: str
    time: datetime
    type: PointType = PointType.CRASH_CONSISTENT


@dataclass(frozen=True, slots=True)
class Job:
    """One operation the fabric accepted, as the fabric reports it."""

    id: str
    vm: str
    operation: Operation
    state: JobState
    started_at: datetime
    finished_at: datetime | None = None
    progress: float = 0.0  # 0..1
    target_site: str | None = None
    error: str | None = None
    data_loss_seconds: float | None = None
    state_description: str | None = None  # the fabric's own text for the state
    # The intent id of the request that started it, when the fabric keeps one
    # (`fabric.base.Request.intent_id`); None for a job started without one.
    intent_id: str | None = None

    @property
    def running(self) -> bool:
        """The job is not over (NotStarted, Running or Suspended): follow it until it ends.

        True for a suspended job too: it still holds the VM and may still
        succeed, so it must be followed and never taken for finished (or
        failed, and retried). Whether it makes progress is `suspended`.
        """
        return self.state in JOB_IN_PROGRESS

    @property
    def suspended(self) -> bool:
        """The job waits for a person (`state_description` says for what): no progress
        until someone resumes it in the fabric; waiting longer never ends it."""
        return self.state is JobState.SUSPENDED


@dataclass(frozen=True, slots=True)
class Replication:
    """Replication of one VM: from the active copy to the replica."""

    source: str
    target: str
    state: ReplicationState
    health: Health = Health.NORMAL
    last_sync: datetime | None = None
    interval_seconds: float | None = None

    @property
    def direction(self) -> str:
        return f"{self.source}->{self.target}"


@dataclass(frozen=True, slots=True)
class ObservedVM:
    """One replicated VM as the fabric reports it now.

    Power is tri-state per site (`power_at`): `running` holds the sites where
    a copy is known to run, `power_unknown` those where the fabric cannot tell
    (never in `running`), and every other site is Off. Two tuples rather than
    a map of sites to `Power`, so that the constructions that predate Unknown
    stay valid and an observation of 100k VMs shares one value of each among
    VMs in the same state.
    """

    name: str
    active_site: str
    running: tuple[str, ...]  # known running; readers that must not miss a copy use may_run
    protection_state: ProtectionState
    replication: Replication | None  # None: replication is off
    allowed_operations: frozenset[Operation]
    job: Job | None = None  # the job in progress, if any
    recovery_points: tuple[RecoveryPoint, ...] = ()  # newest first
    test_failover: TestFailoverState = TestFailoverState.NONE
    last_failover: FailoverKind | None = None
    # The job of the failover that made the active copy active, and when it
    # ended: the planner compares it with drctl's journal to tell a move it
    # made from one an operator made (never reverted by drctl on its own).
    last_failover_job: str | None = None
    last_failover_at: datetime | None = None
    # Seconds of writes that failover lost (those that never reached the new
    # active copy): after an unplanned one, the old copy may hold the only copy.
    last_failover_loss_seconds: float | None = None
    # Sites whose power the fabric cannot tell now, and when it last could
    # (the oldest such moment when several; None: it never could).
    power_unknown: tuple[str, ...] = ()
    power_seen_at: datetime | None = None
    # The id of the recovery point the active copy booted (a failover, or
    # ApplyRecoveryPoint since), while the failover is not committed.
    applied_point: str | None = None
    # What the fabric itself says, beside drctl's reading of it: its own
    # protection state text and description (ASR's protectionState and
    # protectionStateDescription), its failover health and the messages of
    # its health errors. Shared strings and tuples, like the fields above.
    raw_state: str | None = None
    raw_state_description: str | None = None
    failover_health: str | None = None
    health_errors: tuple[str, ...] = ()
    # A stable id beside the friendly `name` (ASR's protected item name, a
    # Hyper-V VMId): two VMs may share a name, never an id. Last, so that a
    # provider can build the fields before it from a state shared by many VMs.
    vm_id: str | None = None
    # Where a drill's checks reach the test copy (an address on its isolated
    # network), while one runs and the fabric tells; None otherwise.
    test_address: str | None = None

    def power_at(self, site: str) -> Power:
        if site in self.running:
            return Power.RUNNING
        return Power.UNKNOWN if site in self.power_unknown else Power.OFF

    def may_run(self, site: str) -> bool:
        """A copy runs at `site`, or may: Unknown is never read as Off."""
        return site in self.running or site in self.power_unknown

    @property
    def maybe_running(self) -> tuple[str, ...]:
        """Every site where a copy runs or may run: the known ones first."""
        return self.running + self.power_unknown if self.power_unknown else self.running

    def power_by_site(self) -> dict[str, Power]:
        """Power at each site this observation names, by site name: the active site,
        both ends of replication, and every site where a copy runs or may run.
        Any other site of the VM is Off."""
        sites = {self.active_site, *self.running, *self.power_unknown}
        if self.replication is not None:
            sites.update((self.replication.source, self.replication.target))
        return {site: self.power_at(site) for site in sorted(sites)}

    @property
    def replication_text(self) -> str:
        """Replication as every output writes it: `<from>-><to>` or `off`."""
        return "off" if self.replication is None else self.replication.direction


@dataclass(frozen=True, slots=True)
class Site:
    name: str
    connected: bool
    # The Azure side of ASR's Hyper-V-to-Azure scenario: a VM active there replicates
    # nowhere and leaves only by a planned failback (core.lifecycle, plan.azure).
    azure: bool = False


@dataclass(frozen=True)
class Observed:
    """Everything a provider reports in one observation."""

    sites: Mapping[str, Site]
    vms: Mapping[str, ObservedVM]
    at: datetime | None = None
    can_stop_vms: bool = True
    jobs: tuple[Job, ...] = field(default=())
    # Why the fabric could not be observed at all (its VMs are then unknown,
    # which is never the same as stopped or gone); None when it answered.
    unreachable: str | None = None
    # The fabric cannot be used until a person acts (not initialised, declared
    # wrongly): its plans are Blocked rather than waiting.
    broken: bool = False
    # Names two or more VMs of the fabric report, with those VMs (each with
    # its own `vm_id`): such a name is in no `vms` entry, since drctl never
    # guesses which of them a spec means (unless the spec pins one by its id:
    # `core.pin`, which moves that one into `vms` and leaves the others here).
    duplicates: Mapping[str, tuple[ObservedVM, ...]] = field(default_factory=dict)
    # False for a fabric that never reports power (ASR): its active copies read
    # Unknown always, not until a site answers again (see `runs_at`).
    reports_power: bool = True
    # True for a fabric that moves a whole grouped plan in its group order itself
    # (ASR recovery plans): the planner asks it when it cannot stop VMs.
    plan_failover: bool = False
    # True for a fabric that takes a recovery point only when it fails over
    # (Hyper-V Replica: `Start-VMFailover -VMRecoverySnapshot`) and offers no
    # ApplyRecoveryPoint after it: the planner names the spec's `recoveryPoint`
    # in the unplanned failover itself (`Action.recovery_point`), never later.
    points_at_failover: bool = False
    # Names a spec pins to an id of the fabric (asrItem) that no VM of that
    # name has, with why (`core.pin`): such a name is in no `vms` entry.
    unpinned: Mapping[str, str] = field(default_factory=dict)
    # How long each operation typically takes on this fabric, in seconds (the
    # simulator's timings); the planner's default deadlines come from it, and
    # from `plan.guardrail.TYPICAL_SECONDS` for a fabric that says nothing.
    typical_durations: Mapping[Operation, float] = field(default_factory=dict)

    def runs_at(self, vm: ObservedVM, site: str) -> bool:
        """A copy of `vm` runs at `site` as far as this fabric can ever tell.

        Known running; or, on a fabric that reports no power, the copy it keeps
        active there: drctl can neither see nor start it, and waiting would never
        make its power known. Any other Unknown copy may run and is never read so.
        """
        if site in vm.running:
            return True
        return not self.reports_power and site == vm.active_site and site in vm.power_unknown

    def site_connected(self, name: str) -> bool:
        site = self.sites.get(name)
        return site is not None and site.connected
