"""The journal as the step log of a provider that runs its own multi-step jobs.

`engine.fabrics.Fabrics` hands one `StepLog` per fabric to each provider that
owns its jobs (`fabric.base.OwnsJobs`: Hyper-V Replica, which has no
service-side jobs). The provider records each step before the call it
announces; this log checks drctl's hard rules for that call first
(`guard.step_refusal`), so that a call they forbid is never recorded and
never made. A log opened read-only (`drctl status`, `plan`) refuses every
write: those commands start nothing.
"""

from __future__ import annotations

from reconciler import errors
from reconciler.engine import guard, journal_backend
from reconciler.fabric import base


class JournalStepLog:
    """The steps of fabric `fabric` (of kind `kind`) in `journal`."""

    def __init__(
        self, journal: journal_backend.Backend, fabric: str, kind: str, *, writable: bool = True
    ) -> None:
        self._journal = journal
        self._fabric = fabric
        self._kind = kind
        self._writable = writable

    def record_step(self, step: base.Step) -> None:
        if step.kind in {"issue", "revert"}:
            denied = guard.step_refusal(self._kind, step.cmdlet, step.purpose)
            if denied is not None:
                raise errors.TerminalError(denied)
        if not self._writable:
            raise errors.RejectedError(
                "this drctl only reads the journal (status, plan): it starts nothing"
            )
        self._journal.record_step(self._fabric, step)

    def steps(self) -> list[base.Step]:
        return self._journal.steps(self._fabric)
