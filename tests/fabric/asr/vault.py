"""A recovery vault for the ARM test server: protected items and jobs over the lifecycle model.

`server.ArmServer` answers HTTP with it; tests drive its faults through the
`fabrics.Controls` methods (a site down, a partition, a failed or suspended
job, a move in the portal, lag, a resync) and the HTTP-level ones of
`server`. State lives in memory behind one lock, on an injected clock: a job
started at t with duration d ends at the first request that looks after
t + d, as of t + d. What an action does and when it is allowed is the pure
lifecycle model's (`core.lifecycle`), as for the simulator, in either scenario:
VMM cloud to VMM cloud, or Hyper-V site to Azure (`azure`: the site that is
Azure, where the model's `VMState.azure_site` refuses what ASR refuses out of
Azure, and an action's `providerSpecificDetails` must be the scenario's);
the words are ASR's, as the official examples spell them
(../shared/asr/examples), written here and in `shapes` (which renders the
state as JSON) independently of the provider's own reading of them, so that
a mistake on one side shows.
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fabric.asr import plan_drill

from reconciler.core import lifecycle
from reconciler.core.lifecycle import Conditions, VMState
from reconciler.core.state import (
    FailoverKind,
    Health,
    JobState,
    Operation,
    ProtectionState,
    ReplicationState,
)
from reconciler.fabric.sim.inventory import Inventory
from reconciler.fabric.sim.timing import Timings
from reconciler.kits.clock import Clock

JSON = dict[str, Any]
HYPERV_AZURE = "HyperVReplicaAzure"
AZURE_FRIENDLY = "Microsoft Azure"  # the Azure fabric's and container's friendly names
# The providerSpecificDetails each action of a Hyper-V-to-Azure item takes
# (ReplicationProtectedItems_*.json); a failback from Azure takes HyperVReplicaAzureFailback
# (the SDK's HyperVReplicaAzureFailbackProviderInput), and COMMIT, cleanup and
# repair take none. VMM to VMM takes none at all.
AZURE_DETAILS = {
    Operation.PLANNED_FAILOVER: HYPERV_AZURE,
    Operation.UNPLANNED_FAILOVER: HYPERV_AZURE,
    Operation.TEST_FAILOVER: HYPERV_AZURE,
    Operation.REVERSE_REPLICATE: HYPERV_AZURE,
    Operation.APPLY_RECOVERY_POINT: HYPERV_AZURE,
}
FAILBACK = "HyperVReplicaAzureFailback"
FAILBACK_OPTIONS = {
    "dataSyncOption": {"ForDownTime", "ForSynchronization"},
    "recoveryVmCreationOption": {"CreateVmIfNotFound", "NoAction"},
}

# The REST action of each operation (the path's last segment), and the words ASR shows.
ACTIONS = {
    "plannedfailover": Operation.PLANNED_FAILOVER,
    "unplannedfailover": Operation.UNPLANNED_FAILOVER,
    "failovercommit": Operation.COMMIT,
    "reprotect": Operation.REVERSE_REPLICATE,
    "testfailover": Operation.TEST_FAILOVER,
    "testfailovercleanup": Operation.TEST_FAILOVER_CLEANUP,
    "applyrecoverypoint": Operation.APPLY_RECOVERY_POINT,
    "repairreplication": Operation.RESYNC,
}
ALLOWED_WORDS = {
    Operation.PLANNED_FAILOVER: "PlannedFailover",
    Operation.UNPLANNED_FAILOVER: "UnplannedFailover",
    Operation.COMMIT: "Commit",
    Operation.REVERSE_REPLICATE: "ReverseReplicate",
    Operation.TEST_FAILOVER: "TestFailover",
    Operation.TEST_FAILOVER_CLEANUP: "TestFailoverCleanup",
    Operation.APPLY_RECOVERY_POINT: "ChangePit",
    Operation.RESYNC: "RepairReplication",
    Operation.DISABLE_REPLICATION: "DisableProtection",
}
JOB_FRIENDLY = {
    Operation.PLANNED_FAILOVER: ("PlannedFailover", "Planned failover"),
    Operation.UNPLANNED_FAILOVER: ("UnplannedFailover", "Unplanned failover"),
    Operation.COMMIT: ("Commit", "Commit"),
    Operation.REVERSE_REPLICATE: ("ReverseReplicate", "Reverse replicate"),
    Operation.TEST_FAILOVER: ("TestFailover", "Test failover"),
    Operation.TEST_FAILOVER_CLEANUP: ("TestFailoverCleanup", "Test failover cleanup"),
    Operation.APPLY_RECOVERY_POINT: ("ChangePit", "Change recovery point"),
    Operation.RESYNC: ("RepairReplication", "Resynchronize replication"),
}
JOB_WORDS = {
    JobState.NOT_STARTED: "NotStarted",
    JobState.RUNNING: "InProgress",
    JobState.SUSPENDED: "Suspended",
    JobState.SUCCEEDED: "Succeeded",
    JobState.FAILED: "Failed",
    JobState.CANCELLED: "Cancelled",
}
NEVER = "1753-01-01T01:01:01Z"  # ASR's "no time" (an idle item's currentScenario.startTime)
POINTS_KEPT = 3
NAME_AFTER_SECONDS = 1.0  # a brand-new job names no VM (targetObjectName) for this long


class VaultError(Exception):
    """An answer other than success: the HTTP status and ASR's error body."""

    def __init__(self, status: int, code: str, message: str, **extra: str) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"code": code, "message": message, **extra}}


