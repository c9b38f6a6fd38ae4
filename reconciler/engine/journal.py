"""The journal: an append-only SQLite history of every action drctl took.

Each action is written as an intent before the provider is called, then
updated with its job id and its outcome. The executor reads it back for two
things only: the failed attempts per (VM, operation, revision), so that a
restart does not reset the retry budget (nor the backoff after a transient
error, which spends none), and the actions whose outcome it has not yet
seen. It is never the source of truth for what to do next: the fabric is.

Each intent gets an intent id (`Entry.intent_id`), which the executor passes
on with the call (`fabric.base.Request.intent_id`): a uuid4 made when the
intent is recorded. The row id is not enough, being unique within one file
only: a state dir made again, or a second drctl in front of the same
fabric, counts from 1 again, and the fabric holds the jobs of both. Rows
written before intent ids were kept have none, as had their calls.

The file is checked when opened (engine/journal_file.py): a damaged journal,
another program's database, a directory, or a journal other than the one the
state dir last used is refused with what to do; a new one where an older
one was is used with a loud warning (`Journal.lost`). Every SQLite error is
raised as a `StateDirError`: busy (`JournalBusyError`), not writable
(`StateWriteError`: read-only, full), or damaged (`StateFileError`). A
writer (apply, the daemon) notes after each intent how far it wrote, in the
state dir's record of its journal (`journal.id`), so that records lost while
drctl was stopped are noticed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from reconciler.core import plan
from reconciler.core.desired import EMBEDDED_FABRIC
from reconciler.core.state import Operation
from reconciler.engine import drill_record, intervention, journal_file
from reconciler.engine import state_dir as layout
from reconciler.errors import StateWriteError
from reconciler.fabric.base import Step

_SCHEMA = """
CREATE TABLE IF NOT EXISTS actions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    plan TEXT NOT NULL,
    vm TEXT NOT NULL,
    operation TEXT NOT NULL,
    target_site TEXT,
    direction TEXT,
    revision TEXT NOT NULL,
    intended_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    job_id TEXT,
    result TEXT NOT NULL DEFAULT 'intended',
    error TEXT,
    data_loss_seconds REAL,
    retry_after REAL,
    fabric TEXT NOT NULL DEFAULT 'embedded',
    intent_id TEXT,
    job_started_at TEXT
);
CREATE INDEX IF NOT EXISTS actions_open ON actions (result) WHERE result IN ('intended', 'running');
CREATE INDEX IF NOT EXISTS actions_unsettled ON actions (vm) WHERE result = 'unsettled';
CREATE INDEX IF NOT EXISTS actions_revision ON actions (revision, vm, operation);
CREATE TABLE IF NOT EXISTS convergences (
    revision TEXT NOT NULL,
    plan TEXT NOT NULL,
    vm TEXT NOT NULL,
    converged_at TEXT NOT NULL,
    PRIMARY KEY (revision, vm)
);
CREATE TABLE IF NOT EXISTS journal_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS steps (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    fabric TEXT NOT NULL,
    job_id TEXT NOT NULL,
    vm TEXT NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL,
    cmdlet TEXT,
    purpose TEXT,
    at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS steps_fabric ON steps (fabric, id);
CREATE TABLE IF NOT EXISTS interventions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    at TEXT NOT NULL,
    doc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS drills (
    plan TEXT NOT NULL,
    id TEXT NOT NULL,
    started_at TEXT NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (plan, id)
);
"""
# Every table and index of _SCHEMA, by name (a reader checks them before it skips the set-up).
_SCHEMA_NAMES = frozenset(re.findall(r"CREATE (?:TABLE|INDEX) IF NOT EXISTS (\w+)", _SCHEMA))
# Columns added to `actions` since its first release, each with its declaration.
_ADDED_COLUMNS = {
    "direction": "TEXT",  # a journal written before directions were kept
    "retry_after": "REAL",  # ... or before throttling was kept
    # ... or before several fabrics: all were the embedded one
    "fabric": f"TEXT NOT NULL DEFAULT '{EMBEDDED_FABRIC}'",
    "intent_id": "TEXT",  # ... or before intent ids: their calls carried none
    "job_started_at": "TEXT",  # ... or before the fabric's own start was kept
}


# How long one statement waits for another process's lock on the journal
# before drctl says it is busy (and the daemon waits, saying why). Only a
# process outside drctl writes to it (an sqlite3 shell, a backup tool): the
# fabric lock lets one drctl at a time act.
BUSY_TIMEOUT = 2.0
# A writer notes how far it wrote in the state dir's record at most this
# often (and when it closes): each note is a small file renamed into place.
NOTE_EVERY = 1.0

INTENDED = "intended"  # recorded before calling the provider
RUNNING = "running"  # the fabric accepted it and returned a job id
SUCCEEDED = "succeeded"
FAILED = "failed"  # the job failed, or the fabric said the call cannot succeed (terminal)
NOT_ISSUED = "not-issued"  # intent recorded, but the fabric never saw the call
# Still open: several jobs of the fabric could be the call's, and drctl never
# guesses which (`engine.adopt`); its VM starts nothing under this revision.
UNSETTLED = "unsettled"
# Neither of these spends an attempt: the fabric did not take the call.
# Not allowed in the VM's state now (RejectedError): planned again; or forbidden
# by drctl's hard rules (engine.guard), the provider never called.
REFUSED = "refused"
DEFERRED = "deferred"  # a transient error or throttling: retried after a backoff
# Closed with its outcome unknown: open when the fabric it ran on was replaced,
# or unsettled when a new revision came into force.
ABANDONED = "abandoned"
_OPEN = (INTENDED, RUNNING, UNSETTLED)
OPEN = _OPEN  # the results of an action whose outcome drctl has not seen (either backend)


@dataclass(frozen=True, slots=True)
class Entry:
    id: int
    plan: str
    vm: str
    operation: Operation
    target_site: str | None
    revision: str
    intended_at: datetime
    job_id: str | None
    result: str
    error: str | None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    data_loss_seconds: float | None = None
    direction: str | None = None  # `<from>-><to>` of a failover or a replication change
    fabric: str = EMBEDDED_FABRIC  # the fabric it was issued to (older rows: the embedded one)
    intent_id: str | None = None  # passed on with the call; None in rows of older journals
    # The leader's fencing token when it recorded the intent (the etcd journal only).
    fencing_token: int | None = None


class Journal:
    def __init__(
        self, state_dir: Path, *, writer: bool = True, busy_timeout: float = BUSY_TIMEOUT
    ) -> None:
        """Open (or make) the journal of `state_dir`; refuse one drctl must not use.

        `writer` False (status, plan, audit) leaves the state dir's record of
        its journal as it is.
        """
        self.path = layout.journal_path(state_dir)
        self._state_dir = state_dir
        self._writer = writer
        self._written: int | None = None  # the newest intent not yet noted in `journal.id`
        self._noted_at = -NOTE_EVERY
        self._db, created = journal_file.connect(self.path, busy_timeout)
        try:
            journal_file.into_wal(self._db, busy_timeout)
            self._set_up(created)
            self.identity = journal_file.identify(self._db, state_dir, created, writer=writer)
        except sqlite3.Error as exc:
            self._db.close()
            raise journal_file.translated(self.path, exc) from exc
        except BaseException:
            self._db.close()
            raise

    @property
    def lost(self) -> str | None:
        """What the state dir says this journal lost (it is new, or shorter): warn loudly."""
        return self.identity.lost

    def _set_up(self, created: bool) -> None:
        if not self._writer and not created and self._up_to_date():
            # A reader (`drctl status` beside a busy daemon) takes no write lock when the
            # journal has everything: under load it would wait for the daemon's writes.
            return
        # One transaction, so that a new journal never exists without its id.
        self._db.executescript("BEGIN IMMEDIATE; " + _SCHEMA)  # the write lock first: others wait
        try:
            if created:
                # OR IGNORE: another drctl (a `status` beside the daemon) may have
                # made the same new journal a moment before; its id stands.
                self._db.execute(
                    "INSERT OR IGNORE INTO journal_meta (key, value) VALUES ('id', ?)",
                    (uuid.uuid4().hex,),
                )
            self._db.execute("COMMIT")
        finally:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
        if self._db.execute("PRAGMA application_id").fetchone()[0] != journal_file.APPLICATION_ID:
            self._db.execute(f"PRAGMA application_id = {journal_file.APPLICATION_ID}")
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(actions)")}
        for name, declaration in _ADDED_COLUMNS.items():
            if name not in columns:
                try:
                    self._db.execute(f"ALTER TABLE actions ADD COLUMN {name} {declaration}")
                except sqlite3.OperationalError as exc:
                    # Another drctl opening this journal added it a moment before.
                    if "duplicate column" not in str(exc):
                        raise

    def _up_to_date(self) -> bool:
        """Whether the journal has every table, index and column this drctl writes."""
        names = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master")}
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(actions)")}
        app = self._db.execute("PRAGMA application_id").fetchone()[0]
        return (
            names >= _SCHEMA_NAMES
            and set(_ADDED_COLUMNS) <= columns
            and app == journal_file.APPLICATION_ID
        )

    def close(self) -> None:
        """Close the file; the last connection to close checkpoints the WAL into it."""
        self._note()
        with contextlib.suppress(sqlite3.Error):
            self._db.close()

    def _note(self) -> None:
        """A writer's record of how far it wrote (`journal.id`), after the intents it counts.

        It may lag, never lead: one that cannot be written (the state dir says
        so elsewhere) is tried again later, and a lag never warns wrongly.
        """
        if not self._writer or self._written is None:
            return
        self._noted_at = time.monotonic()
        with contextlib.suppress(StateWriteError):
            journal_file.note_written(self._state_dir, self.identity.journal_id, self._written)
            self._written = None

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
            self._db.execute("COMMIT")
        except BaseException:
            # A COMMIT that failed (disk full, busy) leaves the transaction open.
            if self._db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
            raise

    @journal_file.translating
    def probe(self) -> None:
        """A write that changes nothing drctl reads: raises while the journal takes no writes."""
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO journal_meta (key, value) VALUES ('probe', ?)",
                (uuid.uuid4().hex,),
            )

    @journal_file.translating
    def record_intent(
        self, action: plan.Action, revision: str, at: datetime, fabric: str = EMBEDDED_FABRIC
    ) -> Entry:
        """Record `action` before its call, with a new intent id; the entry as read back."""
        intent_id = uuid.uuid4().hex
        with self._write() as db:
            cursor = db.execute(
                "INSERT INTO actions (plan, vm, operation, target_site, direction, revision, "
                "intended_at, fabric, intent_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    action.plan,
                    action.vm,
                    str(action.operation),
                    action.target_site,
                    action.direction,
                    revision,
                    at.isoformat(),
                    fabric,
                    intent_id,
                ),
            )
            assert cursor.lastrowid is not None  # noqa: S101 (sqlite always sets it)
        self._written = cursor.lastrowid
        if time.monotonic() >= self._noted_at + NOTE_EVERY:
            self._note()
        return Entry(
            cursor.lastrowid,
            action.plan,
            action.vm,
            action.operation,
            action.target_site,
            revision,
            at,
            None,
            INTENDED,
            None,
            direction=action.direction,
            fabric=fabric,
            intent_id=intent_id,
        )

    @journal_file.translating
    def record_started(self, entry_id: int, job_id: str, at: datetime) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE actions SET job_id = ?, started_at = ?, result = ? WHERE id = ?",
                (job_id, at.isoformat(), RUNNING, entry_id),
            )

    @journal_file.translating
    def record_outcome(
        self,
        entry_id: int,
        result: str,
        at: datetime,
        error: str | None = None,
        data_loss_seconds: float | None = None,
        job_started_at: datetime | None = None,
    ) -> None:
        """The end of an action. `job_started_at`: when its job started by the fabric's
        clock (which may differ from drctl's), for `own_jobs`."""
        with self._write() as db:
            db.execute(
                "UPDATE actions SET result = ?, finished_at = ?, error = ?, "
                "data_loss_seconds = ?, job_started_at = COALESCE(?, job_started_at) "
                "WHERE id = ?",
                (
                    result,
                    at.isoformat(),
                    error,
                    data_loss_seconds,
                    None if job_started_at is None else job_started_at.isoformat(),
                    entry_id,
                ),
            )

    @journal_file.translating
    def record_step(self, fabric: str, step: Step) -> None:
        """One step of a job a provider runs itself (`fabric.base.OwnsJobs`), before its call."""
        with self._write() as db:
            db.execute(
                "INSERT INTO steps (fabric, job_id, vm, kind, detail, cmdlet, purpose, at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    fabric,
                    step.job_id,
                    step.vm,
                    step.kind,
                    step.detail,
                    step.cmdlet,
                    step.purpose,
                    (step.at or datetime.now().astimezone()).isoformat(),
                ),
            )

    @journal_file.translating
    def steps(self, fabric: str) -> list[Step]:
        """The steps of `fabric`'s own jobs, in the order they were recorded."""
        rows = self._db.execute(
            "SELECT job_id, vm, kind, detail, at, cmdlet, purpose FROM steps "
            "WHERE fabric = ? ORDER BY id",
            (fabric,),
        )
        return [
            Step(str(j), str(v), str(k), str(d), datetime.fromisoformat(str(a)), c, p)
            for j, v, k, d, a, c, p in rows
        ]

    @journal_file.translating
    def record_unsettled(self, entry: Entry, reason: str) -> Entry:
        """The fabric holds several jobs `entry`'s call could have started: it stays open."""
        with self._write() as db:
            db.execute(
                "UPDATE actions SET result = ?, error = ? WHERE id = ?",
                (UNSETTLED, reason, entry.id),
            )
        return dataclasses.replace(entry, result=UNSETTLED, error=reason)

    @journal_file.translating
    def unsettled(self, revision: str) -> dict[str, str]:
        """Why each VM with an unsettled call of `revision` starts nothing: VM -> the reason.

        Under another revision the executor closes them (`execute.Executor`).
        """
        rows = self._db.execute(
            "SELECT vm, error FROM actions WHERE result = ? AND revision = ? ORDER BY id",
            (UNSETTLED, revision),
        )
        return {str(vm): str(error) for vm, error in rows}

    @journal_file.translating
    def record_deferred(
        self, entry_id: int, at: datetime, error: str, retry_after: float | None = None
    ) -> None:
        """The fabric did not take the call for a reason that passes; `retry_after` if it said."""
        with self._write() as db:
            db.execute(
                "UPDATE actions SET result = ?, finished_at = ?, error = ?, retry_after = ? "
                "WHERE id = ?",
                (DEFERRED, at.isoformat(), error, retry_after, entry_id),
            )

    @journal_file.translating
    def record_converged(self, revision: str, vms: list[tuple[str, str]], at: datetime) -> None:
        """The first time each (plan, VM) is seen converged under `revision`."""
        with self._write() as db:
            db.executemany(
                "INSERT OR IGNORE INTO convergences (revision, plan, vm, converged_at) "
                "VALUES (?, ?, ?, ?)",
                [(revision, plan_name, vm, at.isoformat()) for plan_name, vm in vms],
            )

    @journal_file.translating
    def record_drill(self, record: plan.DrillRecord) -> None:
        """Keep `record` (a new drill, or the next step of one: the newest wins)."""
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO drills (plan, id, started_at, doc) VALUES (?, ?, ?, ?)",
                (
                    record.plan,
                    record.id,
                    record.started_at.isoformat(),
                    drill_record.to_text(record),
                ),
            )

    @journal_file.translating
    def drills(self) -> list[plan.DrillRecord]:
        """Every drill recorded, oldest first."""
        rows = self._db.execute("SELECT doc FROM drills ORDER BY started_at").fetchall()
        return [drill_record.from_text(doc) for (doc,) in rows]

    @journal_file.translating
    def record_intervention(self, record: intervention.Intervention) -> intervention.Intervention:
        """Keep a break-glass record (engine/intervention.py); the record as kept.

        A retry clears through the newest action now, but for those of its VMs
        still open: found in the same transaction as the write, so an action
        recorded after it is never cleared.
        """
        with self._write() as db:
            (through,) = db.execute("SELECT COALESCE(MAX(id), 0) FROM actions").fetchone()
            names = sorted({vm for _, vm, _ in record.vms})
            marks = ", ".join("?" * len(names))
            still_open = db.execute(
                f"SELECT id FROM actions WHERE vm IN ({marks}) AND result IN (?, ?, ?)",  # noqa: S608
                (*names, *_OPEN),
            ).fetchall()
            kept = dataclasses.replace(
                record, through=int(through), still_open=frozenset(i for (i,) in still_open)
            )
            db.execute(
                "INSERT INTO interventions (kind, at, doc) VALUES (?, ?, ?)",
                (kept.kind, kept.at.isoformat(), kept.to_text()),
            )
        return kept

    @journal_file.translating
    def interventions(self) -> list[intervention.Intervention]:
        """Every break-glass record, oldest first."""
        rows = self._db.execute("SELECT doc FROM interventions ORDER BY id").fetchall()
        return [intervention.Intervention.from_json(json.loads(doc)) for (doc,) in rows]

    @journal_file.translating
    def convergences(self) -> dict[tuple[str, str], datetime]:
        """When each VM first converged under each revision: (revision, vm) -> time."""
        rows = self._db.execute("SELECT revision, vm, converged_at FROM convergences").fetchall()
        return {(rev, vm): datetime.fromisoformat(at) for rev, vm, at in rows}

    @journal_file.translating
    def abandon_open(self, at: datetime, reason: str, fabric: str | None = None) -> int:
        """Close the open actions of a fabric that was replaced; how many there were.

        `fabric` None closes every open action.
        """
        with self._write() as db:
            if fabric is None:
                cursor = db.execute(
                    "UPDATE actions SET result = ?, finished_at = ?, error = ? "
                    "WHERE result IN (?, ?, ?)",
                    (ABANDONED, at.isoformat(), reason, *_OPEN),
                )
            else:
                cursor = db.execute(
                    "UPDATE actions SET result = ?, finished_at = ?, error = ? "
                    "WHERE result IN (?, ?, ?) AND fabric = ?",
                    (ABANDONED, at.isoformat(), reason, *_OPEN, fabric),
                )
            return cursor.rowcount

    @journal_file.translating
    def own_jobs(self) -> dict[str, datetime]:
        """The job id of every failover drctl started, with when it started it.

        The planner tells drctl's moves from those made outside it by these,
        comparing this time with the fabric's end of the failover: so it is
        the fabric's own start of the job once known (its clock may be
        behind or ahead of drctl's), else when drctl made the call.
        """
        rows = self._db.execute(
            "SELECT job_id, COALESCE(job_started_at, started_at) FROM actions "
            "WHERE job_id IS NOT NULL AND started_at IS NOT NULL AND operation IN (?, ?)",
            (str(Operation.PLANNED_FAILOVER), str(Operation.UNPLANNED_FAILOVER)),
        )
        return {str(job): datetime.fromisoformat(str(at)) for job, at in rows}

    @journal_file.translating
    def stopped_by_drctl(self) -> frozenset[str]:
        """VMs whose latest job drctl started stopped them: a StopVM that succeeded, or a
        planned failover that failed (it may have shut the source down first).

        If their move cannot go on, the planner starts these back where they ran.
        """
        rows = self._db.execute(
            "SELECT vm, operation, result FROM actions a WHERE job_id IS NOT NULL "
            "AND NOT EXISTS (SELECT 1 FROM actions b WHERE b.vm = a.vm AND b.id > a.id "
            "AND b.job_id IS NOT NULL)"
        )
        stops = {
            (str(Operation.STOP_VM), SUCCEEDED),
            (str(Operation.PLANNED_FAILOVER), FAILED),
        }
        return frozenset(str(vm) for vm, op, result in rows if (op, result) in stops)

    @journal_file.translating
    def deferred_tails(self) -> list[Entry]:
        """Deferred starts with no job that are their VM's latest action, oldest first.

        A start that failed transiently may still have reached the fabric (a
        timeout after the fabric took it): a restarted executor asks the
        fabric's job list about these before that VM starts anything again.
        """
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM actions a WHERE result = ? AND job_id IS NULL "  # noqa: S608
            "AND NOT EXISTS (SELECT 1 FROM actions b WHERE b.vm = a.vm AND b.id > a.id) "
            "ORDER BY id",
            (DEFERRED,),
        ).fetchall()
        return [_entry(row) for row in rows]

    @journal_file.translating
    def open_entries(self) -> list[Entry]:
        """Actions whose outcome drctl has not recorded yet, oldest first."""
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM actions WHERE result IN (?, ?, ?) ORDER BY id",  # noqa: S608
            _OPEN,
        ).fetchall()
        return [_entry(row) for row in rows]

    @journal_file.translating
    def entries(self, revision: str | None = None) -> list[Entry]:
        """Every action, oldest first; only those of `revision` when given."""
        if revision is None:
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM actions ORDER BY id").fetchall()  # noqa: S608
        else:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM actions WHERE revision = ? ORDER BY id",  # noqa: S608
                (revision,),
            ).fetchall()
        return [_entry(row) for row in rows]

    @journal_file.translating
    def attempts(
        self, revision: str, backoff: Callable[[int], float]
    ) -> dict[tuple[str, Operation], plan.Attempts]:
        """Failed attempts per (VM, operation) for `revision`, with when to retry.

        A success after failures resets the count: the budget is for
        consecutive failures of one step. A deferred call (a transient error)
        counts none; it backs off by `backoff` of the deferrals in a row, or
        as long as the fabric asked, and after a failure the later retry wins.
        The actions a `drctl retry` of this revision cleared count nothing.
        """
        rows = self._db.execute(
            "SELECT id, vm, operation, result, error, finished_at, retry_after FROM actions "
            "WHERE revision = ? AND result IN (?, ?, ?) ORDER BY id",
            (revision, FAILED, SUCCEEDED, DEFERRED),
        ).fetchall()
        kept = intervention.cleared(rows, self.interventions(), revision)
        return tally_attempts((row[1:] for row in kept), backoff)


