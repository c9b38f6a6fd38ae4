"""The Hyper-V Replica provider: the hosts of two sites behind drctl's Provider Protocol.

Opened by the registry (`fabric.open_provider`) for a `kind: Fabric` with a
`hyperv:` key. It reaches the hosts only through a `runner.Runner`
(`remoting`: WinRM through pypsrp; `local`: pwsh on this machine).

- observe: one projection script per host (`script.PROJECTION`); a host that
  does not answer makes its copies' power Unknown, a site none of whose hosts
  answers is disconnected. Copies are joined by VMId (`reading`); each VM is
  acted on at the host that reports it (on a cluster, the node owning it).
- start: the VM read afresh, the operation checked against what it allows
  now, and a job of drctl's own begun in the journal (`fabric.base.OwnsJobs`):
  no cmdlet yet.
- get_job: runs the job's next cmdlet (`job.steps_of`), at most one per call,
  each journaled before it is sent. How far the job has come is read from
  the hosts (`job.reached`), never replayed from the journal, which only
  says which cmdlets were sent: a non-idempotent one is never sent twice.
  A planned failover whose `Start-VMFailover` on the replica fails has its
  own `-Prepare` reverted with `Stop-VMFailover` (why, in the journal).
- recovery points: the replica's recovery snapshots, taken only by an
  unplanned failover (`Start-VMFailover -VMRecoverySnapshot`, the request's
  `recovery_point`); Hyper-V has no ApplyRecoveryPoint after it, so the
  observation says `points_at_failover` and the planner names the point then.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any

from reconciler import errors
from reconciler.core import lifecycle
from reconciler.core.state import (
    FAILOVERS,
    Job,
    JobState,
    Observed,
    ObservedVM,
    Operation,
    RecoveryPoint,
    ReplicationState,
    Site,
)
from reconciler.fabric import base
from reconciler.fabric.config import FabricConfig
from reconciler.fabric.hyperv import job as jobs
from reconciler.fabric.hyperv import reading, script
from reconciler.fabric.hyperv import settings as hv_settings
from reconciler.fabric.hyperv.runner import Result, Runner
from reconciler.kits.clock import Clock

INSTALL = "pip install 'drctl[hyperv]'"
PROJECTION_TIMEOUT = 60.0


def open_provider(config: FabricConfig, clock: Clock) -> HyperVFabric:
    """The registry's entry point (`fabric.open_provider`)."""
    settings = hv_settings.from_config(config)
    if settings.transport.local is not None:
        from reconciler.fabric.hyperv import local  # noqa: PLC0415

        return HyperVFabric(settings, clock, local.LocalRunner(settings.transport.local))
    try:
        # Imported here: pypsrp is the `hyperv` extra, not in the default install.
        from reconciler.fabric.hyperv import remoting  # noqa: PLC0415
    except ImportError as exc:
        raise errors.TerminalError(
            f"fabric '{config.name}' is driven over PowerShell Remoting, and pypsrp is not "
            f"installed ({exc.name or exc}): {INSTALL}"
        ) from exc
    return HyperVFabric(settings, clock, remoting.PsrpRunner(settings, os.environ))


class MemoryStepLog:
    """Steps kept in memory: a provider not driven by drctl's executor (a test, a one-off)."""

    def __init__(self) -> None:
        self._steps: list[base.Step] = []

    def record_step(self, step: base.Step) -> None:
        self._steps.append(step)

    def steps(self) -> list[base.Step]:
        return list(self._steps)


