"""What replication of one simulated VM looks like at a given time, derived from its row.

`sim.provider` stores a few anchors per VM (when replication last started,
the lag it was given, when a resync was required) and derives from them,
at any time t, the last sync, the recovery points, the health and where the
writes stand. Nothing is written as time passes, so observing 100k VMs stays
one read. Pure functions of (row, world); no I/O.

The rules, for a VM replicating active -> peer every `interval` seconds:
- writes arrive continuously at the active copy while it runs and its site is
  up (a management-plane partition cuts drctl off, not the users);
- replication ships on one fabric-wide grid, at every multiple of the
  interval, the writes up to `lag` seconds before that moment; it ships
  nothing while either site is down or a resync is required (until the
  fabric's own resync ends, or a Resync operation when it runs none); it goes
  on through a partition: the hosts still reach each other;
- a (re)started replication holds a full copy as of its anchor, a grid point:
  the first recovery point;
- the replica's newest write (the last sync) is therefore the last grid point
  it shipped, and the unshipped writes are those after it.
The grid keeps the anchors of VMs reprotected within one interval equal, so
such VMs share one computed observation. `time_columns` says how a finished
job moves the anchors (`sim.provider` writes them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from reconciler.core import lifecycle
from reconciler.core.state import (
    FAILOVERS,
    FailoverKind,
    Health,
    Operation,
    PointType,
    ProtectionState,
    ReplicationState,
    TestFailoverState,
)
from reconciler.fabric.sim import timing
from reconciler.fabric.sim.store import JobRow, VMRow

MAX_RECOVERY_POINTS = 3
# One point in this many is app-consistent (a VSS snapshot of the guest): among
# MAX_RECOVERY_POINTS consecutive points, exactly one.
APP_CONSISTENT_EVERY = 3


@dataclass(frozen=True)
class World:
    """The fabric around the VMs at time `t`."""

    t: float
    sites: tuple[str, str]
    timings: timing.Timings
    down_at: dict[str, float]  # disconnected sites (dark), and since when
    # Sites whose management plane drctl cannot reach, and since when: no
    # operation reaches them and their power is unknown, but their VMs keep
    # running, taking writes and replicating (a partition, not an outage).
    partitioned_at: dict[str, float] = field(default_factory=dict)

    @property
    def connected(self) -> frozenset[str]:
        """The sites operations can reach: neither down nor partitioned."""
        return frozenset(
            s for s in self.sites if s not in self.down_at and s not in self.partitioned_at
        )

    @property
    def unseen_since(self) -> dict[str, float]:
        """Sites where the fabric cannot see power (down or partitioned), and since when."""
        unseen = dict(self.partitioned_at)
        for site, t in self.down_at.items():
            unseen[site] = min(t, unseen.get(site, t))
        return unseen

    @property
    def interval(self) -> float:
        return self.timings.replication_interval

    def peer(self, site: str) -> str:
        return self.sites[1] if site == self.sites[0] else self.sites[0]


def vm_state(row: VMRow, world: World) -> lifecycle.VMState:
    """The model's view of the VM at `world.t`."""
    peer = world.peer(row.active_site)
    running = set()
    if row.active_running:
        running.add(row.active_site)
    if row.peer_running:
        running.add(peer)
    return lifecycle.VMState(
        active_site=row.active_site,
        peer_site=peer,
        running=frozenset(running),
        protection=ProtectionState(row.protection),
        replication=replication_state(row, world),
        last_failover=FailoverKind(row.last_failover) if row.last_failover else None,
        test_failover=TestFailoverState(row.test_failover),
    )


def replication_state(row: VMRow, world: World) -> ReplicationState:
    """The stored state, except that a required resync ends by itself at resync_until.

    Without a resync_until (`resync_required(manual=True)`) it stays
    ResyncRequired until a Resync operation ends.
    """
    if row.resync_until is not None and world.t >= row.resync_until:
        return ReplicationState.REPLICATING
    return ReplicationState(row.replication)


def state_columns(state: lifecycle.VMState) -> dict[str, Any]:
    """The columns that hold a model state."""
    return {
        "active_site": state.active_site,
        "active_running": int(state.active_site in state.running),
        "peer_running": int(state.peer_site in state.running),
        "protection": state.protection.value,
        "replication": state.replication.value,
        "last_failover": state.last_failover.value if state.last_failover else None,
        "test_failover": state.test_failover.value,
    }


def grid_floor(t: float, interval: float) -> float:
    """The last replication grid point at or before `t`."""
    return math.floor(t / interval) * interval


def replication_anchor(row: VMRow, world: World) -> float | None:
    """The first recovery point of the current replication (a finished resync restarts it)."""
    if row.sync_anchor is None:
        return None
    if row.resync_until is not None and world.t >= row.resync_until:
        return max(row.sync_anchor, grid_floor(row.resync_until, world.interval))
    return row.sync_anchor


