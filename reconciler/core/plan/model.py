"""The planner's output: phases, actions and per-VM decisions, as frozen values.

Built by `plan.decide` and `plan.retry`, read by the executor, the reports,
metrics and the daemon.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from reconciler.core import state
from reconciler.core.desired import DesiredVM
from reconciler.core.state import Operation

MAX_ATTEMPTS = 3


class Phase(StrEnum):
    CONVERGED = "Converged"
    STOPPING = "Stopping"
    STARTING = "Starting"
    FAILING_OVER = "FailingOver"
    COMMIT_PENDING = "CommitPending"
    REPROTECTING = "Reprotecting"
    SYNCING = "Syncing"
    WAITING_FOR_SITE = "WaitingForSite"
    BLOCKED = "Blocked"
    # A person must decide: the fabric changed outside drctl, or a step would
    # destroy the only copy of some writes. The reason says what to commit.
    HELD = "Held"
    WAITING_FOR_USER = "WaitingForUser"  # a job in the fabric waits for a manual step
    # A job runs past its deadline (policy.deadlines): followed, never cancelled.
    STUCK = "Stuck"
    # The plan says `suspend: true`: nothing starts, drift is still reported.
    SUSPENDED = "Suspended"
    # A drill (spec.drill) runs: test copies at the peer; production untouched.
    DRILLING = "Drilling"


class DrillStep(StrEnum):
    """Where a drill of a plan is: what `drctl status` says after `Drilling`."""

    STARTING = "starting"  # TestFailover by group: a group's copies after the previous run
    CHECKING = "checking"  # every test copy runs: the checks run once, then the keep time
    KEEPING = "keeping"  # the copies are kept keepMinutes for people to look at
    CLEANING = "cleaning"  # TestFailoverCleanup in reverse group order
    PREEMPTED = "preempted"  # a real move is wanted: clean up first, then the move
    ENDED = "ended"  # every copy is gone: the result is recorded


@dataclass(frozen=True, slots=True)
class CheckResult:
    check: str  # DrillCheck.text
    passed: bool
    detail: str  # what the probe saw, in a line


@dataclass(frozen=True, slots=True)
class DrillRecord:
    """One drill of one plan as the journal keeps it (`engine.drill` writes it).

    `running_at` is when every test copy ran (the checks ran then; the keep time
    counts from it). `failed` says why the drill cleans up early; `result` is
    passed, failed or preempted once `ended_at` is set.
    """

    plan: str
    id: str
    started_at: datetime
    running_at: datetime | None = None
    ended_at: datetime | None = None
    result: str | None = None
    failed: str | None = None
    preempted: bool = False
    checks: tuple[CheckResult, ...] = ()
    revision: str | None = None
    # The plan's VMs in boot order when the drill goes through the fabric's
    # plan-level test operations (ASR's recovery plan): the journal holds the
    # first one's entries, which stand for every one of them.
    whole: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DrillView:
    """What the planner makes of a plan's drill this pass (`plan.drill`)."""

    plan: str
    id: str
    step: DrillStep
    reason: str
    keep_until: datetime | None = None  # KEEPING: when the cleanup starts
    whole: tuple[str, ...] = ()  # the plan's VMs, when a plan-level test operation is asked


@dataclass(frozen=True)
class Provenance:
    """What drctl itself did, from its journal, and when the revision in force was made.

    `own_jobs` maps the id of every job drctl started to when it started it. A
    failover whose job is not there, or was started after drctl's own job of
    that id (a fabric re-created), was made outside drctl. `revision_made_at`
    is when the revision in force was committed (or its files last changed):
    only a revision made after an out-of-band move may move the VM again.
    `unsettled` maps a VM to why it starts nothing: drctl cannot tell which
    of several jobs is the call it made before a restart (`engine.adopt`).
    """

    own_jobs: Mapping[str, datetime] = field(default_factory=dict)
    revision_made_at: datetime | None = None
    revision: str | None = None  # the revision in force (consent given for one revision)
    unsettled: Mapping[str, str] = field(default_factory=dict)
    # VMs drctl itself stopped last (journal.stopped_by_drctl): started back
    # where they ran when their plan's move cannot go on (rule 9).
    stopped_by_drctl: frozenset[str] = frozenset()
    # Each plan's latest drill in the journal (`engine.drill`): a spec drill id
    # whose record has ended is done, and never runs again.
    drills: Mapping[str, DrillRecord] = field(default_factory=dict)

    def is_own(self, job_id: str, ended_at: datetime | None) -> bool:
        started = self.own_jobs.get(job_id)
        return started is not None and (ended_at is None or started <= ended_at)