@dataclass
class _Record:
    """One job of drctl's own, as its steps in the journal tell it."""

    id: str
    vm: str
    vm_id: str
    op: Operation
    source_site: str
    target_site: str
    hosts: dict[str, str]  # role -> host
    reverse_to: str | None
    intent_id: str | None
    point: str | None  # the recovery snapshot an unplanned failover boots (None: latest)
    point_time: datetime | None
    started_at: datetime
    issued: dict[int, datetime] = field(default_factory=dict)  # step index -> when sent
    done: set[int] = field(default_factory=set)
    error: str | None = None
    reverted: bool = False
    ended_at: datetime | None = None
    succeeded: bool = False
    loss: float | None = None
    stale: bool = False  # a StopVM of a copy that is not the active one

    def steps(self) -> tuple[jobs.StepPlan, ...]:
        if self.op is Operation.STOP_VM and self.stale:
            return jobs.stale_stop(self.vm)
        return jobs.steps_of(self.op, self.vm, self.reverse_to, self.point)

    def as_job(self) -> Job:
        steps = self.steps()
        if self.ended_at is not None:
            state = JobState.SUCCEEDED if self.succeeded else JobState.FAILED
            description = "done" if self.succeeded else "failed"
        else:
            state = JobState.RUNNING
            here = min(len(steps) - 1, len(self.done))
            step = steps[here]
            description = f"step {here + 1} of {len(steps)}: {step.name} on {self.hosts[step.role]}"
        return Job(
            id=self.id,
            vm=self.vm,
            operation=self.op,
            state=state,
            started_at=self.started_at,
            finished_at=self.ended_at,
            progress=1.0 if self.succeeded else len(self.done) / len(steps),
            target_site=self.target_site,
            error=self.error if not self.succeeded else None,
            data_loss_seconds=self.loss,
            state_description=description,
            intent_id=self.intent_id,
        )