@dataclass
class SiteState:
    name: str
    fabric: str  # ARM name of the fabric (the VMM server's)
    fabric_friendly: str
    container: str  # ARM name of the protection container
    container_friendly: str  # what the Fabric declaration names
    down_since: float | None = None
    partitioned: bool = False
    # (from, until) of every outage and partition: a job that needed the site then fails.
    cuts: list[list[float | None]] = field(default_factory=list)


@dataclass
class ItemState:
    name: str  # a GUID: the protected item's name in ARM
    friendly: str
    primary: str  # sites
    recovery: str
    state: VMState
    synced_at: float  # the newest write the replica holds (the last replication)
    lag: float = 0.0
    resync_until: float | None = None  # ResyncRequired until (inf: until RepairReplication)
    job: str | None = None
    last_failover_at: float | None = None
    point: str | None = None  # failoverRecoveryPointId while commit is pending
    # The network the test copy joined (its test failover's networkId), while it runs.
    test_network: str | None = None


@dataclass
class JobRecord:
    name: str
    item: str
    op: Operation
    target: str
    started: float
    due: float
    activity: str
    state: JobState = JobState.RUNNING
    ended: float | None = None
    error: str | None = None
    fail: bool = False
    fail_after_shutdown: bool = False
    suspends: bool = False
    shutdown_source: bool = False
    plan: str | None = None  # a recovery plan's job: `item` is empty, the plan's items move
    failing: str | None = None  # the item a failing plan job fails on
    network: str | None = None  # a test failover's networkId (None: no network, isolated)
    spans: list[float] = field(default_factory=list)  # a plan job: each boot group's seconds


# The operations a recovery plan answers to (the POST's last segment).
PLAN_ACTIONS = {
    "plannedfailover": Operation.PLANNED_FAILOVER,
    "unplannedfailover": Operation.UNPLANNED_FAILOVER,
    "failovercommit": Operation.COMMIT,
    "reprotect": Operation.REVERSE_REPLICATE,
    "testfailover": Operation.TEST_FAILOVER,
    "testfailovercleanup": Operation.TEST_FAILOVER_CLEANUP,
}
TESTS = frozenset({Operation.TEST_FAILOVER, Operation.TEST_FAILOVER_CLEANUP})
# A test failover's networkType (TestFailoverInputProperties): no network at all (an
# isolated test), or the network `networkId` names.
NETWORK_TYPES = frozenset({"NoNetworkAttachAsInput", "VmNetworkAsInput"})


@dataclass
class PlanState:
    """A recovery plan: its protected items (names) in boot groups, in boot order."""

    name: str
    groups: list[list[str]]
    job: str | None = None
    writes: int = 0  # PUTs and PATCHes that changed it


