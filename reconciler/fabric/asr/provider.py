"""The Azure Site Recovery provider: one recovery vault behind drctl's Provider Protocol.

Opened by the registry (`fabric.open_provider`) for a `kind: Fabric` with an
`asr:` key; reaches ASR only through `asr.client` (the official SDK), and
reads its answers through `asr.reading`. Two scenarios: VMM cloud to VMM
cloud, and Hyper-V site to Azure (a site declared `azure: {}`).

- observe: the vault's protection containers (once), its recovery services
  providers (site connectivity) and every page of its protected items; the
  job of each busy item (once per job, then as ASR's Retry-After paces it);
  recovery points only for an item whose failover waits for its commit.
- start: the item is read first (its direction, its job, what ASR allows),
  then the action POSTed once, with the journal's intent id as
  `x-ms-client-request-id`. An ambiguous answer (5xx, a timeout, a lost
  connection) may have started the job: the item is read again and a job
  of this operation running on it is adopted (its activityId carries the
  intent id), never started a second time.
- get_job/list_jobs: `replication_jobs`, a job polled no more often than
  its Retry-After asks.

ASR cannot stop or start a VM (`can_stop_vms` False), reports no power
(`reading`), and keeps the caller's request id with each job
(`keeps_intent_ids`).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from reconciler import errors
from reconciler.core.state import FAILOVERS, Job, JobState, Observed, ObservedVM, Operation
from reconciler.fabric import base
from reconciler.fabric.asr import action, bucket, reading, recovery_plan, vocabulary
from reconciler.fabric.asr import settings as asr_settings
from reconciler.fabric.config import FabricConfig
from reconciler.kits.clock import Clock

if TYPE_CHECKING:
    from reconciler.fabric.asr.client import Accepted, ArmClient

INSTALL = "pip install 'drctl[asr]'"
_JOB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
# Operations whose job acts on the active copy; every other one goes towards the peer.
_ON_ACTIVE = frozenset({Operation.COMMIT, Operation.APPLY_RECOVERY_POINT})
PLAN_PREFIX = recovery_plan.PREFIX


def open_provider(config: FabricConfig, clock: Clock) -> AsrFabric:
    """The registry's entry point (`fabric.open_provider`)."""
    try:
        # Imported here: the Azure packages are the `asr` extra, not in the
        # default install, and a plan on an asr fabric says what to install.
        from reconciler.fabric.asr import client  # noqa: PLC0415
    except ImportError as exc:
        raise errors.TerminalError(
            f"fabric '{config.name}' is an Azure Site Recovery vault, and the Azure packages "
            f"are not installed ({exc.name or exc}): {INSTALL}"
        ) from exc
    settings = asr_settings.from_config(config)
    buckets = bucket.Buckets(settings.rates, clock)
    arm = client.ArmClient(settings, buckets)
    return AsrFabric(settings, clock, arm, buckets, data_dir=config.data_dir)


@dataclass
class _Followed:
    job: Job
    poll_after: float  # the clock's timestamp before which ASR asked not to be polled
    interval: float  # seconds between polls, as the job's Retry-After said