class HyperVFabric:
    """The Hyper-V hosts of one Fabric declaration; safe to call from several threads."""

    keeps_intent_ids = True  # drctl's own jobs, each begun with the request's intent id
    fabric_kind = "hyperv"  # the scope of drctl's hard rules on its cmdlets (engine.guard)

    def __init__(self, settings: hv_settings.HyperVSettings, clock: Clock, runner: Runner) -> None:
        self.settings = settings
        self._clock = clock
        self._runner = runner
        self._log: base.StepLog = MemoryStepLog()
        self._lock = threading.RLock()
        self._sites = tuple(settings.sites)
        self._seen_at: dict[str, datetime] = {}  # site -> when one of its hosts last answered

    def use_step_log(self, log: base.StepLog) -> None:
        self._log = log

    # --- the Provider Protocol ---------------------------------------------------

    def observe(self) -> Observed:
        with self._lock:
            copies, answered = self._project(self._all_hosts())
            connected = frozenset(s for s in self._sites if answered.get(s))
            if not connected:
                raise errors.TransientError(
                    f"fabric '{self.settings.fabric}': no Hyper-V host answers ("
                    + ", ".join(h for _, h in self._all_hosts())
                    + ")"
                )
            now = self._clock.now()
            for site in connected:
                self._seen_at[site] = now
            records = self._records()
            running = {r.vm_id: r for r in records.values() if r.ended_at is None}
            by_id: dict[str, dict[str, reading.Copy]] = {}
            for copy in copies:
                by_id.setdefault(copy.vm_id, {}).setdefault(copy.site, copy)
            vms: list[ObservedVM] = []
            for vm_id, found in by_id.items():
                sides = reading.Sides(found, frozenset(self._sites) - connected)
                record = running.get(vm_id)
                vms.append(
                    reading.observed_vm(
                        sides,
                        (self._sites[0], self._sites[1]),
                        self.settings.site_of,
                        connected,
                        None if record is None else record.as_job(),
                        last_failover=self._last_failover(records, vm_id, sides),
                        seen_at=min(
                            (self._seen_at[s] for s in sides.silent if s in self._seen_at),
                            default=None,
                        ),
                    )
                )
            by_name: dict[str, list[ObservedVM]] = {}
            for vm in vms:
                by_name.setdefault(vm.name, []).append(vm)
            return Observed(
                sites={s: Site(s, s in connected) for s in self._sites},
                vms={n: same[0] for n, same in by_name.items() if len(same) == 1},
                at=now,
                can_stop_vms=True,
                points_at_failover=True,
                jobs=tuple(sorted((r.as_job() for r in running.values()), key=_started)),
                duplicates={n: tuple(same) for n, same in by_name.items() if len(same) > 1},
            )

    def start(self, request: base.Request) -> str:
        op = request.operation
        with self._lock:
            seen = self.observe()
            if request.vm in seen.duplicates:
                ids = ", ".join(str(v.vm_id) for v in seen.duplicates[request.vm])
                raise errors.RejectedError(
                    f"{request.vm}: two VMs of fabric '{self.settings.fabric}' have this name "
                    f"({ids}): drctl acts on neither until one is renamed"
                )
            vm = seen.vms.get(request.vm)
            if vm is None:
                raise errors.TerminalError(
                    f"no VM named {request.vm} with replication on the Hyper-V hosts of fabric "
                    f"'{self.settings.fabric}'"
                )
            if op not in reading.OFFERED:
                raise errors.RejectedError(f"{request.vm}: {op} is not allowed: {_not_offered(op)}")
            model = _model(vm, self._sites)
            conditions = lifecycle.Conditions(
                connected=frozenset(n for n, s in seen.sites.items() if s.connected),
                job_running=None if vm.job is None else f"{vm.job.id} ({vm.job.operation})",
            )
            reason = lifecycle.check_operation(model, op, conditions, request.target_site)
            if reason is None and op not in vm.allowed_operations:
                reason = "Hyper-V Replica does not allow it in this state"
            if reason is not None:
                raise errors.RejectedError(f"{request.vm}: {op} is not allowed: {reason}")
            target = lifecycle.resolve_target(model, op, request.target_site)
            if target is None:
                raise errors.RejectedError(f"{request.vm}: {op} needs a target site")
            needed = {vm.active_site if r == "source" else target for r in jobs.needs(op)}
            hosts = self._hosts_of(str(vm.vm_id), {vm.active_site, target}, needed)
            reverse_to = None
            if op is Operation.REVERSE_REPLICATE:
                broker = self.settings.sites[target].replica_broker
                reverse_to = broker or hosts[target]
            point = _point(vm, request) if op is Operation.UNPLANNED_FAILOVER else None
            job_id = f"hv-{uuid.uuid4().hex[:16]}"
            detail = {
                "operation": str(op),
                "vmId": vm.vm_id,
                "source": vm.active_site,
                "target": target,
                "sourceHost": hosts.get(vm.active_site),
                "targetHost": hosts.get(target),
                "reverseTo": reverse_to,
                "intent": request.intent_id,
                "point": None if point is None else point.id,
                "pointTime": None if point is None else point.time.isoformat(),
                "stale": op is Operation.STOP_VM and target != vm.active_site,
            }
            self._log.record_step(
                base.Step(job_id, request.vm, "begin", json.dumps(detail), self._clock.now())
            )
            return job_id

    def get_job(self, job_id: str) -> Job:
        with self._lock:
            record = self._records().get(job_id)
            if record is None:
                raise errors.TerminalError(
                    f"no job {job_id!r} of fabric '{self.settings.fabric}' in drctl's journal"
                )
            if record.ended_at is None:
                self._advance(record)
                record = self._records()[job_id]
            return record.as_job()

    def list_jobs(self) -> list[Job]:
        with self._lock:
            return sorted((r.as_job() for r in self._records().values()), key=_started)

    def close(self) -> None:
        self._runner.close()

    def __enter__(self) -> HyperVFabric:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- running a job, one step per call ------------------------------------------

    def _advance(self, record: _Record) -> None:
        steps = record.steps()
        copies = self._copies_for(record)
        source, target = copies.get("source"), copies.get("target")
        if record.error is not None:
            self._finish_failing(record, source)
            return
        done = jobs.reached(record.op, source, target)
        if done >= len(steps):
            if jobs.settled(record.op, source, target):
                self._end(record, succeeded=True)
            return
        step = steps[done]
        sent = record.issued.get(done)
        if sent is not None and not step.idempotent:
            self._end(
                record,
                succeeded=False,
                error=(
                    f"{step.name} was sent to {record.hosts[step.role]} at {sent.isoformat()} "
                    "and the host does not show it done: drctl never sends it twice (it would "
                    "answer InvalidState); check the VM on the host"
                ),
            )
            return
        detail: dict[str, Any] = {"step": done, "name": step.name, "host": record.hosts[step.role]}
        if record.op is Operation.UNPLANNED_FAILOVER and step.cmdlet == "Start-VMFailover":
            detail["loss"] = self._loss(source, target, record.point_time)
        try:
            self._log.record_step(
                base.Step(
                    record.id,
                    record.vm,
                    "issue",
                    json.dumps(detail),
                    self._clock.now(),
                    step.cmdlet,
                    step.purpose,
                )
            )
        except errors.TerminalError as exc:  # drctl's hard rules refused the call
            self._end(record, succeeded=False, error=str(exc))
            return
        result = self._run(
            record.hosts[step.role], step.script, self.settings.transport.timeout_seconds
        )
        if result.errors:
            failure = f"{step.name} on {record.hosts[step.role]}: " + "; ".join(
                str(e) for e in result.errors
            )
            self._log.record_step(
                base.Step(
                    record.id,
                    record.vm,
                    "error",
                    json.dumps({"step": done, "error": failure}),
                    self._clock.now(),
                )
            )
            # Ended at the next poll, from what the hosts show then (reverting a -Prepare
            # this job issued first), as a fabric's job ends some time after its error.
            return
        self._log.record_step(
            base.Step(record.id, record.vm, "done", json.dumps({"step": done}), self._clock.now())
        )

    def _finish_failing(self, record: _Record, source: reading.Copy | None) -> None:
        """End a job whose cmdlet failed; first revert the -Prepare it issued on the primary
        if it did and the failover cannot go on (Hyper-V's own undo, `Stop-VMFailover`)."""
        prepared = source is not None and source.state == "PreparedForFailover"
        ours = record.op is Operation.PLANNED_FAILOVER and 1 in record.issued
        if prepared and ours and not record.reverted:
            step = jobs.revert_prepare(record.vm)
            why = (
                f"reverting the -Prepare this job issued on {record.hosts['source']}: "
                f"the failover cannot complete ({record.error})"
            )
            self._log.record_step(
                base.Step(
                    record.id,
                    record.vm,
                    "revert",
                    json.dumps({"name": step.name, "host": record.hosts["source"], "why": why}),
                    self._clock.now(),
                    step.cmdlet,
                    step.purpose,
                )
            )
            result = self._run(record.hosts["source"], step.script, PROJECTION_TIMEOUT)
            if result.errors:
                record.error = f"{record.error}; and reverting its -Prepare failed: " + "; ".join(
                    str(e) for e in result.errors
                )
        elif prepared and ours:
            record.error = (
                f"{record.error}; its -Prepare was reverted with Stop-VMFailover, and "
                f"{record.hosts['source']} still shows it prepared: check the VM on the host"
            )
        self._end(record, succeeded=False, error=record.error)

    def _end(self, record: _Record, *, succeeded: bool, error: str | None = None) -> None:
        detail = {"state": "Succeeded" if succeeded else "Failed", "error": error}
        self._log.record_step(
            base.Step(record.id, record.vm, "end", json.dumps(detail), self._clock.now())
        )

    def _loss(
        self, source: reading.Copy | None, target: reading.Copy | None, point: datetime | None
    ) -> float | None:
        """Seconds of writes an unplanned failover loses: since the replica's last replication
        (or the chosen point), unless the primary is known off with nothing left to ship."""
        if point is not None:
            return max(0.0, (self._clock.now() - point).total_seconds())
        if target is None or target.last_replication is None:
            return None
        if (
            source is not None
            and not source.running
            and source.last_replication == target.last_replication
        ):
            return 0.0
        return max(0.0, (self._clock.now() - target.last_replication).total_seconds())

    # --- reading the hosts -------------------------------------------------------------

    def _all_hosts(self) -> list[tuple[str, str]]:
        return [(s.name, h) for s in self.settings.sites.values() for h in s.hosts]

    def _run(self, host: str, text: str, timeout: float) -> Result:
        return self._runner.run(host, text, timeout)

    def _project(self, hosts: list[tuple[str, str]]) -> tuple[list[reading.Copy], dict[str, bool]]:
        """The copies the hosts report, and per site whether any of its hosts answered."""
        copies: list[reading.Copy] = []
        answered: dict[str, bool] = {}
        for site, host in hosts:
            try:
                result = self._run(host, script.PROJECTION, PROJECTION_TIMEOUT)
            except errors.ThrottledError:
                raise
            except errors.TransientError:
                answered.setdefault(site, False)
                continue
            if result.errors:
                raise errors.TransientError(
                    f"{host} refused the projection: " + "; ".join(str(e) for e in result.errors)
                )
            copies.extend(reading.copies_of(site, host, result.json()))
            answered[site] = True
        return copies, answered

    def _hosts_of(self, vm_id: str, sites: set[str], needed: set[str]) -> dict[str, str]:
        """The host holding the VM's copy at each of `sites` that answers (a cluster's owner
        node); one of `needed` that does not answer refuses the start."""
        copies, _ = self._project([(s, h) for s, h in self._all_hosts() if s in sites])
        found = {c.site: c.host for c in copies if c.vm_id == vm_id}
        for site in sorted(needed - set(found)):
            raise errors.RejectedError(
                f"no host of site {site} answers for this VM now: wait for {site} to reconnect"
            )
        return found

    def _copies_for(self, record: _Record) -> dict[str, reading.Copy]:
        """The job's copies, read from the hosts it acts on; a needed host that is silent
        holds the job (TransientError): it goes on when the host answers."""
        found: dict[str, reading.Copy] = {}
        for role in jobs.needs(record.op):
            host = record.hosts[role]
            site = record.source_site if role == "source" else record.target_site
            result = self._run(host, script.PROJECTION, PROJECTION_TIMEOUT)
            if result.errors:
                raise errors.TransientError(
                    f"{host} refused the projection: " + "; ".join(str(e) for e in result.errors)
                )
            for copy in reading.copies_of(site, host, result.json()):
                if copy.vm_id == record.vm_id:
                    found[role] = copy
            if role not in found:
                raise errors.TransientError(
                    f"{host} no longer reports {record.vm}: it may have moved to another node"
                )
        return found

    def _records(self) -> dict[str, _Record]:
        records: dict[str, _Record] = {}
        for step in self._log.steps():
            detail = json.loads(step.detail) if step.detail else {}
            at = step.at or self._clock.now()
            if step.kind == "begin":
                hosts = {"source": detail.get("sourceHost"), "target": detail.get("targetHost")}
                records[step.job_id] = _Record(
                    id=step.job_id,
                    vm=step.vm,
                    vm_id=str(detail["vmId"]),
                    op=Operation(detail["operation"]),
                    source_site=str(detail["source"]),
                    target_site=str(detail["target"]),
                    hosts={k: str(v) for k, v in hosts.items() if v},
                    reverse_to=detail.get("reverseTo"),
                    intent_id=detail.get("intent"),
                    point=detail.get("point"),
                    point_time=None
                    if detail.get("pointTime") is None
                    else datetime.fromisoformat(detail["pointTime"]),
                    started_at=at,
                    stale=bool(detail.get("stale")),
                )
                continue
            record = records.get(step.job_id)
            if record is None:
                continue
            if step.kind == "issue":
                record.issued.setdefault(int(detail["step"]), at)
                if detail.get("loss") is not None:
                    record.loss = float(detail["loss"])
            elif step.kind == "done":
                record.done.add(int(detail["step"]))
            elif step.kind == "error":
                record.error = str(detail["error"])
            elif step.kind == "revert":
                record.reverted = True
            elif step.kind == "end":
                record.ended_at = at
                record.succeeded = detail.get("state") == "Succeeded"
                record.error = detail.get("error") or record.error
        return records

    def _last_failover(
        self, records: dict[str, _Record], vm_id: str, sides: reading.Sides
    ) -> tuple[str, datetime | None, float | None] | None:
        """drctl's latest succeeded failover of the VM (its job, end and data loss); for a
        failed-over copy none of drctl's failovers explains, an id of its own (`_outside`)."""
        failed_over = next((c for c in sides.copies.values() if c.failed_over), None)
        if failed_over is not None and not any(
            _explains(r, failed_over) for r in records.values() if r.vm_id == vm_id
        ):
            return _outside(failed_over), None, None
        ended = [
            r
            for r in records.values()
            if r.vm_id == vm_id and r.op in FAILOVERS and r.succeeded and r.ended_at is not None
        ]
        if not ended:
            return None
        latest = max(ended, key=lambda r: r.ended_at or r.started_at)
        return latest.id, latest.ended_at or latest.started_at, latest.loss