def tally_attempts(
    rows: Iterable[tuple[Any, ...]], backoff: Callable[[int], float]
) -> dict[tuple[str, Operation], plan.Attempts]:
    """`Journal.attempts` of rows (vm, operation, result, error, finished_at, retry_after) of
    one revision's failed, succeeded and deferred actions in journal order (either backend)."""
    found: dict[tuple[str, Operation], _Tally] = {}
    for vm, operation, result, error, finished_at, retry_after in rows:
        key = (vm, Operation(operation))
        if result == SUCCEEDED:
            found.pop(key, None)
            continue
        tally = found.setdefault(key, _Tally())
        at = datetime.fromisoformat(finished_at)
        if result == FAILED:
            tally.failures += 1
            tally.deferrals = 0
            tally.error = error or "unknown error"
            tally.retry_at = at + timedelta(seconds=backoff(tally.failures))
            continue
        tally.deferrals += 1
        if not tally.failures:
            tally.error = error or "unknown error"
        wait = backoff(tally.deferrals) if retry_after is None else float(retry_after)
        retry_at = at + timedelta(seconds=wait)
        tally.retry_at = retry_at if tally.retry_at is None else max(tally.retry_at, retry_at)
    return {key: plan.Attempts(t.failures, t.error, t.retry_at) for key, t in found.items()}