class AsrFabric:
    """One recovery vault; a provider per process, its calls safe from several threads."""

    keeps_intent_ids = True

    def __init__(
        self,
        settings: asr_settings.AsrSettings,
        clock: Clock,
        arm: ArmClient,
        buckets: bucket.Buckets,
        *,
        data_dir: Path | None = None,
    ) -> None:
        self.settings = settings
        # The recovery plans drctl keeps, recorded in `data_dir` (None: in memory only).
        self.plans = recovery_plan.RecoveryPlans(settings, arm, data_dir)
        self.buckets = buckets
        self._clock = clock
        self._arm = arm
        self._lock = threading.RLock()
        self._containers: list[dict[str, Any]] | None = None
        self._items: dict[str, reading.Item] = {}  # by item name (ARM)
        self._jobs: dict[str, _Followed] = {}
        self._targets: dict[str, str] = {}  # job -> the site it goes to, as started
        self._failovers: dict[str, tuple[str, float]] = {}  # item -> (job, its start)
        self._sites: dict[str, bool] = {}
        self.members: dict[str, list[str]] = {}  # recovery plan -> its items, as last known

    # --- the Provider Protocol ---------------------------------------------------

    def observe(self) -> Observed:
        with self._lock:
            containers = self._vault_containers()
            providers = self._arm.list_recovery_services_providers()
            sites = reading.connected_sites(self.settings, containers, providers)
            self._sites = {name: site.connected for name, site in sites.items()}
            located = [
                found
                for item in self._arm.list_items()
                if (found := reading.locate(self.settings, item)) is not None
            ]
            self._items = {item.ref.name: item for item in located}
            self._learn_failovers(located)
            vms: list[ObservedVM] = []
            jobs: list[Job] = []
            for item in located:
                job = self._job_on(item)
                if job is not None:
                    jobs.append(job)
                points = ()
                if Operation.APPLY_RECOVERY_POINT in vocabulary.allowed_of(
                    item.raw.get("allowedOperations")
                ):
                    points = self._points(item)
                failover = self._failovers.get(item.ref.name)
                vms.append(
                    reading.observed_vm(
                        item,
                        job,
                        last_failover_job=None if failover is None else failover[0],
                        recovery_points=points,
                    )
                )
            by_name: dict[str, list[ObservedVM]] = {}
            for vm in vms:
                by_name.setdefault(vm.name, []).append(vm)
            return Observed(
                sites=sites,
                vms={name: same[0] for name, same in by_name.items() if len(same) == 1},
                at=self._clock.now(),
                can_stop_vms=False,
                plan_failover=True,
                reports_power=False,
                jobs=tuple(sorted(jobs, key=lambda j: j.started_at)),
                duplicates={name: tuple(s) for name, s in by_name.items() if len(s) > 1},
            )

    @property
    def offers_plan_failover(self) -> bool:
        """ASR moves a whole plan in its group order through a recovery plan (`start_plan`)."""
        return True

    def start_plan(self, plan: str, groups: Sequence[Sequence[str]], request: base.Request) -> str:
        """Move every VM of drctl plan `plan` through its ASR recovery plan `drctl-<plan>`.

        `groups` are the plan's VMs in boot order. The recovery plan is created,
        or updated to mirror `groups`, first (never while one of its jobs runs);
        then one plan-level POST: ASR shuts the VMs down in reverse group order,
        fails them over and boots them group by group. Returns the plan's job,
        which every VM of the plan reports while it runs.
        """
        op = request.operation
        verb = recovery_plan.VERBS.get(op)
        if verb is None:
            raise errors.RejectedError(f"plan {plan}: {op} is not made through a recovery plan")
        name = recovery_plan.name_of(plan)
        with self._lock:
            pins = dict(request.vm_ids)
            located = [
                [self._fresh(self._item_named(vm, pins.get(vm))) for vm in group]
                for group in groups
            ]
            flat = [item for group in located for item in group]
            if not flat:
                raise errors.RejectedError(f"plan {plan}: no VM to move")
            for item in flat:
                self._check_idle(item, item.name)
                if op is Operation.TEST_FAILOVER_CLEANUP and not reading.test_copy_up(item):
                    continue  # the plan's cleanup removes the copies there are
                if op not in vocabulary.allowed_of(item.raw.get("allowedOperations")):
                    raise errors.RejectedError(
                        f"plan {plan}: {item.name}: {op} is not allowed: ASR does not allow it "
                        f"now (protection state {item.raw.get('protectionState')})"
                    )
            if len({(i.primary, i.recovery, i.direction.failover) for i in flat}) > 1:
                raise errors.RejectedError(
                    f"plan {plan}: its VMs do not all replicate between the same sites in the "
                    "same direction: a recovery plan cannot move them together"
                )
            self.plans.ensure(name, located, self._clock.now())
            self.members[name] = [item.ref.name for item in flat]
            first = flat[0]
            # A plan's commit and reprotect take no input; its failovers the direction.
            body = (
                None
                if op in {Operation.COMMIT, Operation.REVERSE_REPLICATE}
                else action.for_plan(
                    action.body_for(
                        op,
                        first.direction,
                        shutdown_source=request.shutdown_source
                        and self._sites.get(first.active_site, True),
                        network=request.network,
                    )
                )
            )
            target = first.active_site if op in _ON_ACTIVE else first.peer_site
            return self._post_once(
                f"plan {plan}",
                name,
                request,
                target,
                lambda: self._arm.post_plan_action(name, verb, body, request.intent_id),
                lambda: self.plans.running_job(name),
            )

    def retire_plans(self, keep: Collection[str]) -> list[base.Retired]:
        """Delete the recovery plans `drctl-<plan>` this drctl wrote for plans not in `keep`
        (`recovery_plan.RecoveryPlans.retire`): never one whose job runs, nor another's."""
        with self._lock:
            return self.plans.retire(keep, self._now())

    def recovery_plans(self) -> list[base.FabricPlan]:
        """The vault's recovery plans, each Boot group as its items' friendly names in boot
        order; an item of no declared site is left out (`drctl import --from-recovery-plans`)."""
        with self._lock:
            if not self._items:
                self.observe()
            found = []
            for raw in self._arm.list_plans():
                groups = recovery_plan.boot_groups(raw)
                named = tuple(
                    tuple(self._items[ref].name for ref in group if ref in self._items)
                    for group in groups
                )
                found.append(base.FabricPlan(str(raw.get("name") or ""), named))
            return sorted(found, key=lambda p: p.name)

    def start(self, request: base.Request) -> str:
        if request.plan_groups:
            return self.start_plan(request.plan or "", request.plan_groups, request)
        op = request.operation
        verb = vocabulary.ACTIONS.get(op)
        if verb is None:
            raise errors.RejectedError(f"{request.vm}: {op} is not allowed: {_not_offered(op)}")
        with self._lock:
            item = self._fresh(self._item_named(request.vm, dict(request.vm_ids).get(request.vm)))
            self._check_idle(item, request.vm)
            allowed = vocabulary.allowed_of(item.raw.get("allowedOperations"))
            if op not in allowed:
                offered = ", ".join(sorted(item.raw.get("allowedOperations") or [])) or "nothing"
                raise errors.RejectedError(
                    f"{request.vm}: {op} is not allowed: ASR does not allow it now "
                    f"(protection state {item.raw.get('protectionState')}; it allows: {offered})"
                )
            body = action.body_for(
                op,
                item.direction,
                shutdown_source=request.shutdown_source and self._sites.get(item.active_site, True),
                recovery_point_id=self._point_id(item, request)
                if verb == "apply_recovery_point"
                else None,
                network=request.network,
            )
            target = item.active_site if op in _ON_ACTIVE else item.peer_site
            return self._post_once(
                request.vm,
                item.name,
                request,
                target,
                lambda: self._arm.post_action(item.ref, verb, body, request.intent_id),
                lambda: reading.busy_job_name(self._fresh(item)),
            )

    def _post_once(
        self,
        who: str,
        vm: str,
        request: base.Request,
        target: str,
        post: Callable[[], Accepted],
        running: Callable[[], str | None],
    ) -> str:
        """POST an action once and return its job (`vm`: what the job acts on).

        An ambiguous answer (5xx, a timeout, a lost connection) may have started
        the job: the job `running` names now is adopted when it is of this
        operation and carries the request's intent id, never a second POST.
        """
        op = request.operation
        try:
            accepted = post()
        except errors.ThrottledError:
            raise
        except errors.TransientError:
            adopted = self._adopt(running, op, request.intent_id)
            if adopted is None:
                raise
            self._targets[adopted] = target
            return adopted
        except errors.RejectedError as exc:
            raise errors.RejectedError(f"{who}: {exc}") from exc
        name = action.job_name_of(accepted.headers) or self._adopt(running, op, request.intent_id)
        if name is None:
            raise errors.TransientError(
                f"{who}: ASR accepted {op} ({accepted.status}) but named no job; "
                "its job is adopted when it is reported"
            )
        self._targets[name] = target
        job = Job(
            id=name,
            vm=vm,
            operation=op,
            state=JobState.NOT_STARTED,
            started_at=self._clock.now(),
            target_site=target,
            intent_id=request.intent_id,
        )
        # Polled first at once (the executor records the job as ASR reports
        # it), then no more often than the 202's Retry-After.
        self._jobs[name] = _Followed(job, 0.0, action.retry_after_of(accepted.headers) or 0.0)
        return name

    def get_job(self, job_id: str) -> Job:
        if not _JOB_NAME.fullmatch(job_id):
            raise errors.TerminalError(
                f"no job {job_id!r} in vault {self.settings.vault}: ASR's job names look like "
                "32ea4b9e-de62-49a1-b062-7864d5c3b897"
            )
        with self._lock:
            followed = self._jobs.get(job_id)
            if followed is not None and (
                not followed.job.running or self._now() < followed.poll_after
            ):
                return followed.job
            self._know_items()
            try:
                found = self._arm.get_job(job_id)
            except errors.TerminalError as exc:
                raise errors.TerminalError(
                    f"no job {job_id} in vault {self.settings.vault}: {exc}"
                ) from exc
            job = self._job_from(found)
            if job is None:
                raise errors.TerminalError(
                    f"job {job_id} of vault {self.settings.vault} is no DR operation of a VM "
                    f"(scenario {(found.get('properties') or {}).get('scenarioName')})"
                )
            return job

    def list_jobs(self) -> list[Job]:
        with self._lock:
            self._know_items()
            listed = [j for found in self._arm.list_jobs() if (j := self._job_from(found))]
            return sorted(listed, key=lambda j: j.started_at)

    def close(self) -> None:
        self._arm.close()

    def __enter__(self) -> AsrFabric:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- reading -------------------------------------------------------------------

    def _now(self) -> float:
        return self._clock.now().timestamp()

    def _vault_containers(self) -> list[dict[str, Any]]:
        if self._containers is None:
            containers = self._arm.list_containers()
            missing = reading.missing_containers(self.settings, containers)
            if missing:
                names = sorted(
                    str((c.get("properties") or {}).get("friendlyName")) for c in containers
                )
                raise errors.TerminalError(
                    f"fabric '{self.settings.fabric}': vault {self.settings.vault} has no "
                    f"protection container named {', '.join(missing)}: its containers are "
                    f"{', '.join(names) or 'none'}; fix spec.sites.<site>.protectionContainer"
                )
            self._containers = containers
        return self._containers

    def _know_items(self) -> None:
        """Read the items once if this provider has not yet: a job names its item by id."""
        if not self._items:
            self._items = {
                found.ref.name: found
                for item in self._arm.list_items()
                if (found := reading.locate(self.settings, item)) is not None
            }

    def _item_named(self, vm: str, item_name: str | None = None) -> reading.Item:
        """The item of VM `vm`: the one named `item_name` (its asrItem) when given, else
        the only item whose friendly name is `vm`."""
        if not self._items:
            self.observe()
        if item_name is not None:
            problem = reading.pin_problem(self._items, vm, item_name, self.settings.vault)
            if problem is not None:
                raise errors.RejectedError(f"{vm}: {problem}")
            return self._items[item_name]
        same = [item for item in self._items.values() if item.name == vm]
        if not same:
            same = [item for item in self._items.values() if item.ref.name == vm]
        if len(same) > 1:
            names = ", ".join(sorted(i.ref.name for i in same))
            raise errors.RejectedError(
                f"{vm}: two protected items of vault {self.settings.vault} have this name "
                f"({names}): drctl acts on neither until one is renamed"
            )
        if not same:
            raise errors.TerminalError(
                f"no protected item named {vm} in vault {self.settings.vault} at sites "
                f"{', '.join(self.settings.sites)}"
            )
        return same[0]

    def _fresh(self, item: reading.Item) -> reading.Item:
        found = reading.locate(self.settings, self._arm.get_item(item.ref))
        if found is None:
            raise errors.TerminalError(
                f"protected item {item.ref.name} ({item.name}) is no longer between the "
                f"declared sites of fabric '{self.settings.fabric}'"
            )
        self._items[found.ref.name] = found
        return found

    def _check_idle(self, item: reading.Item, vm: str) -> None:
        busy = reading.busy_job_name(item)
        if busy is not None:
            scenario = (item.raw.get("currentScenario") or {}).get("scenarioName")
            raise errors.RejectedError(
                f"{vm}: job {busy} ({scenario}) is running on this VM: wait for it to finish "
                "(a running job is never cancelled)"
            )

    def _job_on(self, item: reading.Item) -> Job | None:
        name = reading.busy_job_name(item)
        if name is None:
            return None
        try:
            # Read as get_job reads it: at most as often as the job's Retry-After asks.
            return self.get_job(name)
        except errors.TerminalError:
            return None

    def _job_from(self, found: dict[str, Any]) -> Job | None:
        """A job ASR reported, read and remembered (its target, its pace, the failovers)."""
        props = found.get("properties") or {}
        name = str(found.get("name"))
        item = self._items.get(str(props.get("targetObjectId")))
        # A brand-new job may not name its VM yet: it is found by its item's id.
        vm = item.name if item is not None else str(props.get("targetObjectName") or "")
        job = reading.job_of(found, vm, self._target_of(name, props, item))
        if job is None:
            return None
        followed = self._jobs.get(name)
        interval = followed.interval if followed is not None else 0.0
        self._jobs[name] = _Followed(job, self._now() + interval, interval)
        if job.operation not in FAILOVERS or job.state is not JobState.SUCCEEDED:
            return job
        # A recovery plan's failover is the failover of each of its items.
        moved = [item.ref.name] if item is not None else self._members(props)
        for ref in moved:
            known = self._failovers.get(ref)
            if known is None or known[1] <= job.started_at.timestamp():
                self._failovers[ref] = (name, job.started_at.timestamp())
        return job

    def _members(self, props: dict[str, Any]) -> list[str]:
        """The items of the recovery plan a job acted on (read once per plan); [] for none."""
        if props.get("targetInstanceType") != "RecoveryPlan":
            return []
        plan = str(props.get("targetObjectName") or "")
        if plan not in self.members:
            found = self._arm.get_plan(plan) if plan else None
            groups = [] if found is None else recovery_plan.boot_groups(found)
            self.members[plan] = [ref for group in groups for ref in group]
        return self.members[plan]

    def _target_of(self, name: str, props: dict[str, Any], item: reading.Item | None) -> str | None:
        if name in self._targets:
            return self._targets[name]
        op = vocabulary.SCENARIOS.get(str(props.get("scenarioName")))
        if item is None or op is None:
            return None
        if op in _ON_ACTIVE:
            return item.active_site
        # A failover that succeeded made its target the active site.
        ended = props.get("state") == "Succeeded" and op in FAILOVERS
        return item.active_site if ended else item.peer_site

    def _learn_failovers(self, located: list[reading.Item]) -> None:
        """Find the job of each failover the items report that drctl has not seen (one list)."""
        unknown = [
            item
            for item in located
            if vocabulary.protection_of(item.raw.get("protectionState"))[1] is not None
            and item.ref.name not in self._failovers
        ]
        if unknown:
            self.list_jobs()

    def _points(self, item: reading.Item) -> tuple[Any, ...]:
        points = [reading.recovery_point_of(p) for p in self._arm.list_recovery_points(item.ref)]
        return tuple(sorted(points, key=lambda p: p.time, reverse=True))

    def _point_id(self, item: reading.Item, request: base.Request) -> str:
        """The full id of the recovery point `request` names (its id or its time; None: latest)."""
        points = sorted(
            self._arm.list_recovery_points(item.ref),
            key=lambda p: reading.recovery_point_of(p).time,
        )
        if not points:
            raise errors.RejectedError(f"{item.name}: ASR lists no recovery point for it")
        if request.recovery_point is None:
            return str(points[-1].get("id"))
        wanted = reading.parse_time(request.recovery_point)
        for point in points:
            value = reading.recovery_point_of(point)
            if request.recovery_point == value.id or (wanted is not None and value.time == wanted):
                return str(point.get("id"))
        shown = ", ".join(f"{reading.recovery_point_of(p).id}" for p in points)
        raise errors.RejectedError(
            f"{item.name}: no recovery point {request.recovery_point!r}: ASR lists {shown}"
        )

    def _adopt(
        self, running: Callable[[], str | None], op: Operation, intent: str | None
    ) -> str | None:
        """The job of `op` an ambiguous POST started, which `running` names, if it did."""
        try:
            name = running()
            if name is None:
                return None
            job = self._job_from(self._arm.get_job(name))
        except errors.ProviderError:
            return None
        if job is None or job.operation is not op:
            return None
        if intent is not None and job.intent_id != intent:
            return None
        return name


def _not_offered(op: Operation) -> str:
    if op in {Operation.STOP_VM, Operation.START_VM}:
        return "ASR cannot stop or start a VM (a grouped plan moves through an ASR recovery plan)"
    if op in {Operation.CANCEL_FAILOVER, Operation.COMPLETE_MIGRATION}:
        return "drctl never calls it"
    return "this provider does not offer it: enable or disable protection in ASR itself"
