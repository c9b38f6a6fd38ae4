"""drctl's reading of what ASR reports: protected items as ObservedVMs, jobs as Jobs.

`asr.provider` calls these on the JSON that `asr.client` returns (keys as the
REST API spells them). Pure. What ASR does not say is never made up:

- Power: ASR reports none. A copy whose power the fabric cannot tell is
  Unknown (it may run). Two copies are known Off because ASR's own state
  says so: the replica a protected item replicates to (a replica cannot run
  while it receives replication) and the source of a planned failover (its
  first step shuts the source down). Every other copy is Unknown.
- Sites: activeLocation (Primary / Recovery) resolves through the item's
  protection container friendly names to the declared sites; a site is
  connected when a recovery services provider of its fabric (the VMM server
  or the Hyper-V site) reports `connectionStatus: Connected`. The Azure side
  of a Hyper-V-to-Azure vault is always reachable.
- A protectionState text drctl does not know reads Unknown, its text kept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from reconciler.core.state import (
    FailoverKind,
    Health,
    Job,
    JobState,
    ObservedVM,
    PointType,
    ProtectionState,
    RecoveryPoint,
    Replication,
    ReplicationState,
    Site,
    TestFailoverState,
)
from reconciler.fabric.asr import action, vocabulary
from reconciler.fabric.asr.settings import AsrSettings, ItemRef

JSON = Mapping[str, Any]
AZURE_FABRIC = "Microsoft Azure"  # the recovery fabric's friendly name in Hyper-V to Azure


@dataclass(frozen=True)
class Item:
    """One protected item, located: its ARM path, its sites, its direction."""

    ref: ItemRef
    name: str  # friendlyName: the VM's name in plans
    primary: str  # the site of its primary location
    recovery: str  # the site of its recovery location
    direction: action.Direction
    raw: JSON  # the item's properties as ASR reported them

    @property
    def active_site(self) -> str:
        return self.primary if self.direction.active_is_primary else self.recovery

    @property
    def peer_site(self) -> str:
        return self.recovery if self.direction.active_is_primary else self.primary


def locate(settings: AsrSettings, item: JSON) -> Item | None:
    """The item located in the declared sites; None for an item of other clouds of the vault."""
    props = item.get("properties") or {}
    primary = _site(settings, props.get("primaryProtectionContainerFriendlyName"), None)
    recovery = _site(
        settings,
        props.get("recoveryProtectionContainerFriendlyName"),
        props.get("recoveryFabricFriendlyName"),
    )
    ref = ref_of(str(item.get("id", "")), str(item.get("name", "")))
    if primary is None or recovery is None or primary == recovery or ref is None:
        return None
    details = props.get("providerSpecificDetails") or {}
    return Item(
        ref,
        str(props.get("friendlyName") or ref.name),
        primary,
        recovery,
        action.Direction(
            active_is_primary=props.get("activeLocation", "Primary") != "Recovery",
            instance_type=details.get("instanceType"),
        ),
        props,
    )


def pin_problem(items: Mapping[str, Item], vm: str, item_name: str, vault: str) -> str | None:
    """Why `item_name` (a VM entry's asrItem) is not an item of `vm` in `items` (by item
    name); None when it is: the item exists and its friendly name is the VM's."""
    found = items.get(item_name)
    if found is None:
        named = sorted(i.ref.name for i in items.values() if i.name == vm)
        return (
            f"asrItem '{item_name}' names no protected item of vault {vault}; the items "
            f"named {vm} are {', '.join(named) or 'none'}: set asrItem to one of them"
        )
    if found.name != vm:
        return (
            f"asrItem '{item_name}' is the protected item whose friendly name is "
            f"'{found.name}', not '{vm}': fix asrItem, or the VM's name"
        )
    return None


def _site(settings: AsrSettings, container: str | None, fabric: str | None) -> str | None:
    found = settings.site_of_container(container)
    if found is None and AZURE_FABRIC in {container, fabric}:
        return settings.azure_site
    return found