@dataclass(slots=True)
class _Tally:
    """What `Journal.attempts` has counted so far for one (VM, operation)."""

    failures: int = 0
    deferrals: int = 0
    error: str = "unknown error"
    retry_at: datetime | None = None


_COLUMNS = (
    "id, plan, vm, operation, target_site, revision, intended_at, job_id, result, error, "
    "started_at, finished_at, data_loss_seconds, direction, fabric, intent_id"
)


def _entry(row: tuple[object, ...]) -> Entry:
    (
        id_,
        plan_,
        vm,
        operation,
        target,
        revision,
        intended,
        job_id,
        result,
        error,
        started,
        finished,
        loss,
        direction,
        fabric,
        intent_id,
    ) = row
    return Entry(
        id=int(str(id_)),
        plan=str(plan_),
        vm=str(vm),
        operation=Operation(str(operation)),
        target_site=None if target is None else str(target),
        revision=str(revision),
        intended_at=datetime.fromisoformat(str(intended)),
        job_id=None if job_id is None else str(job_id),
        result=str(result),
        error=None if error is None else str(error),
        started_at=None if started is None else datetime.fromisoformat(str(started)),
        finished_at=None if finished is None else datetime.fromisoformat(str(finished)),
        data_loss_seconds=None if loss is None else float(str(loss)),
        direction=None if direction is None else str(direction),
        fabric=str(fabric),
        intent_id=None if intent_id is None else str(intent_id),
    )
