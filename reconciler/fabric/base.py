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

from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self

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


class Provider(Protocol):
    """A two-site fabric that replicates VMs and runs DR operations on them."""

    @property
    def keeps_intent_ids(self) -> bool:
        """Whether every job started by `start` reports the request's `intent_id` back.

        True for ASR (`x-ms-client-request-id` comes back as the job's
        `activityId`) and the simulator; False for Hyper-V Replica, whose jobs
        carry nothing of the caller's. The executor reads it when it adopts
        the job of an interrupted call (`engine.adopt`), before it has
        observed anything: a property of the provider, not of an observation
        (the planner, which sees only observations, reads `can_stop_vms` there).
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