def _shipping_cut(row: VMRow, world: World) -> float | None:
    """Since when nothing ships (a site of the pair is down, or a resync is pending)."""
    cuts = [
        world.down_at[s]
        for s in (row.active_site, world.peer(row.active_site))
        if s in world.down_at
    ]
    # A resync the fabric runs by itself ends at resync_until; one that waits
    # for a Resync operation (no resync_until) cuts shipping until it runs.
    if row.resync_from is not None and (row.resync_until is None or world.t < row.resync_until):
        cuts.append(row.resync_from)
    return min(cuts) if cuts else None


def last_sync(row: VMRow, world: World) -> float | None:
    """The newest write the replica holds: the last shipping tick; None without replication."""
    anchor = replication_anchor(row, world)
    if anchor is None:
        return None
    until = world.t - row.lag
    cut = _shipping_cut(row, world)
    if cut is not None:
        until = min(until, cut)
    return max(anchor, grid_floor(until, world.interval))


def recovery_points(row: VMRow, world: World) -> tuple[float, ...]:
    """Newest first, at most MAX_RECOVERY_POINTS; after a failover, the ones it kept."""
    if row.rp_latest is not None:
        newest = row.rp_latest
        oldest = row.rp_oldest if row.rp_oldest is not None else newest
    else:
        synced, anchor = last_sync(row, world), replication_anchor(row, world)
        if synced is None or anchor is None:
            return ()
        newest, oldest = synced, anchor
    points = [newest - k * world.interval for k in range(MAX_RECOVERY_POINTS)]
    return tuple(p for p in points if p >= oldest)


def point_type(point: float, world: World) -> PointType:
    """Every APP_CONSISTENT_EVERY-th grid point is app-consistent, the others crash-consistent."""
    if round(point / world.interval) % APP_CONSISTENT_EVERY == 0:
        return PointType.APP_CONSISTENT
    return PointType.CRASH_CONSISTENT


def point_id(point: float) -> str:
    """A point's stable id: `rp-` and its time to the second, UTC (`rp-20261201T093000Z`)."""
    return "rp-" + datetime.fromtimestamp(point, UTC).strftime("%Y%m%dT%H%M%SZ")


def behind_seconds(row: VMRow, world: World) -> float:
    """How far replication is behind its schedule: the lag, plus any time shipping is cut."""
    cut = _shipping_cut(row, world)
    return row.lag + (world.t - cut if cut is not None else 0.0)


def health(row: VMRow, world: World) -> Health:
    return lifecycle.replication_health(
        replication_state(row, world), behind_seconds(row, world), world.interval
    )


def written_until(row: VMRow, world: World) -> float:
    """When the active copy took its last write: now, unless stopped or its site is down."""
    ends = [world.t]
    if row.writes_stopped_at is not None:
        ends.append(row.writes_stopped_at)
    if row.active_site in world.down_at:
        ends.append(world.down_at[row.active_site])
    return min(ends)


def time_columns(
    row: VMRow, world: World, op: Operation, new: lifecycle.VMState, job: JobRow
) -> dict[str, Any]:
    """How the replication anchors change when `op` finishes at `world.t`."""
    if op in FAILOVERS:
        if new.protection is ProtectionState.PROTECTED:  # a flavour that reverses at once
            return replication_restarted(world)
        # An unplanned failover keeps the points it could have booted, until
        # Commit; a planned one keeps only the point it shipped.
        point, anchor = job.recovery_point, replication_anchor(row, world)
        oldest = point
        if op is Operation.UNPLANNED_FAILOVER and point is not None and anchor is not None:
            oldest = min(anchor, point)
        return {
            "sync_anchor": None,
            "resync_from": None,
            "resync_until": None,
            "writes_stopped_at": None,
            "rp_latest": point,
            "rp_oldest": oldest,
            "rp_applied": point,
            "written_until": job.written_until,
        }
    if op is Operation.APPLY_RECOVERY_POINT:
        return {"rp_applied": job.recovery_point}
    if op is Operation.COMMIT:
        return {"rp_latest": None, "rp_oldest": None, "rp_applied": None, "written_until": None}
    if op in {Operation.REVERSE_REPLICATE, Operation.ENABLE_REPLICATION}:
        return replication_restarted(world)
    if op is Operation.DISABLE_REPLICATION:
        return {"sync_anchor": None, "resync_from": None, "resync_until": None}
    if op is Operation.RESYNC:
        # The resynced replica holds a full copy as of the end, on the grid.
        anchor = replication_anchor(row, world)
        first = grid_floor(world.t, world.interval)
        return {
            "sync_anchor": first if anchor is None else max(anchor, first),
            "resync_from": None,
            "resync_until": None,
        }
    if op is Operation.STOP_VM and job.target_site == row.active_site:
        return {"writes_stopped_at": world.t}
    if op is Operation.START_VM:
        return {"writes_stopped_at": None}
    return {}


def replication_restarted(world: World) -> dict[str, Any]:
    """Replication (re)starts now with a full copy, its first recovery point on the grid."""
    return {
        "sync_anchor": grid_floor(world.t, world.interval),
        "resync_from": None,
        "resync_until": None,
        "writes_stopped_at": None,
        "rp_latest": None,
        "rp_oldest": None,
        "rp_applied": None,
        "written_until": None,
    }