def ref_of(item_id: str, name: str) -> ItemRef | None:
    """The ARM names of an item from its id (.../replicationFabrics/F/.../Containers/C/...)."""
    parts = item_id.split("/")
    lowered = [p.lower() for p in parts]
    try:
        fabric = parts[lowered.index("replicationfabrics") + 1]
        container = parts[lowered.index("replicationprotectioncontainers") + 1]
    except (ValueError, IndexError):
        return None
    return ItemRef(fabric, container, name or parts[-1])


def connected_sites(
    settings: AsrSettings, containers: Sequence[JSON], providers: Sequence[JSON]
) -> dict[str, Site]:
    """Each declared site and whether ASR reaches it (its fabric's providers' connection)."""
    fabric_of = {
        (c.get("properties") or {}).get("friendlyName"): (c.get("properties") or {}).get(
            "fabricFriendlyName"
        )
        for c in containers
    }
    up = {
        (p.get("properties") or {}).get("fabricFriendlyName")
        for p in providers
        if (p.get("properties") or {}).get("connectionStatus") == "Connected"
    }
    sites = {}
    for site, container in settings.sites.items():
        connected = container is None or fabric_of.get(container) in up
        sites[site] = Site(site, connected, azure=container is None)
    return sites


def missing_containers(settings: AsrSettings, containers: Sequence[JSON]) -> list[str]:
    """The declared protection containers the vault does not have."""
    names = {(c.get("properties") or {}).get("friendlyName") for c in containers}
    return [c for c in settings.sites.values() if c is not None and c not in names]


def observed_vm(
    item: Item,
    job: Job | None,
    *,
    last_failover_job: str | None = None,
    recovery_points: tuple[RecoveryPoint, ...] = (),
) -> ObservedVM:
    props = item.raw
    text = props.get("protectionState")
    protection, kind = vocabulary.protection_of(text)
    active, peer = item.active_site, item.peer_site
    raw_allowed = list(props.get("allowedOperations") or [])
    replication = None
    if protection is ProtectionState.PROTECTED:
        details = props.get("providerSpecificDetails") or {}
        replication = Replication(
            active,
            peer,
            ReplicationState.RESYNC_REQUIRED
            if "RepairReplication" in raw_allowed
            else ReplicationState.REPLICATING,
            _health(props.get("replicationHealth")),
            parse_time(details.get("lastReplicatedTime")),
        )
    # Known Off: the replica that receives replication, the source a planned
    # failover shut down. Everything else may run.
    off_peer = protection is ProtectionState.PROTECTED or kind is FailoverKind.PLANNED
    unknown = (active,) if off_peer else (active, peer)
    failed_over_at = parse_time(props.get("lastSuccessfulFailoverTime"))
    point = props.get("failoverRecoveryPointId")
    return ObservedVM(
        item.name,
        active,
        (),
        protection,
        replication,
        vocabulary.allowed_of(raw_allowed),
        job,
        recovery_points,
        vocabulary.test_failover_of(props.get("testFailoverState")),
        kind,
        last_failover_job if kind is not None else None,
        failed_over_at if kind is not None else None,
        None,
        unknown,
        None,
        str(point).rsplit("/", 1)[-1]
        if point and protection is ProtectionState.COMMIT_PENDING
        else None,
        text,
        props.get("protectionStateDescription"),
        props.get("failoverHealth"),
        tuple(str(e.get("errorMessage", "")) for e in props.get("healthErrors") or ()),
        item.ref.name,
    )


def test_copy_up(item: Item) -> bool:
    """Whether the item's test failover waits to be cleaned up (its copy is up)."""
    found = vocabulary.test_failover_of(item.raw.get("testFailoverState"))
    return found is TestFailoverState.RUNNING


