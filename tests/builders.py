"""Builders of desired and observed state for the tests, with defaults from the domain.

By default a VM is wanted at ams in plan `finance`, replicating ams->rtm; the
fabric reports it active and running at ams, Protected, replication healthy
(Replicating, Normal, last sync 10 s before NOW, every 30 s), with the
operations a protected VM allows. A test names only what its case changes:

    decide(desired(want("sql01", "rtm")), observed(vm("sql01", running=())))

`replication` is "auto" (from the active site to the other one), a direction
"ams->rtm", or None (off). Sites are ams and rtm; NOW is the instant every
observation is made at.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

from reconciler.core.desired import DEFAULT_MAX_PARALLEL, DesiredState, DesiredVM, Group, PlanSpec
from reconciler.core.state import (
    Health,
    Job,
    JobState,
    Observed,
    ObservedVM,
    Operation,
    ProtectionState,
    Replication,
    ReplicationState,
    Site,
    TestFailoverState,
)
from reconciler.engine import status
from reconciler.fabric.sim import provider as sim
from reconciler.fabric.sim import timing
from reconciler.fabric.sim.inventory import Inventory, InventoryVM
from reconciler.kits.clock import Clock

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
SITES = ("ams", "rtm")
AUTO = "auto"
# When the fabric last saw the power of a site it reports Unknown.
UNKNOWN_SINCE = NOW - timedelta(seconds=90)

# What the fabric allows a protected VM at rest.
PROTECTED_OPS = frozenset(
    {
        Operation.PLANNED_FAILOVER,
        Operation.UNPLANNED_FAILOVER,
        Operation.TEST_FAILOVER,
        Operation.DISABLE_REPLICATION,
        Operation.STOP_VM,
    }
)

# Short operations for a simulated fabric on a virtual clock. Spelled out, not
# timing.Timings(): the tests count on these numbers, whatever the defaults become.
TIMINGS = timing.Timings(
    planned_failover=3,
    unplanned_failover=2,
    commit=1,
    reverse_replicate=2,
    initial_replication=6,
    stop_vm=1,
    test_failover=2,
    test_failover_cleanup=1,
    replication_interval=5,
    replication_mbps=100,
)


def other_site(site: str) -> str:
    """The site of the pair that is not `site`."""
    return SITES[1] if site == SITES[0] else SITES[0]


def _direction(replication: str | None, active: str) -> tuple[str, str] | None:
    if replication is None:
        return None
    if replication == AUTO:
        return (active, other_site(active))
    source, target = replication.split("->")
    return (source, target)


# --- desired state ------------------------------------------------------------------


def want(
    name: str,
    site: str = "ams",
    *,
    replication: str | None = AUTO,
    plan: str = "finance",
    allow_data_loss: bool = False,
    group: str | None = None,
) -> DesiredVM:
    """VM `name` as a spec wants it: active at `site`, replicating from there by default."""
    return DesiredVM(plan, name, site, _direction(replication, site), allow_data_loss, group)


def desired(
    *vms: DesiredVM,
    groups: tuple[Group, ...] = (),
    max_parallel: int = DEFAULT_MAX_PARALLEL,
    allow_data_loss: bool = False,
) -> DesiredState:
    """One RecoveryPlan (file `<plan>.yaml`, sites ams and rtm) per plan the VMs name.

    Plans come in the order their first VM does; each group goes to the plan of its VMs.
    """
    members: dict[str, list[DesiredVM]] = {}
    for v in vms:
        members.setdefault(v.plan, []).append(v)
    plan_of = {v.name: v.plan for v in vms}
    for g in groups:
        if not g.vms or g.vms[0] not in plan_of:
            raise ValueError(f"group {g.name!r} names no VM given to desired()")
    return DesiredState(
        plans=tuple(
            PlanSpec(
                name=name,
                file=f"{name}.yaml",
                sites=SITES,
                allow_data_loss=allow_data_loss,
                max_parallel=max_parallel,
                groups=tuple(g for g in groups if plan_of[g.vms[0]] == name),
                vms=tuple(plan_vms),
            )
            for name, plan_vms in members.items()
        )
    )


# --- observed state -----------------------------------------------------------------


def vm(
    name: str,
    active: str = "ams",
    *,
    running: tuple[str, ...] | None = None,
    protection: ProtectionState = ProtectionState.PROTECTED,
    replication: str | None = AUTO,
    rstate: ReplicationState = ReplicationState.REPLICATING,
    health: Health = Health.NORMAL,
    last_sync_age: float = 10.0,
    allowed: frozenset[Operation] = PROTECTED_OPS,
    job: Job | None = None,
    test: TestFailoverState = TestFailoverState.NONE,
    unknown: tuple[str, ...] = (),
) -> ObservedVM:
    """VM `name` as the fabric reports it: running at `active` unless `running` says where.

    `unknown` names the sites whose power the fabric cannot tell (last seen
    UNKNOWN_SINCE); the default `running` leaves them out.

    "auto" replication flows from the active site while the VM is Protected, and is
    off in the other protection states, as at rest (name a direction for a reverse
    replication under way); `rstate`, `health` and `last_sync_age` (seconds before
    NOW) describe it. `allowed` does not follow `protection`: a test names what the
    fabric allows in its case.
    """
    if replication == AUTO and protection is not ProtectionState.PROTECTED:
        replication = None
    pair = _direction(replication, active)
    rep = None
    if pair is not None:
        rep = Replication(
            pair[0], pair[1], rstate, health, NOW - timedelta(seconds=last_sync_age), 30.0
        )
    if running is None:
        running = () if active in unknown else (active,)
    return ObservedVM(
        name,
        active,
        running,
        protection,
        rep,
        allowed,
        job,
        test_failover=test,
        power_unknown=unknown,
        power_seen_at=UNKNOWN_SINCE if unknown else None,
    )


def job(
    vm: str,
    operation: Operation = Operation.PLANNED_FAILOVER,
    *,
    job_id: str | None = None,
    target: str | None = "rtm",
    progress: float = 0.0,
    age: float = 0.0,
) -> Job:
    """A job running on `vm` (by default a planned failover to rtm), started `age` s before NOW.

    Its id is `job-<vm>` unless `job_id` says otherwise.
    """
    return Job(
        job_id or f"job-{vm}",
        vm,
        operation,
        JobState.RUNNING,
        NOW - timedelta(seconds=age),
        progress=progress,
        target_site=target,
    )


def observed(*vms: ObservedVM, down: tuple[str, ...] = (), can_stop_vms: bool = True) -> Observed:
    """The fabric at NOW: these VMs, both sites connected but those `down`."""
    return Observed(
        sites={s: Site(s, s not in down) for s in SITES},
        vms={v.name: v for v in vms},
        at=NOW,
        can_stop_vms=can_stop_vms,
    )


# --- the simulated fabric ------------------------------------------------------------


def timings(**changes: float) -> timing.Timings:
    """TIMINGS with some durations changed, e.g. timings(planned_failover=3600)."""
    return dataclasses.replace(TIMINGS, **changes)


def inventory_vm(
    name: str, active: str = "ams", *, replication: str | None = AUTO, size_gb: float | None = None
) -> InventoryVM:
    """A VM of a simulated fabric's inventory, active at `active`, replicating from there.

    Without `size_gb` a full copy of it takes TIMINGS.initial_replication.
    """
    return InventoryVM(name, active, _direction(replication, active), size_gb)


def inventory(*vms: InventoryVM, timings: timing.Timings = TIMINGS) -> Inventory:
    """A simulated fabric of sites ams and rtm with these VMs."""
    return Inventory(SITES, vms, timings)


def sim_fabric(state_dir: Path, inventory: Inventory, clock: Clock) -> sim.SimFabric:
    """A new simulated fabric of `inventory` in `state_dir`, open; the caller closes it."""
    sim.init_fabric(state_dir, inventory, clock)
    return sim.SimFabric(state_dir, clock)


# --- what a daemon says of itself ---------------------------------------------------


def daemon_status(**changes: object) -> status.DaemonStatus:
    """A running daemon's status (pid 4242, revision abc123 in force, at NOW), with `changes`."""
    said = status.DaemonStatus(
        pid=4242,
        running=True,
        revision_in_force="abc123",
        revision_seen="abc123",
        spec_valid=True,
        spec_errors=(),
        updated_at=NOW,
    )
    return dataclasses.replace(said, **changes)  # type: ignore[arg-type]
