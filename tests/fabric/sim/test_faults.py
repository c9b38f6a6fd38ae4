"""The simulator as hard as a real fabric: an operator in the portal, jobs that wait for a
person or fail half-way, resyncs that need an operation, full copies as long as the VM's size.

Each test runs the real SQLite fabric on a virtual clock and asserts what `observe()`
and the job list report, as drctl would read them.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from builders import inventory, inventory_vm, timings

from reconciler import errors
from reconciler.core.state import (
    Health,
    Job,
    JobState,
    Operation,
    ProtectionState,
    ReplicationState,
)
from reconciler.fabric.base import Request
from reconciler.fabric.sim import provider as sim
from reconciler.kits.clock import VirtualClock

OP = Operation
START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
INTERVAL = 30.0
TIMINGS = timings(replication_interval=INTERVAL, replication_mbps=100)
INVENTORY = inventory(
    inventory_vm("web01"),
    inventory_vm("big", size_gb=50),  # a full copy: 50 * 1024 MB at 100 MB/s = 512 s
    timings=TIMINGS,
)


def follow(fabric: sim.SimFabric, clock: VirtualClock, job_id: str) -> Job:
    """Let the job take as long as it takes (one virtual second a poll); return it ended."""
    job = fabric.get_job(job_id)
    while job.running and not job.suspended:
        clock.advance(1)
        job = fabric.get_job(job_id)
    return job


def at(seconds: float) -> datetime:
    return START + timedelta(seconds=seconds)


def took(job: Job) -> float:
    assert job.finished_at is not None
    return (job.finished_at - job.started_at).total_seconds()


# --- the operator in the portal ---------------------------------------------------------


def test_a_planned_failover_by_hand_is_a_job_drctl_sees_and_loses_nothing(
    fabric: sim.SimFabric, clock: VirtualClock
) -> None:
    clock.advance(40)
    job_id = fabric.start_by_hand(Request("web01", OP.PLANNED_FAILOVER, "rtm"))
    assert [(j.id, j.operation, j.state) for j in fabric.list_jobs()] == [
        (job_id, OP.PLANNED_FAILOVER, JobState.RUNNING)
    ]
    job = follow(fabric, clock, job_id)
    assert (job.state, job.data_loss_seconds) == (JobState.SUCCEEDED, 0.0)
    vm = fabric.observe().vms["web01"]
    assert (vm.active_site, vm.running, vm.protection_state) == (
        "rtm",
        ("rtm",),  # the source was shut down first
        ProtectionState.COMMIT_PENDING,
    )
    assert (vm.last_failover_job, vm.last_failover_at) == (job_id, job.finished_at)


def test_an_unplanned_failover_by_hand_leaves_the_source_running_and_loses_the_unshipped(
    fabric: sim.SimFabric, clock: VirtualClock
) -> None:
    clock.advance(40)  # the last sync was at 30 s: 10 s of writes not yet shipped
    job_id = fabric.start_by_hand(Request("web01", OP.UNPLANNED_FAILOVER, "rtm"))
    job = follow(fabric, clock, job_id)
    assert (job.state, job.data_loss_seconds) == (JobState.SUCCEEDED, 10.0)
    vm = fabric.observe().vms["web01"]
    assert (vm.active_site, vm.running, vm.protection_state) == (
        "rtm",
        ("ams", "rtm"),  # no shutdown of the source: users may still write at ams
        ProtectionState.COMMIT_PENDING,
    )


def test_an_operator_stops_and_starts_a_copy(fabric: sim.SimFabric, clock: VirtualClock) -> None:
    follow(fabric, clock, fabric.start_by_hand(Request("web01", OP.STOP_VM, "ams")))
    assert fabric.observe().vms["web01"].running == ()
    follow(fabric, clock, fabric.start_by_hand(Request("web01", OP.START_VM, "ams")))
    assert fabric.observe().vms["web01"].running == ("ams",)


@pytest.mark.parametrize(
    ("request_", "words"),
    [
        (
            Request("web01", OP.PLANNED_FAILOVER, "ams"),
            (
                "web01: PlannedFailover is not allowed: the VM is active at ams: "
                "PlannedFailover goes towards rtm"
            ),
        ),
        (Request("web01", OP.START_VM, "rtm"), "starting it would make two authoritative copies"),
        (Request("web01", OP.STOP_VM, "rtm"), "no copy of the VM runs at rtm"),
        (Request("web01", OP.START_VM, "lon"), "no site 'lon' in the simulated fabric"),
        (Request("nope", OP.STOP_VM, "ams"), "no VM 'nope' in the simulated fabric"),
    ],
)
def test_an_operator_is_refused_what_the_lifecycle_refuses_drctl(
    fabric: sim.SimFabric, request_: Request, words: str
) -> None:
    with pytest.raises(errors.UsageError, match=re.escape(words)):
        fabric.start_by_hand(request_)
    assert fabric.list_jobs() == []


def test_the_portal_works_while_drctl_is_cut_off_from_the_fabric(
    fabric: sim.SimFabric, clock: VirtualClock
) -> None:
    """A partition between drctl and the fabric, or its API failing, does not stop a person."""
    fabric.inject_call_error("start", "transient")
    fabric.start_by_hand(Request("web01", OP.STOP_VM, "ams"))
    with pytest.raises(errors.TransientError, match="injected"):  # still there for drctl
        fabric.start(Request("big", OP.STOP_VM, "ams"))
    fabric.set_reachable(False)
    fabric.start_by_hand(Request("big", OP.STOP_VM, "ams"))
    fabric.set_reachable(True)
    clock.advance(TIMINGS.stop_vm)
    assert [vm.running for vm in fabric.observe().vms.values()] == [(), ()]


# --- a job that waits for a person --------------------------------------------------------


def test_a_suspended_job_holds_its_vm_without_progress_until_resumed(
    fabric: sim.SimFabric, clock: VirtualClock
) -> None:
    fabric.suspend_next("web01", OP.PLANNED_FAILOVER)
    job_id = fabric.start(Request("web01", OP.PLANNED_FAILOVER))
    clock.advance(TIMINGS.planned_failover / 2 + 3600)  # suspends half-way; nobody comes
    job = fabric.get_job(job_id)
    assert (job.state, job.running, job.suspended) == (JobState.SUSPENDED, True, True)
    assert job.progress == pytest.approx(0.5)
    assert job.finished_at is None
    assert job.state_description == (
        "Waiting for user input: complete the manual action of PlannedFailover on web01 "
        f"(simulated: drctl fabric resume {job_id})"
    )
    observed = fabric.observe()
    vm = observed.vms["web01"]
    assert vm.job == job
    assert [j.id for j in observed.jobs] == [job_id]
    assert (vm.active_site, vm.running, vm.allowed_operations) == ("ams", ("ams",), frozenset())
    with pytest.raises(errors.RejectedError, match="suspended waiting for a person"):
        fabric.start(Request("web01", OP.UNPLANNED_FAILOVER))

    resumed = fabric.resume(job_id)
    assert (resumed.state, resumed.state_description) == (JobState.RUNNING, "InProgress")
    assert resumed.progress == pytest.approx(0.5)
    job = follow(fabric, clock, job_id)
    assert (job.state, job.state_description) == (JobState.SUCCEEDED, "Completed")
    assert took(job) == TIMINGS.planned_failover + 3600  # the other half after the resume
    assert fabric.observe().vms["web01"].active_site == "rtm"


def test_only_the_next_job_of_that_operation_suspends(
    fabric: sim.SimFabric, clock: VirtualClock
) -> None:
    fabric.suspend_next("web01", OP.COMMIT)
    first = follow(fabric, clock, fabric.start(Request("web01", OP.PLANNED_FAILOVER)))
    assert first.state is JobState.SUCCEEDED
    commit = follow(fabric, clock, fabric.start(Request("web01", OP.COMMIT)))
    assert commit.suspended
    fabric.resume(commit.id)
    assert follow(fabric, clock, commit.id).state is JobState.SUCCEEDED


def test_a_suspended_job_whose_site_went_down_fails_when_resumed(
    fabric: sim.SimFabric, clock: VirtualClock
) -> None:
    fabric.suspend_next("web01", OP.PLANNED_FAILOVER)
    job_id = fabric.start(Request("web01", OP.PLANNED_FAILOVER))
    clock.advance(10)
    fabric.site_down("rtm")
    fabric.site_up("rtm")
    fabric.resume(job_id)
    job = follow(fabric, clock, job_id)
    assert job.state is JobState.FAILED
    assert job.error is not None
    assert "site rtm went down" in job.error


def test_only_a_suspended_job_resumes(fabric: sim.SimFabric) -> None:
    job_id = fabric.start(Request("web01", OP.STOP_VM))
    with pytest.raises(errors.UsageError, match=f"{job_id} is Running, not Suspended"):
        fabric.resume(job_id)
    with pytest.raises(errors.UsageError, match="no job job-000099"):
        fabric.resume("job-000099")
    with pytest.raises(errors.UsageError, match="job ids look like job-000042"):
        fabric.resume("42")


# --- a failed job that leaves an intermediate state -----------------------------------------


def test_a_planned_failover_that_fails_after_its_shutdown_leaves_no_copy_running(
    fabric: sim.SimFabric, clock: VirtualClock
) -> None:
    fabric.inject_failure("web01", OP.PLANNED_FAILOVER, after_shutdown=True)
    clock.advance(40)
    job = follow(fabric, clock, fabric.start(Request("web01", OP.PLANNED_FAILOVER)))
    assert job.state is JobState.FAILED
    assert job.error == (
        "PlannedFailover of web01 failed after shutting down the copy at ams (injected "
        "with drctl fabric fail --after-shutdown): no copy of the VM runs; it is still "
        "active at ams and protected"
    )
    vm = fabric.observe().vms["web01"]
    assert (vm.active_site, vm.running, vm.protection_state) == (
        "ams",
        (),
        ProtectionState.PROTECTED,
    )
    assert vm.replication is not None
    assert (vm.replication.direction, vm.replication.state) == (
        "ams->rtm",
        ReplicationState.REPLICATING,
    )
    assert {OP.START_VM, OP.PLANNED_FAILOVER} <= vm.allowed_operations
    # Nothing was written after the shutdown: once replication ships it, even an
    # unplanned failover loses nothing.
    clock.advance(INTERVAL)
    again = follow(fabric, clock, fabric.start(Request("web01", OP.UNPLANNED_FAILOVER)))
    assert (again.state, again.data_loss_seconds) == (JobState.SUCCEEDED, 0.0)


def test_only_a_planned_failover_fails_after_a_shutdown(fabric: sim.SimFabric) -> None:
    with pytest.raises(errors.UsageError, match="--after-shutdown is for PlannedFailover"):
        fabric.inject_failure("web01", OP.COMMIT, after_shutdown=True)


# --- resyncs and full copies ------------------------------------------------------------------


def test_a_manual_resync_stays_required_until_a_resync_operation(
    fabric: sim.SimFabric, clock: VirtualClock
) -> None:
    clock.advance(40)
    assert fabric.resync_required("web01", manual=True) is None
    clock.advance(3600)
    vm = fabric.observe().vms["web01"]
    assert vm.replication is not None
    assert (vm.replication.state, vm.replication.health, vm.replication.last_sync) == (
        ReplicationState.RESYNC_REQUIRED,
        Health.CRITICAL,
        at(INTERVAL),  # nothing shipped since
    )
    assert OP.RESYNC in vm.allowed_operations
    assert OP.PLANNED_FAILOVER not in vm.allowed_operations

    job = follow(fabric, clock, fabric.start(Request("web01", OP.RESYNC)))
    assert (job.state, job.target_site) == (JobState.SUCCEEDED, "rtm")
    assert took(job) == TIMINGS.initial_replication  # no size in the inventory
    vm = fabric.observe().vms["web01"]
    assert vm.replication is not None
    assert (vm.replication.state, vm.replication.health) == (
        ReplicationState.REPLICATING,
        Health.NORMAL,
    )
    assert OP.RESYNC not in vm.allowed_operations
    synced = vm.replication.last_sync
    clock.advance(INTERVAL)
    rep = fabric.observe().vms["web01"].replication
    assert rep is not None
    assert rep.last_sync is not None
    assert synced is not None
    assert rep.last_sync - synced == timedelta(seconds=INTERVAL)  # shipping again


def test_a_resync_is_refused_when_replication_needs_none(fabric: sim.SimFabric) -> None:
    with pytest.raises(errors.RejectedError, match="Replicating, not ResyncRequired"):
        fabric.start(Request("web01", OP.RESYNC))


def test_full_copies_take_as_long_as_the_vms_size_at_the_throughput(
    fabric: sim.SimFabric, clock: VirtualClock
) -> None:
    """A resync, and the reverse replication after an unplanned failover: 50 GB at 100 MB/s."""
    full = 50 * 1024 / 100
    assert fabric.resync_required("big") == full
    clock.advance(full)
    rep = fabric.observe().vms["big"].replication
    assert rep is not None
    assert rep.state is ReplicationState.REPLICATING
    fabric.resync_required("big", manual=True)
    assert took(follow(fabric, clock, fabric.start(Request("big", OP.RESYNC)))) == full

    request = Request("big", OP.UNPLANNED_FAILOVER, shutdown_source=True)
    follow(fabric, clock, fabric.start(request))
    follow(fabric, clock, fabric.start(Request("big", OP.COMMIT)))
    reverse = fabric.start(Request("big", OP.REVERSE_REPLICATE))
    clock.advance(full - 1)
    rep = fabric.observe().vms["big"].replication
    assert rep is not None
    assert (rep.direction, rep.state) == ("rtm->ams", ReplicationState.INITIAL_SYNC)
    assert took(follow(fabric, clock, reverse)) == full


def test_after_a_planned_failover_the_reverse_replication_is_a_delta_whatever_the_size(
    fabric: sim.SimFabric, clock: VirtualClock
) -> None:
    follow(fabric, clock, fabric.start(Request("big", OP.PLANNED_FAILOVER)))
    follow(fabric, clock, fabric.start(Request("big", OP.COMMIT)))
    reverse = follow(fabric, clock, fabric.start(Request("big", OP.REVERSE_REPLICATE)))
    assert took(reverse) == TIMINGS.reverse_replicate


# --- fabrics made by an older drctl -------------------------------------------------------------


OLD_JOBS = """
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    vm TEXT NOT NULL,
    operation TEXT NOT NULL,
    state TEXT NOT NULL,
    target_site TEXT,
    started_at REAL NOT NULL,
    due_at REAL NOT NULL,
    finished_at REAL,
    error TEXT,
    data_loss REAL,
    recovery_point REAL,
    source_stopped INTEGER NOT NULL DEFAULT 0,
    injected_error TEXT,
    written_until REAL
)
"""


def test_a_fabric_made_before_these_faults_existed_opens_and_gets_them(
    tmp_path: Path, clock: VirtualClock
) -> None:
    sim.init_fabric(tmp_path, INVENTORY, clock)
    with contextlib.closing(sqlite3.connect(tmp_path / "fabric.db")) as db:
        db.execute("DROP TABLE suspensions")
        db.execute("DROP INDEX jobs_suspended")
        for table, column in (
            ("fabric", "replication_mbps"),
            ("vms", "size_gb"),
            ("failures", "after_shutdown"),
        ):
            db.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        # The jobs table as it was (DROP COLUMN trips on its comments); no job yet.
        db.execute("DROP TABLE jobs")
        db.execute(OLD_JOBS)
        db.execute("CREATE INDEX jobs_running ON jobs (due_at) WHERE state = 'Running'")
        # A StopVM of web01 that the older drctl started, due in 2 s.
        db.execute(
            "INSERT INTO jobs (vm, operation, state, target_site, started_at, due_at) "
            "VALUES ('web01', 'StopVM', 'Running', 'ams', ?, ?)",
            (START.timestamp(), START.timestamp() + 2),
        )
        db.execute("UPDATE vms SET job_id = 1 WHERE name = 'web01'")
        db.commit()
    with sim.SimFabric(tmp_path, clock) as fabric:
        clock.advance(1)
        assert fabric.get_job("job-000001").progress == pytest.approx(0.5)
        assert follow(fabric, clock, "job-000001").state is JobState.SUCCEEDED
        assert fabric.resync_required("big") == TIMINGS.initial_replication  # size unknown
        assert fabric.get_job("job-000001").intent_id is None
        fabric.suspend_next("web01", OP.START_VM)
        job_id = fabric.start(Request("web01", OP.START_VM, intent_id="intent-2"))
        clock.advance(TIMINGS.stop_vm)
        assert fabric.get_job(job_id).suspended
        assert fabric.get_job(job_id).intent_id == "intent-2"