def _explains(record: _Record, copy: reading.Copy) -> bool:
    """Whether drctl's job `record` can be the failover that left `copy` failed over: one to
    its site that was under way after the copy last received replication (a failover freezes
    the replica's LastReplicationTime; one that replicated after the job ended was failed
    over again since, by someone else)."""
    if record.op not in FAILOVERS or record.target_site != copy.site:
        return False
    return (
        copy.last_replication is None
        or record.ended_at is None
        or copy.last_replication <= record.ended_at
    )


def _outside(copy: reading.Copy) -> str:
    """The id of a failover made outside drctl (Hyper-V keeps no job of it): stable while
    the copy stays failed over, another for the next one (its LastReplicationTime differs),
    so that `discardLostWrites` names this failover and no other."""
    seen = copy.last_replication.isoformat() if copy.last_replication else "never"
    digest = uuid.uuid5(uuid.NAMESPACE_URL, f"hv-outside/{copy.vm_id}/{copy.site}/{seen}")
    return f"hv-outside-{digest.hex[:12]}"


def _started(job: Job) -> datetime:
    return job.started_at


def _model(vm: ObservedVM, sites: tuple[str, ...]) -> lifecycle.VMState:
    """The lifecycle model's state of `vm`, to check a request against and resolve its target."""
    peer = next(s for s in sites if s != vm.active_site)
    return lifecycle.VMState(
        vm.active_site,
        peer,
        frozenset(vm.running),
        vm.protection_state,
        vm.replication.state if vm.replication is not None else ReplicationState.OFF,
        vm.last_failover,
        vm.test_failover,
    )


def _point(vm: ObservedVM, request: base.Request) -> RecoveryPoint | None:
    """The recovery snapshot an unplanned failover is asked to boot, by its id or its time
    (None: the latest, a plain Start-VMFailover); one the replica does not keep is refused."""
    if request.recovery_point is None:
        return None
    wanted = request.recovery_point.lower()
    for point in vm.recovery_points:
        if point.id == wanted or point.time.isoformat() == request.recovery_point:
            return point
    kept = ", ".join(f"{p.id} ({p.time.isoformat()})" for p in vm.recovery_points) or "none"
    raise errors.RejectedError(
        f"{vm.name}: the replica keeps no recovery snapshot {request.recovery_point!r} "
        f"(it keeps: {kept})"
    )


def _not_offered(op: Operation) -> str:
    if op in {Operation.CANCEL_FAILOVER, Operation.COMPLETE_MIGRATION}:
        return "drctl never calls it"
    if op is Operation.APPLY_RECOVERY_POINT:
        return (
            "Hyper-V Replica takes a recovery point only when it fails over "
            "(Start-VMFailover -VMRecoverySnapshot): name it in the unplanned failover"
        )
    return "this provider does not offer it: enable or disable replication on the hosts"