@dataclass(frozen=True, slots=True)
class Attempts:
    """Failed attempts of one (VM, operation) for the revision in force.

    `retry_at` also holds an action back after a transient error of the
    fabric (a timeout, a 429), which counts no failure: `failures` may be 0.
    """

    failures: int
    last_error: str
    retry_at: datetime | None = None


AttemptsByAction = Mapping[tuple[str, Operation], Attempts]


@dataclass(frozen=True, slots=True)
class Action:
    """The next operation for one VM, and what it waits for."""

    plan: str
    vm: str
    operation: Operation
    target_site: str | None
    shutdown_source: bool = False
    ready: bool = True  # startable now; otherwise `waiting_for` says on what
    waiting_for: tuple[str, ...] = ()
    stage: tuple[int, int] = (0, 0)
    source_site: str | None = None  # where the VM is active when the action is planned
    retry_at: datetime | None = None  # waiting for "backoff": when it may start again
    # ApplyRecoveryPoint, or an UnplannedFailover on a fabric that takes its point then
    # (`Observed.points_at_failover`): the id of the point to boot
    recovery_point: str | None = None
    # The whole plan, in boot groups, moved by the fabric's plan-level failover.
    plan_groups: tuple[tuple[str, ...], ...] = ()
    network: str | None = None  # TestFailover: the isolated network (spec.drill.network)

    @property
    def direction(self) -> str | None:
        """`<from>-><to>` for an action that moves a VM or its replication."""
        if self.operation in _MOVES and self.source_site and self.target_site:
            return f"{self.source_site}->{self.target_site}"
        return None


_MOVES = frozenset(
    {
        Operation.PLANNED_FAILOVER,
        Operation.UNPLANNED_FAILOVER,
        Operation.REVERSE_REPLICATE,
        Operation.ENABLE_REPLICATION,
    }
)


@dataclass(frozen=True, slots=True)
class Readiness:
    """What an operator checks before committing a move: is the replica fresh?"""

    replication_health: str | None
    last_sync_age_seconds: float | None
    rpo_at_risk: bool


@dataclass(frozen=True, slots=True)
class VMPlan:
    desired: DesiredVM
    observed: state.ObservedVM | None
    phase: Phase
    reason: str
    action: Action | None
    placed: bool
    protected: bool
    readiness: Readiness
    # False when the plan's fabric could not be observed (or opened) this pass:
    # `observed` is None then because nothing is known, not because the VM is gone.
    fabric_observed: bool = True

    @property
    def converged(self) -> bool:
        return self.placed and self.protected

    @property
    def name(self) -> str:
        return self.desired.name

    @property
    def plan(self) -> str:
        return self.desired.plan


@dataclass(frozen=True)
class Plan:
    vms: tuple[VMPlan, ...]
    actions: tuple[Action, ...]  # ordered: stops, failovers by group, commits, reprotects
    unmanaged: tuple[str, ...]
    max_parallel: Mapping[str, int] = field(default_factory=dict)
    # For each plan with a VM to move: the path its failovers take (rule 4).
    failover_paths: Mapping[str, str] = field(default_factory=dict)
    # Each plan whose drill runs (or ends) this pass: what it does now.
    drills: Mapping[str, DrillView] = field(default_factory=dict)
    # Each plan's latest drill as the journal keeps it (Provenance.drills): for status.
    drill_records: Mapping[str, DrillRecord] = field(default_factory=dict)

    @property
    def converged(self) -> bool:
        """Every VM placed and protected, and no drill under way (it ends by itself)."""
        return all(vm.converged for vm in self.vms) and not self.drills

    def plan_converged(self, name: str) -> bool:
        return all(vm.converged for vm in self.vms if vm.plan == name) and name not in self.drills

    def ready_actions(self) -> list[Action]:
        return [a for a in self.actions if a.ready]