def busy_job_name(item: Item) -> str | None:
    """The name of the job that runs on the item now (currentScenario), None when idle."""
    scenario = item.raw.get("currentScenario") or {}
    if scenario.get("scenarioName", vocabulary.IDLE_SCENARIO) == vocabulary.IDLE_SCENARIO:
        return None
    name = str(scenario.get("jobId") or "").rsplit("/", 1)[-1]
    return name if name and name.lower() != "none" else None


def job_of(found: JSON, vm: str, target_site: str | None) -> Job | None:
    """A job as drctl reads it; None for a job that is no DR operation of one VM.

    `vm` is the friendly name of its item (a brand-new job may not name it yet:
    the caller finds it by the job's targetObjectId, never by a name).
    """
    props = found.get("properties") or {}
    op = vocabulary.SCENARIOS.get(str(props.get("scenarioName")))
    if op is None:
        return None
    # A state drctl does not know is followed as running: never taken for an end.
    state = vocabulary.JOB_STATES.get(str(props.get("state")), JobState.RUNNING)
    tasks = list(props.get("tasks") or [])
    done = sum(1 for t in tasks if t.get("state") in {"Succeeded", "Skipped"})
    progress = 1.0 if state is JobState.SUCCEEDED else (done / len(tasks) if tasks else 0.0)
    started = parse_time(props.get("startTime")) or datetime.fromtimestamp(0, UTC)
    running = state in {JobState.NOT_STARTED, JobState.RUNNING, JobState.SUSPENDED}
    return Job(
        id=str(found.get("name")),
        vm=vm,
        operation=op,
        state=state,
        started_at=started,
        finished_at=None if running else parse_time(props.get("endTime")),
        progress=progress,
        target_site=target_site,
        error=_errors_text(props.get("errors") or []) if state is JobState.FAILED else None,
        state_description=props.get("stateDescription"),
        intent_id=intent_of(props.get("activityId")),
    )


def intent_of(activity: object) -> str | None:
    """The client request id in a job's activityId ("<client id> ActivityId: <ASR's>")."""
    if not isinstance(activity, str) or not activity.strip():
        return None
    first = activity.split(" ActivityId:", 1)[0].strip()
    return first or None


def _errors_text(found: Sequence[JSON]) -> str:
    """Each error's message, possible causes and recommended action, in one text."""
    texts = []
    for error in found:
        for key in ("serviceErrorDetails", "providerErrorDetails"):
            details = error.get(key) or {}
            message = details.get("errorMessage") or details.get("message")
            if not message:
                continue
            text = str(message)
            if details.get("possibleCauses"):
                text += f" Possible causes: {details['possibleCauses']}"
            if details.get("recommendedAction"):
                text += f" Recommended action: {details['recommendedAction']}"
            texts.append(text)
    return " | ".join(texts) or "the job failed (ASR gave no error text)"


def recovery_point_of(found: JSON) -> RecoveryPoint:
    props = found.get("properties") or {}
    kind = str(props.get("recoveryPointType", ""))
    return RecoveryPoint(
        str(found.get("name")),
        parse_time(props.get("recoveryPointTime")) or datetime.fromtimestamp(0, UTC),
        PointType.APP_CONSISTENT if "AppConsistent" in kind else PointType.CRASH_CONSISTENT,
    )


def _health(text: object) -> Health:
    return {"Warning": Health.WARNING, "Critical": Health.CRITICAL}.get(str(text), Health.NORMAL)


def parse_time(value: object) -> datetime | None:
    """A time ASR wrote (ISO 8601, up to 7 fraction digits, Z), as an aware datetime."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace("Z", "+00:00")
    head, dot, rest = text.partition(".")
    if dot:
        digits = "".join(c for c in rest if c.isdigit())
        zone = rest[len(digits) :]
        text = f"{head}.{digits[:6]}{zone}"
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    # ASR writes 1753-01-01 for "never" (currentScenario.startTime of an idle item).
    return None if when.year < 1900 else when.astimezone(UTC)