class Vault:
    """One recovery vault with two VMM clouds (or a Hyper-V site and Azure)."""

    def __init__(
        self, inventory: Inventory, clock: Clock, *, page_size: int = 100, azure: str | None = None
    ) -> None:
        """`azure`: the site of `inventory` that is Azure (Hyper-V to Azure), None for VMM
        to VMM. Every replicated VM of a Hyper-V-to-Azure vault replicates to it."""
        self.clock = clock
        self.azure = azure
        self.flavour = lifecycle.ASR_VMM if azure is None else lifecycle.ASR_AZURE
        self.timings: Timings = inventory.timings
        self.page_size = page_size
        self.lock = threading.RLock()
        self.subscription = "7f3c2a9e-5b1d-4c8e-9a6f-2d4b8e1c0a53"
        self.group, self.vault = "rg-dr", "vault-dr"
        self.sites = {
            s: SiteState(
                s,
                f"vmm-{s}",
                f"vmm-{s}.contoso.local",
                f"cloud_{uuid.uuid5(uuid.NAMESPACE_DNS, s)}",
                f"cloud-{s}",
            )
            for s in inventory.sites
        }
        if azure is not None:
            ident = uuid.uuid5(uuid.NAMESPACE_DNS, f"azure/{azure}")
            self.sites[azure] = SiteState(
                azure, ident.hex + ident.hex, AZURE_FRIENDLY, str(ident), AZURE_FRIENDLY
            )
        self.items: dict[str, ItemState] = {}
        self.jobs: dict[str, JobRecord] = {}
        self.failures: dict[tuple[str, Operation], list[bool]] = {}  # -> after_shutdown each
        self.suspensions: dict[tuple[str, Operation], int] = {}
        self.plans: dict[str, PlanState] = {}
        self.deleted: list[str] = []  # recovery plans deleted, in order
        # What recovery plan jobs did, in order: (time, "shutdown"/"failover"/"boot"/..., vm).
        self.events: list[tuple[float, str, str]] = []
        now = self.now()
        for vm in inventory.vms:
            if vm.replication is None:
                continue  # an unprotected VM is a protectable item, not in this list
            source, target = vm.replication
            if azure is not None and target != azure:
                raise ValueError(f"{vm.name}: a Hyper-V-to-Azure item replicates to {azure}")
            name = str(uuid.uuid5(uuid.NAMESPACE_URL, f"item/{vm.name}"))
            state = lifecycle.protected(source, target, azure_site=azure)
            self.items[name] = ItemState(name, vm.name, source, target, state, now)

    def now(self) -> float:
        return self.clock.now().timestamp()

    # --- names, paths --------------------------------------------------------------

    @property
    def vault_path(self) -> str:
        return (
            f"/Subscriptions/{self.subscription}/resourceGroups/{self.group}/providers/"
            f"Microsoft.RecoveryServices/vaults/{self.vault}"
        )

    def item_path(self, item: ItemState) -> str:
        site = self.sites[item.primary]
        return (
            f"{self.vault_path}/replicationFabrics/{site.fabric}/replicationProtectionContainers/"
            f"{site.container}/replicationProtectedItems/{item.name}"
        )

    def item_by_path(self, fabric: str, container: str, name: str) -> ItemState:
        item = self.items.get(name)
        site = None if item is None else self.sites[item.primary]
        if item is None or site is None or (site.fabric, site.container) != (fabric, container):
            raise VaultError(404, "ResourceNotFound", f"protected item {name} was not found")
        return item

    def by_friendly(self, vm: str) -> ItemState:
        for item in self.items.values():
            if item.friendly == vm:
                return item
        raise KeyError(vm)

    # --- time ----------------------------------------------------------------------

    def advance(self) -> None:
        """Finish every job due by now, in due order, as of its due time."""
        with self.lock:
            now = self.now()
            due = sorted(
                (j for j in self.jobs.values() if j.state is JobState.RUNNING and j.due <= now),
                key=lambda j: j.due,
            )
            for job in due:
                self._finish(job)

    def connected(self) -> frozenset[str]:
        return frozenset(
            s.name for s in self.sites.values() if s.down_since is None and not s.partitioned
        )

    def conditions(self, item: ItemState) -> Conditions:
        busy = None
        if item.job is not None:
            job = self.jobs[item.job]
            busy = f"{job.name} ({JOB_FRIENDLY[job.op][0]})"
        return Conditions(self.connected(), self.health(item), busy)

    def health(self, item: ItemState) -> Health:
        if item.state.replication is ReplicationState.OFF:
            return Health.NORMAL
        return lifecycle.replication_health(
            item.state.replication, self._behind(item), self.timings.replication_interval
        )

    def _behind(self, item: ItemState) -> float:
        return max(0.0, self.now() - self.last_replicated(item) - self.timings.replication_interval)

    def last_replicated(self, item: ItemState) -> float:
        """When the replica last received the writes: frozen while a site is down or a
        resync is required, `lag` behind otherwise."""
        if item.state.replication is not ReplicationState.REPLICATING:
            return item.synced_at
        now = self.now()
        for site in (item.state.active_site, item.state.peer_site):
            down = self.sites[site].down_since
            if down is not None:
                now = min(now, down)
        return max(item.synced_at, now - item.lag)

    # --- actions -------------------------------------------------------------------

    def start(
        self, item: ItemState, op: Operation, body: JSON, request_id: str | None
    ) -> JobRecord:
        """Check `op` against the model and the body against the item; start its job."""
        with self.lock:
            self.advance()
            props = body.get("properties") or {}
            direction = props.get("failoverDirection")
            expected = failover_direction(item)
            if direction is not None and direction != expected:
                raise VaultError(
                    400,
                    "InvalidFailoverDirection",
                    f"The failover direction {direction} is not valid for the protected item "
                    f"{item.friendly}, which is active at its "
                    f"{'primary' if expected.startswith('Primary') else 'recovery'} location.",
                    recommendedAction=f"Retry the operation with the direction {expected}.",
                )
            self._check_details(item, op, props)
            cond = self.conditions(item)
            if cond.job_running is not None:
                raise VaultError(
                    400,
                    "532",
                    f"An operation is already in progress on {item.friendly}: {cond.job_running}.",
                    possibleCauses="Another job is running on the protected item.",
                    recommendedAction="Wait for the running job to complete, then retry.",
                )
            reason = lifecycle.check_operation(item.state, op, cond)
            if reason is not None:
                raise VaultError(
                    400,
                    "OperationNotAllowedInCurrentState",
                    f"{JOB_FRIENDLY[op][1]} is not allowed for {item.friendly}: {reason}.",
                    possibleCauses=f"The protected item is {self.protection_words(item)[0]}.",
                    recommendedAction="Check the allowed operations of the protected item.",
                )
            network = (
                test_network(op, props, item.friendly) if op is Operation.TEST_FAILOVER else None
            )
            if op is Operation.APPLY_RECOVERY_POINT:
                wanted = str(props.get("recoveryPointId") or "").rsplit("/", 1)[-1]
                if wanted not in {p["name"] for p in self.recovery_points(item)}:
                    raise VaultError(
                        400,
                        "RecoveryPointNotFound",
                        f"The recovery point {wanted} was not found for {item.friendly}.",
                    )
                item.point = wanted
            job = self.begin(item, op, request_id, props.get("sourceSiteOperations"))
            job.network = network
            return job

    def details_for(self, item: ItemState, op: Operation) -> JSON | None:
        """The providerSpecificDetails `op` on `item` takes in this vault's scenario."""
        if self.azure is None:
            return None
        if op is Operation.PLANNED_FAILOVER and item.state.in_azure:
            return {
                "instanceType": FAILBACK,
                "dataSyncOption": "ForDownTime",
                "recoveryVmCreationOption": "NoAction",
            }
        kind = AZURE_DETAILS.get(op)
        return None if kind is None else {"instanceType": kind}

    def _check_details(self, item: ItemState, op: Operation, props: JSON) -> None:
        """Refuse the providerSpecificDetails of another scenario, as ASR does."""
        sent = props.get("providerSpecificDetails")
        wanted = self.details_for(item, op)
        kind = None if not isinstance(sent, dict) else sent.get("instanceType")
        want = None if wanted is None else wanted["instanceType"]
        bad = [
            f"{key} {sent.get(key)!r}"
            for key, values in FAILBACK_OPTIONS.items()
            if kind == FAILBACK and isinstance(sent, dict) and sent.get(key) not in values
        ]
        if kind == want and not bad:
            return
        expected = f"the instance type {want}" if want else "no providerSpecificDetails"
        raise VaultError(
            400,
            "InvalidProviderSpecificInput",
            f"The provider specific input of {JOB_FRIENDLY[op][1]} for the protected item "
            f"{item.friendly} is not valid: "
            + (", ".join(bad) if bad and kind == want else f"{kind or 'none'} was sent")
            + ".",
            possibleCauses=f"The protected item replicates "
            f"{'to Azure' if self.azure else 'between two VMM clouds'}.",
            recommendedAction=f"Retry the operation with {expected}.",
        )

    def check_plan_details(self, item: ItemState, op: Operation, props: JSON) -> None:
        """A recovery plan takes a list of providerSpecificDetails (ReplicationRecoveryPlans_
        PlannedFailover.json), one per replication provider: here, one."""
        sent = props.get("providerSpecificDetails")
        if sent is not None and not isinstance(sent, list):
            raise VaultError(
                400,
                "InvalidProviderSpecificInput",
                "The provider specific input of a recovery plan is a list, not an object.",
            )
        self._check_details(item, op, {"providerSpecificDetails": (sent or [None])[0]})

    def begin(
        self, item: ItemState, op: Operation, request_id: str | None, source_ops: Any = None
    ) -> JobRecord:
        now = self.now()
        key = (item.friendly, op)
        failing = self.failures.get(key) or []
        after_shutdown = failing.pop(0) if failing else None
        suspends = self.suspensions.get(key, 0) > 0
        if suspends:
            self.suspensions[key] -= 1
        work = self.timings.duration(item.state, op, behind_seconds=self._behind(item))
        name = str(uuid.uuid4())
        job = JobRecord(
            name,
            item.name,
            op,
            lifecycle.resolve_target(item.state, op) or item.state.active_site,
            now,
            now + (work / 2 if suspends else work),
            f"{request_id or uuid.uuid4()} ActivityId: {uuid.uuid4()}",
            fail=after_shutdown is not None,
            fail_after_shutdown=bool(after_shutdown),
            suspends=suspends,
            shutdown_source=source_ops == "Required",
        )
        self.jobs[name] = job
        item.job = name
        return job

    def _finish(self, job: JobRecord) -> None:
        if job.plan is not None:
            self._finish_plan(job)
            return
        item = self.items[job.item]
        item.job = None
        job.ended = job.due
        if job.suspends:
            job.state, job.suspends, job.ended, item.job = JobState.SUSPENDED, False, None, job.name
            return
        needed = lifecycle.required_sites(item.state, job.op, job.target)
        lost = [s for s in sorted(needed) if self._was_cut(s, job.started, job.due)]
        if job.fail or lost:
            job.state = JobState.FAILED
            job.error = (
                f"The job failed: site {lost[0]} could not be reached while it ran."
                if lost and not job.fail
                else f"{JOB_FRIENDLY[job.op][1]} of {item.friendly} failed (injected)."
            )
            if job.fail_after_shutdown:
                item.state = lifecycle.failed_after_shutdown(item.state)
            return
        source_up = item.state.active_site in self.connected()
        before = item.state
        item.state = lifecycle.apply_effect(
            before,
            job.op,
            self.flavour,
            target=job.target,
            source_stopped=job.shutdown_source and source_up,
        )
        job.state = JobState.SUCCEEDED
        if job.op in TESTS:
            item.test_network = job.network
        if job.op in {Operation.PLANNED_FAILOVER, Operation.UNPLANNED_FAILOVER}:
            item.last_failover_at = job.due
            points = self.recovery_points(item)
            item.point = points[0]["name"] if points else None
        if job.op is Operation.COMMIT:
            item.point = None
        if job.op in {Operation.REVERSE_REPLICATE, Operation.RESYNC}:
            item.synced_at, item.lag, item.resync_until = job.due, 0.0, None

    # --- recovery plans ------------------------------------------------------------

    def write_plan(self, name: str, body: JSON, *, create: bool) -> PlanState:
        """PUT (create or replace) or PATCH (update) a recovery plan from its JSON body:
        the protected items of its Boot groups, in order. Refused while its job runs."""
        with self.lock:
            self.advance()
            plan = self.plans.get(name)
            if plan is None and not create:
                raise VaultError(404, "ResourceNotFound", f"recovery plan {name} was not found")
            if plan is not None and plan.job is not None:
                raise VaultError(
                    400,
                    "RecoveryPlanOperationInProgress",
                    f"The recovery plan {name} cannot be changed while its job {plan.job} runs.",
                    recommendedAction="Wait for the running job to complete, then retry.",
                )
            groups: list[list[str]] = []
            for group in (body.get("properties") or {}).get("groups") or []:
                if group.get("groupType") != "Boot":
                    continue
                names = []
                for ref in group.get("replicationProtectedItems") or []:
                    item_name = str(ref.get("id") or "").rsplit("/", 1)[-1]
                    if item_name not in self.items:
                        raise VaultError(
                            400,
                            "InvalidProtectedItem",
                            f"The protected item {ref.get('id')} was not found in the vault.",
                        )
                    names.append(item_name)
                groups.append(names)
            if not any(groups):
                raise VaultError(400, "EmptyRecoveryPlan", "A recovery plan needs an item.")
            if plan is None:
                plan = self.plans[name] = PlanState(name, groups)
            else:
                plan.groups = groups
            plan.writes += 1
            return plan

    def delete_plan(self, plan: PlanState) -> None:
        """Delete a recovery plan (never its items); refused while its job runs."""
        with self.lock:
            self.advance()
            if plan.job is not None:
                raise VaultError(
                    400,
                    "RecoveryPlanOperationInProgress",
                    f"The recovery plan {plan.name} cannot be deleted while its job {plan.job} "
                    "runs.",
                    recommendedAction="Wait for the running job to complete, then retry.",
                )
            del self.plans[plan.name]
            self.deleted.append(plan.name)

    def plan_items(self, plan: PlanState) -> list[ItemState]:
        return [self.items[n] for group in plan.groups for n in group]

    def start_plan(
        self, plan: PlanState, op: Operation, body: JSON, request_id: str | None
    ) -> JobRecord:
        """Check `op` for every item of the plan, then start one job that moves them all."""
        with self.lock:
            self.advance()
            props = body.get("properties") or {}
            direction = props.get("failoverDirection")
            if plan.job is not None:
                raise VaultError(
                    400,
                    "532",
                    f"An operation is already in progress on the recovery plan {plan.name}.",
                    recommendedAction="Wait for the running job to complete, then retry.",
                )
            if op in TESTS:
                return plan_drill.start(self, plan, op, props, request_id)
            items = self.plan_items(plan)
            for item in items:
                expected = failover_direction(item)
                if direction is not None and direction != expected:
                    raise VaultError(
                        400,
                        "InvalidFailoverDirection",
                        f"The failover direction {direction} is not valid for the protected "
                        f"item {item.friendly} of the recovery plan {plan.name}.",
                    )
                self.check_plan_details(item, op, props)
                cond = self.conditions(item)
                if cond.job_running is not None:
                    raise VaultError(
                        400,
                        "532",
                        f"An operation is already in progress on {item.friendly}: "
                        f"{cond.job_running}.",
                    )
                reason = lifecycle.check_operation(item.state, op, cond)
                if reason is not None:
                    raise VaultError(
                        400,
                        "OperationNotAllowedInCurrentState",
                        f"{JOB_FRIENDLY[op][1]} of the recovery plan {plan.name} is not allowed "
                        f"for {item.friendly}: {reason}.",
                    )
            # A failover goes group after group, the VMs of one group side by side,
            # each planned one shipping what its replication is behind by first; a
            # commit or a reprotect takes every VM of the plan side by side.
            spans = [
                max(
                    self.timings.duration(
                        self.items[n].state, op, behind_seconds=self._behind(self.items[n])
                    )
                    for n in g
                )
                for g in plan.groups
                if g
            ]
            failover = op in {Operation.PLANNED_FAILOVER, Operation.UNPLANNED_FAILOVER}
            job = self.plan_job(plan, op, request_id, sum(spans) if failover else max(spans))
            job.shutdown_source = (
                props.get("sourceSiteOperations") == "Required" or op is Operation.PLANNED_FAILOVER
            )
            return job

    def plan_job(
        self, plan: PlanState, op: Operation, request_id: str | None, work: float
    ) -> JobRecord:
        """Start the plan's job of `op`, `work` seconds long, on every item of it; it fails
        on the first item with a failure injected for `op`."""
        failing, after_shutdown = None, False
        items = self.plan_items(plan)
        for item in items:
            queued = self.failures.get((item.friendly, op)) or []
            if queued:
                failing, after_shutdown = item.name, queued.pop(0)
                break
        now = self.now()
        job = JobRecord(
            str(uuid.uuid4()),
            "",
            op,
            "",
            now,
            now + work,
            f"{request_id or uuid.uuid4()} ActivityId: {uuid.uuid4()}",
            fail=failing is not None,
            fail_after_shutdown=after_shutdown,
            plan=plan.name,
            failing=failing,
        )
        self.jobs[job.name] = job
        plan.job = job.name
        for item in items:
            item.job = job.name
        return job

    def _finish_plan(self, job: JobRecord) -> None:
        plan = self.plans[job.plan or ""]
        plan.job = None
        items = self.plan_items(plan)
        for item in items:
            item.job = None
        job.ended = job.due
        if job.op in TESTS:
            plan_drill.finish(self, job, plan)
            return
        lost = sorted(
            {
                s
                for item in items
                for s in lifecycle.required_sites(item.state, job.op)
                if self._was_cut(s, job.started, job.due)
            }
        )
        if job.fail or lost:
            job.state = JobState.FAILED
            failing = self.items[job.failing] if job.failing else None
            job.error = (
                f"The job failed: site {lost[0]} could not be reached while it ran."
                if lost and failing is None
                else f"{JOB_FRIENDLY[job.op][1]} of {failing.friendly if failing else '?'} in "
                f"the recovery plan {plan.name} failed (injected)."
            )
            if failing is not None and job.fail_after_shutdown:
                failing.state = lifecycle.failed_after_shutdown(failing.state)
            return
        failover = job.op in {Operation.PLANNED_FAILOVER, Operation.UNPLANNED_FAILOVER}
        connected = self.connected()
        if failover:
            # ASR's order: shut down in reverse group order, fail over, boot group by group.
            for group in reversed(plan.groups):
                for n in group:
                    item = self.items[n]
                    if job.shutdown_source and item.state.active_site in connected:
                        self.events.append((job.due, "shutdown", item.friendly))
            for item in items:
                self.events.append((job.due, "failover", item.friendly))
        for item in items:
            source_up = item.state.active_site in connected
            target = lifecycle.resolve_target(item.state, job.op) or item.state.active_site
            item.state = lifecycle.apply_effect(
                item.state,
                job.op,
                self.flavour,
                target=target,
                source_stopped=job.shutdown_source and source_up,
            )
            if failover:
                item.last_failover_at = job.due
                points = self.recovery_points(item)
                item.point = points[0]["name"] if points else None
                self.events.append((job.due, "boot", item.friendly))
            else:
                self.events.append((job.due, JOB_FRIENDLY[job.op][0], item.friendly))
            if job.op is Operation.COMMIT:
                item.point = None
            if job.op is Operation.REVERSE_REPLICATE:
                item.synced_at, item.lag, item.resync_until = job.due, 0.0, None
        job.state = JobState.SUCCEEDED

    def plan_allowed_words(self, plan: PlanState) -> list[str]:
        words = ["PlannedFailover", "UnplannedFailover", "Commit", "ReverseReplicate"]
        for item in self.plan_items(plan):
            allowed = set(self.allowed_words(item))
            words = [w for w in words if w in allowed]
        return words + plan_drill.allowed_words(self, plan)

    def _was_cut(self, site: str, start: float, end: float) -> bool:
        return any(
            begin is not None and begin <= end and (until is None or until >= start)
            for begin, until in self.sites[site].cuts
        )

    # --- what ASR shows ------------------------------------------------------------

    def protection_words(self, item: ItemState) -> tuple[str, str]:
        state = item.state
        planned = state.last_failover is FailoverKind.PLANNED
        if state.protection is ProtectionState.COMMIT_PENDING:
            if planned:
                return "PlannedFailoverCommitRequired", "Planned failover finished"
            return "UnplannedFailoverCommitPendingStatesBegin", "Failover completed"
        if state.protection is ProtectionState.COMMITTED:
            if planned:
                return "PlannedFailoverStatesBegin", "Planned failover committed"
            return "UnplannedFailoverCommitted", "Failover committed"
        return "Protected", "Protected"

    def allowed_words(self, item: ItemState) -> list[str]:
        state = item.state
        if item.resync_until is not None and state.replication is ReplicationState.REPLICATING:
            state = dataclasses.replace(state, replication=ReplicationState.RESYNC_REQUIRED)
        allowed = lifecycle.allowed_operations(state, self.conditions(item))
        words = [w for op, w in ALLOWED_WORDS.items() if op in allowed]
        if state.in_azure:
            # The way back from Azure is ASR's Failback (ReplicationProtectedItems_FailoverCommit).
            words = ["Failback" if w == "PlannedFailover" else w for w in words]
        if item.job is None and (
            state.protection is ProtectionState.COMMIT_PENDING
            or (state.in_azure and state.protection is ProtectionState.COMMITTED)
        ):
            words.append("CompleteMigration")  # as the examples list it; drctl never calls it
        return words

    def resync_due(self, item: ItemState) -> None:
        if item.resync_until is not None and item.resync_until <= self.now():
            item.synced_at, item.resync_until = item.resync_until, None

    def recovery_points(self, item: ItemState) -> list[JSON]:
        """The points the replica keeps, newest first: one per interval, until a commit."""
        if item.state.protection is ProtectionState.COMMITTED:
            return []
        interval = self.timings.replication_interval
        newest = self.last_replicated(item)
        found = []
        for number in range(POINTS_KEPT):
            at = newest - number * interval
            if at < item.synced_at - 1e-9 and number:
                break
            point = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{item.name}/{at:.3f}"))
            found.append(
                {
                    "name": point,
                    "type": "Microsoft.RecoveryServices/vaults/replicationFabrics/"
                    "replicationProtectionContainers/replicationProtectedItems/recoveryPoints",
                    "id": f"{self.item_path(item)}/recoveryPoints/{point}",
                    "properties": {
                        "recoveryPointTime": iso(at),
                        "recoveryPointType": "AppConsistent" if number == 1 else "CrashConsistent",
                    },
                }
            )
        return found


def iso(t: float) -> str:
    """A time as ASR writes it: UTC, 7 fraction digits, Z."""
    when = datetime.fromtimestamp(t, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond:06d}0Z"


def test_network(op: Operation, props: JSON, who: str) -> str | None:
    """The network a test failover's copies join (its networkId; None: no network), or
    ASR's refusal of a networkType it does not know or a VmNetworkAsInput without an id."""
    kind = props.get("networkType")
    network = props.get("networkId")
    if kind not in NETWORK_TYPES or (kind == "VmNetworkAsInput") != bool(network):
        raise VaultError(
            400,
            "InvalidNetworkInput",
            f"The network input of {JOB_FRIENDLY[op][1]} for {who} is not valid: networkType "
            f"{kind!r}, networkId {network!r}.",
            recommendedAction="Retry with networkType NoNetworkAttachAsInput, or "
            "VmNetworkAsInput and the networkId of a network at the recovery site.",
        )
    return str(network) if network else None


def failover_direction(item: ItemState) -> str:
    """The `failoverDirection` ASR expects of `item` where it is active now."""
    return "PrimaryToRecovery" if item.state.active_site == item.primary else "RecoveryToPrimary"
