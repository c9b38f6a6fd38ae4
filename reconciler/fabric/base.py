"""The one Protocol every fabric implements, and what an operation request carries.

The executor, the CLI and the daemon talk to a fabric only through `Provider`.
Implementations: `sim` (the embedded two-site simulator, the default), later
Azure Site Recovery and Hyper-V Replica. Errors are the `ProviderError`
subclasses of `reconciler.errors`: RejectedError (precondition not met),
TransientError (retry), ThrottledError (retry after N s), TerminalError.
There is deliberately no cancel: drctl never cancels a failover.
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
    None).
    """

    vm: str
    operation: state.Operation
    target_site: str | None = None
    shutdown_source: bool = False
    recovery_point: str | None = None


class Provider(Protocol):
    """A two-site fabric that replicates VMs and runs DR operations on them."""

    def observe(self) -> state.Observed:
        """Report every site and every VM the fabric knows, with current jobs."""
        ...

    def start(self, request: Request) -> str:
        """Start an operation and return its job id; raise a ProviderError if refused."""
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
