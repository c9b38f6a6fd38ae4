"""The seam between the journal's readers and writers and where it is kept.

Two backends keep the same history, read the same way: `journal.Journal`
(SQLite in the state dir: one node, as it always was) and
`journal_etcd.EtcdJournal` (etcd under the `--lock` prefix: every replica
reads what the leader wrote). The executor (engine/execute.py,
engine/intent.py), the daemon (daemon/loop.py, health.py, admit.py,
progress.py), status and audit take a `Backend`; it is exactly the
SQLite journal's public methods, so a method added there is added here.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from reconciler.core import plan
from reconciler.core.desired import EMBEDDED_FABRIC
from reconciler.core.state import Operation
from reconciler.engine import intervention, journal_file
from reconciler.engine.journal import Entry
from reconciler.fabric.base import Step


class Backend(Protocol):
    """What drctl reads from and writes to its journal, wherever it is kept."""

    @property
    def path(self) -> object: ...  # what to name in a message: a file, or an etcd URL

    identity: journal_file.Identity

    @property
    def lost(self) -> str | None: ...

    def close(self) -> None: ...

    def probe(self) -> None: ...

    def record_intent(
        self, action: plan.Action, revision: str, at: datetime, fabric: str = EMBEDDED_FABRIC
    ) -> Entry: ...

    def record_started(self, entry_id: int, job_id: str, at: datetime) -> None: ...

    def record_outcome(
        self,
        entry_id: int,
        result: str,
        at: datetime,
        error: str | None = None,
        data_loss_seconds: float | None = None,
        job_started_at: datetime | None = None,
    ) -> None: ...

    def record_unsettled(self, entry: Entry, reason: str) -> Entry: ...

    def unsettled(self, revision: str) -> dict[str, str]: ...

    def record_deferred(
        self, entry_id: int, at: datetime, error: str, retry_after: float | None = None
    ) -> None: ...

    def record_converged(self, revision: str, vms: list[tuple[str, str]], at: datetime) -> None: ...

    def convergences(self) -> dict[tuple[str, str], datetime]: ...

    def record_drill(self, record: plan.DrillRecord) -> None: ...

    def drills(self) -> list[plan.DrillRecord]: ...

    def record_intervention(
        self, record: intervention.Intervention
    ) -> intervention.Intervention: ...

    def interventions(self) -> list[intervention.Intervention]: ...

    def record_step(self, fabric: str, step: Step) -> None: ...

    def steps(self, fabric: str) -> list[Step]: ...

    def abandon_open(self, at: datetime, reason: str, fabric: str | None = None) -> int: ...

    def own_jobs(self) -> dict[str, datetime]: ...

    def stopped_by_drctl(self) -> frozenset[str]: ...

    def deferred_tails(self) -> list[Entry]: ...

    def open_entries(self) -> list[Entry]: ...

    def entries(self, revision: str | None = None) -> list[Entry]: ...

    def attempts(
        self, revision: str, backoff: Callable[[int], float]
    ) -> dict[tuple[str, Operation], plan.Attempts]: ...


# How the daemon opens its journal (again, after it was refused): the state
# dir's SQLite file, or the shared one in etcd with this replica's fence.
Opener = Callable[[], Backend]
