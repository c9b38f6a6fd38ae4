"""The journal every replica can read: intents and outcomes in etcd, under the `--lock` prefix.

`drctl run --lock etcd://...` journals here instead of the state dir's
SQLite file (engine/journal.py), behind the same seam
(engine/journal_backend.py), so the executor, audit, attempts, convergence
times and a new leader's reconcile of in-flight jobs read the same. Also
read by `drctl status` and `drctl audit` on a replica's state dir.

Keys, each a JSON document:

    <prefix>/journal/id                   which journal this is (made once)
    <prefix>/journal/a/<intent id>        one action: its intent, then its job, its outcome
    <prefix>/journal/c/<revision>/<vm>    when the VM first converged under the revision
    <prefix>/journal/d/<plan>/<drill id>  one drill of a plan (engine/drill_record.py)
    <prefix>/journal/s/<fabric>/<uuid>    one step of a job a provider runs itself (Hyper-V),
                                          before its call; ordered by create revision
    <prefix>/journal/i/<uuid>             a break-glass record (engine/intervention.py): written
                                          unfenced by `drctl retry`/`reconcile`, which lead
                                          nothing; read from etcd at each `attempts`

An action's `Entry.id` is the etcd revision that created its key: it grows
with every write, so journal order is id order, as in SQLite. Every write
of the leader (`fence` given) is one transaction that compares the election
key's create revision and lease (engine/lease/etcd.py): the intent is
recorded only if this replica still holds the lease at that moment, and
carries the fencing token. A write whose compare fails raises
LeadershipLostError: a deposed leader records nothing, hence starts nothing.
A write no member answered raises JournalBusyError: the daemon starts
nothing until the journal takes writes again (daemon/health.py).

Reads come from a copy of every action kept in memory: loaded when opened,
kept by the writes of the one writer, loaded again by `refresh` (a
follower's pass, a status). `compact` drops etcd's history of superseded
versions (each action is written two or three times); the actions stay,
since audit reads them all.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from reconciler.core import plan
from reconciler.core.desired import EMBEDDED_FABRIC
from reconciler.core.state import Operation
from reconciler.engine import drill_record, intervention, journal, journal_file
from reconciler.engine import etcd_gateway as gateway_
from reconciler.engine.lease import etcd as election_
from reconciler.errors import EtcdUnavailableError, JournalBusyError, LeadershipLostError
from reconciler.fabric.base import Step

# etcd refuses a transaction of more than 128 operations (its default --max-txn-ops).
_MAX_OPS = 100
# Compact etcd's history after this many writes (the leader; `compact`).
COMPACT_EVERY = 2000

Row = dict[str, Any]


class EtcdJournal:
    """The shared journal under `<prefix>/journal/`; `fence` None reads only."""

    def __init__(
        self,
        gateway: gateway_.Gateway,
        target: gateway_.Target,
        fence: Callable[[], election_.Fence] | None = None,
        on_lost: Callable[[str], None] = lambda _why: None,
    ) -> None:
        self.path = f"{target}/journal"
        self._gateway = gateway
        self._root = f"{target.prefix}/journal"
        self._fence = fence
        self._on_lost = on_lost
        self._rows: dict[int, Row] = {}
        self._converged: dict[tuple[str, str], datetime] = {}
        self._drills: dict[tuple[str, str], plan.DrillRecord] = {}
        self._steps: dict[str, list[tuple[int, Step]]] = {}  # fabric -> (revision, step)
        self._writes = 0
        created = self._identify()
        self.identity = journal_file.Identity(self._journal_id, created, None)
        self.refresh()

    # --- the seam (journal_backend.Backend) -------------------------------------

    @property
    def lost(self) -> str | None:
        return None  # etcd keeps it for every replica; a lost etcd is a new journal id

    def close(self) -> None:
        """Nothing to flush: every write is in etcd when it returns."""

    def probe(self) -> None:
        self._call(self._gateway.status)

    def record_intent(
        self, action: plan.Action, revision: str, at: datetime, fabric: str = EMBEDDED_FABRIC
    ) -> journal.Entry:
        intent_id = uuid.uuid4().hex
        row: Row = {
            "intent_id": intent_id,
            "plan": action.plan,
            "vm": action.vm,
            "operation": str(action.operation),
            "target_site": action.target_site,
            "direction": action.direction,
            "revision": revision,
            "intended_at": at.isoformat(),
            "fabric": fabric,
            "result": journal.INTENDED,
        }
        entry_id = self._write([(self._action_key(intent_id), row)], with_token=row)
        self._rows[entry_id] = row
        return _entry(entry_id, row)

    def record_started(self, entry_id: int, job_id: str, at: datetime) -> None:
        self._update(entry_id, job_id=job_id, started_at=at.isoformat(), result=journal.RUNNING)

    def record_outcome(
        self,
        entry_id: int,
        result: str,
        at: datetime,
        error: str | None = None,
        data_loss_seconds: float | None = None,
        job_started_at: datetime | None = None,
    ) -> None:
        changes: Row = {
            "result": result,
            "finished_at": at.isoformat(),
            "error": error,
            "data_loss_seconds": data_loss_seconds,
        }
        if job_started_at is not None:
            changes["job_started_at"] = job_started_at.isoformat()
        self._update(entry_id, **changes)

    def record_unsettled(self, entry: journal.Entry, reason: str) -> journal.Entry:
        self._update(entry.id, result=journal.UNSETTLED, error=reason)
        return _entry(entry.id, self._rows[entry.id])

    def unsettled(self, revision: str) -> dict[str, str]:
        return {
            r["vm"]: str(r.get("error"))
            for _, r in self._ordered()
            if r["result"] == journal.UNSETTLED and r["revision"] == revision
        }

    def record_deferred(
        self, entry_id: int, at: datetime, error: str, retry_after: float | None = None
    ) -> None:
        self._update(
            entry_id,
            result=journal.DEFERRED,
            finished_at=at.isoformat(),
            error=error,
            retry_after=retry_after,
        )

    def record_converged(self, revision: str, vms: list[tuple[str, str]], at: datetime) -> None:
        fresh = [(p, vm) for p, vm in vms if (revision, vm) not in self._converged]
        puts = [
            (f"{self._root}/c/{revision}/{vm}", {"plan": p, "converged_at": at.isoformat()})
            for p, vm in fresh
        ]
        for start in range(0, len(puts), _MAX_OPS):
            self._write(puts[start : start + _MAX_OPS])
        for _, vm in fresh:
            self._converged[(revision, vm)] = at

    def convergences(self) -> dict[tuple[str, str], datetime]:
        return dict(self._converged)

    def record_drill(self, record: plan.DrillRecord) -> None:
        key = f"{self._root}/d/{record.plan}/{record.id}"
        self._write([(key, json.loads(drill_record.to_text(record)))])
        self._drills[(record.plan, record.id)] = record

    def drills(self) -> list[plan.DrillRecord]:
        return sorted(self._drills.values(), key=lambda r: r.started_at)

    def record_step(self, fabric: str, step: Step) -> None:
        """One step of a provider's own job, fenced as every write: a deposed leader
        records none, so the provider sends no cmdlet (`engine.step_log`)."""
        row: Row = {
            "job_id": step.job_id,
            "vm": step.vm,
            "kind": step.kind,
            "detail": step.detail,
            "cmdlet": step.cmdlet,
            "purpose": step.purpose,
            "at": (step.at or datetime.now().astimezone()).isoformat(),
        }
        made = self._write([(f"{self._root}/s/{fabric}/{uuid.uuid4().hex}", row)])
        self._steps.setdefault(fabric, []).append((made, _step(row)))

    def steps(self, fabric: str) -> list[Step]:
        return [step for _, step in sorted(self._steps.get(fabric, []), key=lambda p: p[0])]

    def abandon_open(self, at: datetime, reason: str, fabric: str | None = None) -> int:
        open_ids = [
            i
            for i, r in self._ordered()
            if r["result"] in journal.OPEN and (fabric is None or r["fabric"] == fabric)
        ]
        for entry_id in open_ids:
            self._update(
                entry_id, result=journal.ABANDONED, finished_at=at.isoformat(), error=reason
            )
        return len(open_ids)

    def own_jobs(self) -> dict[str, datetime]:
        failovers = {str(Operation.PLANNED_FAILOVER), str(Operation.UNPLANNED_FAILOVER)}
        return {
            r["job_id"]: datetime.fromisoformat(r.get("job_started_at") or r["started_at"])
            for _, r in self._ordered()
            if r.get("job_id") and r.get("started_at") and r["operation"] in failovers
        }

    def stopped_by_drctl(self) -> frozenset[str]:
        latest: dict[str, Row] = {}
        for _, r in self._ordered():
            if r.get("job_id"):
                latest[r["vm"]] = r
        stops = {
            (str(Operation.STOP_VM), journal.SUCCEEDED),
            (str(Operation.PLANNED_FAILOVER), journal.FAILED),
        }
        return frozenset(vm for vm, r in latest.items() if (r["operation"], r["result"]) in stops)

    def deferred_tails(self) -> list[journal.Entry]:
        last: dict[str, int] = {}
        for i, r in self._ordered():
            last[r["vm"]] = i
        return [
            _entry(i, r)
            for i, r in self._ordered()
            if r["result"] == journal.DEFERRED and not r.get("job_id") and last[r["vm"]] == i
        ]

    def open_entries(self) -> list[journal.Entry]:
        return [_entry(i, r) for i, r in self._ordered() if r["result"] in journal.OPEN]

    def entries(self, revision: str | None = None) -> list[journal.Entry]:
        return [
            _entry(i, r)
            for i, r in self._ordered()
            if revision is None or r["revision"] == revision
        ]

    def record_intervention(self, record: intervention.Intervention) -> intervention.Intervention:
        """Keep a break-glass record, unfenced: a person's command holds no lease.

        It starts nothing; the leader reads it at its next `attempts`. A retry
        clears through the newest action etcd holds now (read just before),
        but for those of its VMs still open: an intent recorded after that
        read has a later create revision, so it is never cleared.
        """
        self.refresh()
        names = {vm for _, vm, _ in record.vms}
        kept = dataclasses.replace(
            record,
            through=max(self._rows, default=0),
            still_open=frozenset(
                i for i, r in self._rows.items() if r["vm"] in names and r["result"] in journal.OPEN
            ),
        )
        key = f"{self._root}/i/{uuid.uuid4().hex}"
        self._call(lambda: self._gateway.txn([], [gateway_.put_op(key, kept.to_text())], []))
        return kept

    def interventions(self) -> list[intervention.Intervention]:
        # From etcd each time: the leader does not refresh, and these come from elsewhere.
        found = self._call(lambda: self._gateway.range_prefix(f"{self._root}/i/"))
        ordered = sorted(found, key=lambda kv: int(kv["create_revision"]))
        return [
            intervention.Intervention.from_json(json.loads(gateway_.value_of(kv))) for kv in ordered
        ]

    def attempts(
        self, revision: str, backoff: Callable[[int], float]
    ) -> dict[tuple[str, Operation], plan.Attempts]:
        counted = (journal.FAILED, journal.SUCCEEDED, journal.DEFERRED)
        rows = (
            (
                i,
                r["vm"],
                r["operation"],
                r["result"],
                r.get("error"),
                r.get("finished_at"),
                r.get("retry_after"),
            )
            for i, r in self._ordered()
            if r["revision"] == revision and r["result"] in counted
        )
        kept = intervention.cleared(rows, self.interventions(), revision)
        return journal.tally_attempts((row[1:] for row in kept), backoff)

    # --- beyond the seam ------------------------------------------------------

    def refresh(self) -> None:
        """Load every action and convergence from etcd again (what another replica wrote)."""
        actions = self._call(lambda: self._gateway.range_prefix(f"{self._root}/a/"))
        converged = self._call(lambda: self._gateway.range_prefix(f"{self._root}/c/"))
        self._rows = {
            int(kv["create_revision"]): json.loads(gateway_.value_of(kv)) for kv in actions
        }
        found: dict[tuple[str, str], datetime] = {}
        for kv in converged:
            revision, _, vm = gateway_.key_of(kv)[len(self._root) + 3 :].rpartition("/")
            found[(revision, vm)] = datetime.fromisoformat(
                json.loads(gateway_.value_of(kv))["converged_at"]
            )
        self._converged = found
        drills = self._call(lambda: self._gateway.range_prefix(f"{self._root}/d/"))
        records = [drill_record.from_text(gateway_.value_of(kv)) for kv in drills]
        self._drills = {(r.plan, r.id): r for r in records}
        found_steps: dict[str, list[tuple[int, Step]]] = {}
        for kv in self._call(lambda: self._gateway.range_prefix(f"{self._root}/s/")):
            fabric = gateway_.key_of(kv)[len(self._root) + 3 :].rpartition("/")[0]
            row = json.loads(gateway_.value_of(kv))
            found_steps.setdefault(fabric, []).append((int(kv["create_revision"]), _step(row)))
        self._steps = found_steps

    def compact(self) -> int:
        """Drop etcd's history before now (old versions of rewritten actions); the revision."""
        revision = int(self._call(self._gateway.status)["header"]["revision"])
        self._call(lambda: self._gateway.compact(revision))
        return revision

    # --- inside ----------------------------------------------------------------

    def _identify(self) -> bool:
        key = f"{self._root}/id"
        fresh = uuid.uuid4().hex
        answer = self._call(
            lambda: self._gateway.txn(
                [{"key": gateway_.b64(key), "target": "CREATE", "create_revision": "0"}],
                [gateway_.put_op(key, fresh)],
                [gateway_.range_op(key)],
            )
        )
        if answer.get("succeeded"):
            self._journal_id = fresh
            return True
        kvs = answer["responses"][0]["response_range"].get("kvs", [])
        self._journal_id = gateway_.value_of(kvs[0]) if kvs else fresh
        return False

    def _action_key(self, intent_id: str) -> str:
        return f"{self._root}/a/{intent_id}"

    def _ordered(self) -> Iterator[tuple[int, Row]]:
        for entry_id in sorted(self._rows):
            yield entry_id, self._rows[entry_id]

    def _update(self, entry_id: int, **changes: Any) -> None:
        row = {**self._rows[entry_id], **changes}
        self._write([(self._action_key(row["intent_id"]), row)])
        self._rows[entry_id] = row

    def _write(self, puts: list[tuple[str, Row]], with_token: Row | None = None) -> int:
        """One fenced transaction of `puts`; the revision it made. `with_token` gets the token."""
        if self._fence is None:
            raise LeadershipLostError("a replica that reads the shared journal writes nothing")
        fence = self._fence()
        if with_token is not None:
            with_token["fencing_token"] = fence.token
        ops = [gateway_.put_op(key, json.dumps(value)) for key, value in puts]
        answer = self._call(lambda: self._gateway.txn(list(fence.compare), ops, []))
        if not answer.get("succeeded"):
            why = "the journal write's compare failed: another replica holds the lease now"
            self._on_lost(why)
            raise LeadershipLostError(f"{why} ({self.path}): this replica starts nothing more")
        self._writes += 1
        if self._writes % COMPACT_EVERY == 0:
            # Best effort, after the write succeeded: a failed compaction is
            # tried again COMPACT_EVERY writes later, and never fails this one.
            with contextlib.suppress(JournalBusyError):
                self.compact()
        return int(answer["header"]["revision"])

    def _call(self, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except EtcdUnavailableError as exc:
            raise JournalBusyError(
                self.path,
                f"the journal {self.path} cannot be reached: {exc}: drctl starts nothing it "
                "cannot journal first",
            ) from exc


def _step(r: Row) -> Step:
    return Step(
        r["job_id"],
        r["vm"],
        r["kind"],
        r["detail"],
        datetime.fromisoformat(r["at"]),
        r.get("cmdlet"),
        r.get("purpose"),
    )


def _entry(entry_id: int, r: Row) -> journal.Entry:
    def when(name: str) -> datetime | None:
        value = r.get(name)
        return None if value is None else datetime.fromisoformat(value)

    loss = r.get("data_loss_seconds")
    return journal.Entry(
        id=entry_id,
        plan=r["plan"],
        vm=r["vm"],
        operation=Operation(r["operation"]),
        target_site=r.get("target_site"),
        revision=r["revision"],
        intended_at=datetime.fromisoformat(r["intended_at"]),
        job_id=r.get("job_id"),
        result=r["result"],
        error=r.get("error"),
        started_at=when("started_at"),
        finished_at=when("finished_at"),
        data_loss_seconds=None if loss is None else float(loss),
        direction=r.get("direction"),
        fabric=r.get("fabric", EMBEDDED_FABRIC),
        intent_id=r["intent_id"],
        fencing_token=r.get("fencing_token"),
    )
