"""The one Protocol every fabric implements, and what an operation request carries.

The executor, the CLI and the daemon talk to a fabric only through `Provider`.
Implementations: `sim` (the embedded two-site simulator, the default), later
Azure Site Recovery and Hyper-V Replica. Errors are the `ProviderError`
subclasses of `reconciler.errors`: RejectedError (precondition not met),
TransientError (retry), ThrottledError (retry after N s), TerminalError.
There is deliberately no cancel: drctl never cancels a failover.

Every start carries the journal's intent id (`Request.intent_id`). A fabric
that keeps it with the job (`Provider.keeps_intent_ids`) reports it back as
`Job.intent_id`: after a crash between the intent and the start's answer,
the executor finds its job by that id alone (`engine.adopt`).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from reconciler.core import state


@dataclass(frozen=True, slots=True)
class Request:
    """An operation to start on one VM.

    `target_site` names where a failover (planned, unplanned, test) brings the
    VM, which copy StopVM stops, and the replica site for EnableReplication.
    `shutdown_source` is ASR's `sourceSiteOperations: Required` for an
    unplanned failover: try to shut the source down first, continue if that
    fails. `recovery_point` picks the point for ApplyRecoveryPoint (latest when
    None). `intent_id` is the id of the journal entry the call is made for
    (`journal.Entry.intent_id`), unique across journals; a fabric that keeps
    intent ids stores it with the job (ASR: the `x-ms-client-request-id`
    header, which the job reports as its `activityId`). None: a call made
    outside drctl's executor (an operator in the portal, a test).
    """

    vm: str
    operation: state.Operation
    target_site: str | None = None
    shutdown_source: bool = False
    recovery_point: str | None = None
    intent_id: str | None = None
    # Non-empty: move the whole plan `plan` (its VMs in boot groups) through the
    # fabric's plan-level failover, for a fabric observed with `plan_failover`.
    plan: str | None = None
    plan_groups: tuple[tuple[str, ...], ...] = ()
    # (VM name, the fabric's id of it) for each VM of the request that the spec
    # pins to one item (`asrItem`): the fabric acts on that item, or refuses.
    vm_ids: tuple[tuple[str, str], ...] = ()
    # TestFailover: the isolated network the test copy joins (spec.drill.network);
    # None: the fabric's own choice for a test failover.
    network: str | None = None


@dataclass(frozen=True, slots=True)
class Retired:
    """What became of a fabric's own object for a plan that left the spec (`RetiresPlans`)."""

    plan: str  # the drctl plan
    name: str  # the fabric's object (an ASR recovery plan: drctl-<plan>)
    deleted: bool  # False: left in place for now, `reason` says why
    reason: str


@runtime_checkable
class RetiresPlans(Protocol):
    """A fabric that keeps objects of its own per drctl plan (ASR: a recovery plan each)."""

    def retire_plans(self, keep: Collection[str]) -> list[Retired]:
        """Delete what this drctl wrote for plans not in `keep`; say what became of each."""
        ...


@dataclass(frozen=True, slots=True)
class FabricPlan:
    """A fabric's own recovery plan (ASR's), as `drctl import --from-recovery-plans` reads it.

    `groups` holds the VM names (the protected items' friendly names) of each
    Boot group, in boot order.
    """

    name: str
    groups: tuple[tuple[str, ...], ...]


@runtime_checkable
class ListsRecoveryPlans(Protocol):
    """A fabric that keeps recovery plans of its own (ASR), which `drctl import` can read."""

    def recovery_plans(self) -> list[FabricPlan]:
        """Every recovery plan of the fabric, by name, with its Boot groups in boot order."""
        ...


@dataclass(frozen=True, slots=True)
class Step:
    """One record of a multi-step job a provider runs itself (`OwnsJobs`).

    Written to drctl's journal before the call it announces (`issue`), and
    after (`done`, `error`), so that after a crash between two calls the
    provider can tell which calls it made. `cmdlet` and `purpose` let the
    engine's hard rules (`engine.guard.step_refusal`) judge a call before it
    is made: the step log refuses to record what they forbid, and what is
    not recorded is never sent.
    """

    job_id: str
    vm: str
    kind: str  # begin, issue, done, error, revert, end
    detail: str = ""  # JSON or text, as the provider writes it
    at: datetime | None = None
    cmdlet: str | None = None  # the call an `issue` or `revert` announces
    purpose: str | None = None  # why, for a call the hard rules allow only for some purposes


class StepLog(Protocol):
    """Where a provider that owns its jobs keeps their steps: drctl's journal, per fabric."""

    def record_step(self, step: Step) -> None:
        """Record `step` durably, or raise (a refused call: RejectedError; a journal that
        takes no write: StateDirError); the call it announces is made only after."""
        ...

    def steps(self) -> list[Step]:
        """Every step recorded for this fabric, in order."""
        ...


@runtime_checkable
class OwnsJobs(Protocol):
    """A provider whose fabric has no service-side jobs (Hyper-V Replica): drctl's own
    multi-step jobs, journaled step by step through the `StepLog` the engine hands it.
    `fabric_kind` names the scope of drctl's hard rules its calls fall under."""

    fabric_kind: str

    def use_step_log(self, log: StepLog) -> None: ...


class Provider(Protocol):
    """A two-site fabric that replicates VMs and runs DR operations on them."""

    @property
    def keeps_intent_ids(self) -> bool:
        """Whether every job started by `start` reports the request's `intent_id` back.

        True for ASR (`x-ms-client-request-id` comes back as the job's
        `activityId`), the simulator, and Hyper-V Replica, whose jobs are
        drctl's own (`OwnsJobs`, their steps in drctl's journal). The
        executor reads it when it adopts the job of an interrupted call
        (`engine.adopt`), before it has observed anything: a property of the
        provider, not of an observation (the planner, which sees only
        observations, reads `can_stop_vms` there).
        """
        ...

    def observe(self) -> state.Observed:
        """Report every site and every VM the fabric knows, with current jobs."""
        ...

    def start(self, request: Request) -> str:
        """Start an operation and return its job id; raise a ProviderError if refused.

        A fabric that `keeps_intent_ids` keeps `request.intent_id` with the job.
        """
        ...

    def get_job(self, job_id: str) -> state.Job:
        """Read one job as the fabric reports it now."""
        ...

    def list_jobs(self) -> list[state.Job]:
        """Every job the fabric remembers, in start order."""
        ...

    def close(self) -> None:
        """Release what the provider holds (files, connections); jobs keep running."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...
