"""Power the simulated fabric cannot see: a management-plane partition, and a dark site.

A partition cuts drctl off from a site's management plane while the site
goes on: its VMs keep running and taking writes, replication keeps shipping,
and the fabric reports the site disconnected and every VM's power there
Unknown. A site that is down is dark: its power is Unknown too.
"""

from __future__ import annotations

import contextlib
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from builders import inventory, inventory_vm, timings

from reconciler import errors
from reconciler.core.state import JobState, Operation, Power
from reconciler.fabric.base import Request
from reconciler.fabric.sim import provider as sim
from reconciler.kits.clock import VirtualClock

OP = Operation
START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
INVENTORY = inventory(
    inventory_vm("web01"),
    inventory_vm("batch", "rtm", replication=None),
    timings=timings(replication_interval=30.0),
)


def at(seconds: float) -> datetime:
    return START + timedelta(seconds=seconds)


def finish(fabric: sim.SimFabric, clock: VirtualClock, request: Request) -> JobState:
    job_id = fabric.start(request)
    while (job := fabric.get_job(job_id)).running:
        clock.advance(1)
    return job.state


def test_a_partitioned_site_is_disconnected_and_the_power_of_its_vms_unknown(
    fabric: sim.SimFabric, clock: VirtualClock
) -> None:
    clock.advance(40)
    assert fabric.partition("ams")
    clock.advance(20)
    seen = fabric.observe()
    assert not seen.site_connected("ams")
    assert seen.site_connected("rtm")
    web01, batch = seen.vms["web01"], seen.vms["batch"]
    assert (web01.running, web01.power_unknown, web01.power_seen_at) == ((), ("ams",), at(40))
    assert web01.power_by_site() == {"ams": Power.UNKNOWN, "rtm": Power.OFF}
    assert (batch.running, batch.power_unknown) == (("rtm",), ("ams",))
    # Nothing reaches ams: no stop, no planned failover (it would shut ams down).
    assert not {OP.STOP_VM, OP.PLANNED_FAILOVER} & web01.allowed_operations
    with pytest.raises(errors.RejectedError, match="site ams is disconnected"):
        fabric.start(Request("web01", OP.STOP_VM, "ams"))

    assert fabric.heal("ams")
    web01 = fabric.observe().vms["web01"]
    assert (web01.running, web01.power_unknown, web01.power_seen_at) == (("ams",), (), None)
    assert OP.PLANNED_FAILOVER in web01.allowed_operations


def test_vms_keep_running_taking_writes_and_replicating_through_a_partition(
    fabric: sim.SimFabric, clock: VirtualClock
) -> None:
    """Unlike an outage: an unplanned failover away from a partitioned site loses only the
    writes since the last sync, which kept shipping, and cannot shut the old copy down,
    which is still running when the partition heals."""
    clock.advance(40)
    fabric.partition("ams")
    clock.advance(60)
    rep = fabric.observe().vms["web01"].replication
    assert rep is not None
    assert rep.last_sync == at(90)  # shipped on the grid after the partition began
    failover = Request("web01", OP.UNPLANNED_FAILOVER, shutdown_source=True)
    job_id = fabric.start(failover)
    clock.advance(30)
    job = fabric.get_job(job_id)
    assert (job.state, job.data_loss_seconds) == (JobState.SUCCEEDED, 10.0)
    assert fabric.observe().vms["web01"].power_by_site() == {
        "ams": Power.UNKNOWN,
        "rtm": Power.RUNNING,
    }
    fabric.heal("ams")
    assert fabric.observe().vms["web01"].running == ("ams", "rtm")  # it ran all along


def test_a_job_fails_when_its_sites_management_plane_is_cut_off_while_it_runs(
    fabric: sim.SimFabric, clock: VirtualClock
) -> None:
    job_id = fabric.start(Request("web01", OP.PLANNED_FAILOVER))
    clock.advance(1)
    fabric.partition("ams")
    clock.advance(1)
    fabric.heal("ams")
    clock.advance(10)
    job = fabric.get_job(job_id)
    assert job.state is JobState.FAILED
    assert job.error is not None
    assert "the management plane of site ams stopped answering at 2026-01-01T12:00:01" in job.error
    assert fabric.observe().vms["web01"].running == ("ams",)


def test_the_power_of_a_site_that_is_down_is_unknown(
    fabric: sim.SimFabric, clock: VirtualClock
) -> None:
    """The fabric cannot see a dark site: what the simulator knows of it is not reported."""
    clock.advance(5)
    fabric.site_down("rtm")
    fabric.partition("rtm")  # both at once: seen last when the first began
    clock.advance(5)
    seen = fabric.observe()
    assert (seen.vms["batch"].running, seen.vms["batch"].power_unknown) == ((), ("rtm",))
    assert seen.vms["batch"].power_seen_at == at(5)
    assert seen.vms["web01"].power_by_site() == {"ams": Power.RUNNING, "rtm": Power.UNKNOWN}
    fabric.site_up("rtm")
    fabric.heal("rtm")
    assert fabric.observe().vms["batch"].power_at("rtm") is Power.RUNNING


def test_partition_and_heal_say_whether_they_changed_anything(fabric: sim.SimFabric) -> None:
    assert not fabric.heal("rtm")
    assert fabric.partition("rtm")
    assert not fabric.partition("rtm")
    assert fabric.heal("rtm")
    with pytest.raises(errors.UsageError, match="no site 'lon'"):
        fabric.partition("lon")


def test_a_fabric_made_before_partitions_existed_opens_without_any(
    tmp_path: Path, clock: VirtualClock
) -> None:
    sim.init_fabric(tmp_path, INVENTORY, clock)
    with contextlib.closing(sqlite3.connect(tmp_path / "fabric.db")) as db:
        db.execute("DROP TABLE partitions")
        db.commit()
    with sim.SimFabric(tmp_path, clock) as fabric:
        assert fabric.observe().vms["web01"].power_unknown == ()
        assert fabric.partition("ams")
        assert fabric.observe().vms["web01"].power_unknown == ("ams",)
