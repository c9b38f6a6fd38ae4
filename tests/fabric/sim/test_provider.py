"""The simulated fabric, driven by a virtual clock: jobs, faults, data loss, processes."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from builders import inventory, inventory_vm, sim_fabric, timings
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler import errors
from reconciler.core.state import (
    FailoverKind,
    Health,
    Job,
    JobState,
    Operation,
    PointType,
    ProtectionState,
    ReplicationState,
)
from reconciler.core.state import TestFailoverState as DrillState
from reconciler.fabric.base import Request
from reconciler.fabric.sim import faults
from reconciler.fabric.sim import provider as sim
from reconciler.kits.clock import VirtualClock

OP = Operation
CRASH, APP = PointType.CRASH_CONSISTENT, PointType.APP_CONSISTENT
START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
INTERVAL = 30.0
TIMINGS = timings(replication_interval=INTERVAL)
INVENTORY = inventory(
    inventory_vm("web01"),
    inventory_vm("db01"),
    inventory_vm("batch", "rtm", replication=None),
    timings=TIMINGS,
)


def run(
    fabric: sim.SimFabric,
    clock: VirtualClock,
    vm: str,
    op: Operation,
    *,
    target_site: str | None = None,
    shutdown_source: bool = False,
    recovery_point: str | None = None,
) -> Job:
    """Start `op`, let it take as long as it takes, return the finished job."""
    job_id = fabric.start(Request(vm, op, target_site, shutdown_source, recovery_point))
    job = fabric.get_job(job_id)
    while job.running:
        clock.advance(1)
        job = fabric.get_job(job_id)
    return job


def at(seconds: float) -> datetime:
    return START + timedelta(seconds=seconds)


# --- jobs progress with time --------------------------------------------------------


def test_a_job_runs_for_its_duration_then_has_its_effect(
    fabric: sim.SimFabric, clock: VirtualClock
) -> None:
    job_id = fabric.start(Request("web01", OP.PLANNED_FAILOVER, target_site="rtm"))
    assert job_id == "job-000001"
    clock.advance(1.5)
    vm = fabric.observe().vms["web01"]
    assert vm.job is not None
    assert vm.job.progress == pytest.approx(0.5)
    assert vm.job.target_site == "rtm"
    assert vm.allowed_operations == frozenset()
    assert vm.active_site == "ams"  # nothing changes before the job ends

    clock.advance(1.5)
    job = fabric.get_job(job_id)
    assert job.state is JobState.SUCCEEDED
    assert job.finished_at == at(3)
    assert job.progress == 1.0
    assert job.data_loss_seconds == 0.0
    vm = fabric.observe().vms["web01"]
    assert (vm.active_site, vm.running, vm.protection_state) == (
        "rtm",
        ("rtm",),
        ProtectionState.COMMIT_PENDING,
    )
    assert vm.replication is None
    assert vm.last_failover is FailoverKind.PLANNED
    assert vm.allowed_operations == {OP.COMMIT, OP.STOP_VM}


def test_the_whole_round_trip_fails_over_and_back_without_losing_a_write(
    fabric: sim.SimFabric, clock: VirtualClock
) -> None:
    steps = [
        (OP.PLANNED_FAILOVER, 3),
        (OP.COMMIT, 1),
        (OP.REVERSE_REPLICATE, 2),
        (OP.PLANNED_FAILOVER, 3),
        (OP.COMMIT, 1),
        (OP.REVERSE_REPLICATE, 2),
    ]
    for op, seconds in steps:
        clock.advance(10)  # writes pile up between steps
        job = run(fabric, clock, "web01", op)
        assert job.state is JobState.SUCCEEDED, job.error
        assert job.finished_at is not None
        assert (job.finished_at - job.started_at).total_seconds() == seconds
        if op is OP.PLANNED_FAILOVER:
            assert job.data_loss_seconds == 0.0
    vm = fabric.observe().vms["web01"]
    assert vm.active_site == "ams"
    assert vm.replication is not None
    assert vm.replication.direction == "ams->rtm"
    assert vm.replication.state is ReplicationState.REPLICATING
    assert [j.operation for j in fabric.list_jobs()] == [op for op, _ in steps]


def test_reverse_replication_is_initial_sync_while_it_runs(
    fabric: sim.SimFabric, clock: VirtualClock
) -> None:
    run(fabric, clock, "web01", OP.PLANNED_FAILOVER)
    run(fabric, clock, "web01", OP.COMMIT)
    fabric.start(Request("web01", OP.REVERSE_REPLICATE))
    vm = fabric.observe().vms["web01"]
    assert vm.replication is not None
    assert (vm.replication.direction, vm.replication.state) == (
        "rtm->ams",
        ReplicationState.INITIAL_SYNC,
    )
    assert vm.protection_state is ProtectionState.COMMITTED


def test_reverse_after_an_unplanned_failover_is_a_full_initial_replication(
    fabric: sim.SimFabric, clock: VirtualClock
) -> None:
    run(fabric, clock, "web01", OP.UNPLANNED_FAILOVER, shutdown_source=True)
    run(fabric, clock, "web01", OP.COMMIT)
    job = run(fabric, clock, "web01", OP.REVERSE_REPLICATE)
    assert job.finished_at is not None
    assert (job.finished_at - job.started_at).total_seconds() == TIMINGS.initial_replication


# --- data loss ------------------------------------------------------------------------


def test_replication_ships_every_interval(fabric: sim.SimFabric, clock: VirtualClock) -> None:
    clock.advance(75)
    rep = fabric.observe().vms["web01"].replication
    assert rep is not None
    assert rep.last_sync == at(60)
    assert rep.interval_seconds == INTERVAL
    points = fabric.observe().vms["web01"].recovery_points
    assert [p.time for p in points] == [at(60), at(30), at(0)]
    # One point in three is app-consistent; ids name the time to the second.
    assert [p.type for p in points] == [CRASH, CRASH, APP]
    assert points[0].id == "rp-20260101T120100Z"


def test_an_unplanned_failover_loses_the_writes_not_yet_shipped(
    fabric: sim.SimFabric, clock: VirtualClock
) -> None:
    clock.advance(40)
    rep = fabric.observe().vms["web01"].replication
    assert rep is not None
    assert rep.last_sync is not None
    unshipped = (clock.now() - rep.last_sync).total_seconds()
    job = run(fabric, clock, "web01", OP.UNPLANNED_FAILOVER, shutdown_source=True)
    assert job.data_loss_seconds == unshipped == 10.0
    vm = fabric.observe().vms["web01"]
    assert vm.running == ("rtm",)
    assert vm.recovery_points[0].time == at(30)  # it booted the last sync
    assert vm.applied_point == vm.recovery_points[0].id


def test_writes_stop_when_the_source_site_goes_down(
    fabric: sim.SimFabric, clock: VirtualClock
) -> None:
    """Lost writes are those between the last sync and the outage, not the failover."""
    clock.advance(40)
    fabric.site_down("ams")
    clock.advance(100)
    job = run(fabric, clock, "web01", OP.UNPLANNED_FAILOVER, shutdown_source=True)
    assert job.state is JobState.SUCCEEDED
    assert job.data_loss_seconds == 10.0


def test_a_planned_failover_of_a_stopped_vm_loses_nothing(
    fabric: sim.SimFabric, clock: VirtualClock
) -> None:
    clock.advance(50)
    run(fabric, clock, "web01", OP.STOP_VM, target_site="ams")
    assert fabric.observe().vms["web01"].running == ()
    job = run(fabric, clock, "web01", OP.PLANNED_FAILOVER)
    assert (job.state, job.data_loss_seconds) == (JobState.SUCCEEDED, 0.0)
    assert fabric.observe().vms["web01"].running == ("rtm",)


def test_an_older_recovery_point_loses_more_and_commit_deletes_the_others(
    fabric: sim.SimFabric, clock: VirtualClock
) -> None:
    clock.advance(70)
    run(fabric, clock, "web01", OP.UNPLANNED_FAILOVER, shutdown_source=True)
    vm = fabric.observe().vms["web01"]
    assert [p.time for p in vm.recovery_points] == [at(60), at(30), at(0)]
    assert vm.applied_point == vm.recovery_points[0].id
    assert vm.last_failover_loss_seconds == 10.0
    assert OP.APPLY_RECOVERY_POINT in vm.allowed_operations
    older = vm.recovery_points[1]
    job = run(fabric, clock, "web01", OP.APPLY_RECOVERY_POINT, recovery_point=older.id)
    assert job.data_loss_seconds == 40.0
    vm = fabric.observe().vms["web01"]
    assert (vm.applied_point, vm.last_failover_loss_seconds) == (older.id, 40.0)
    # Named by its time, the newest again: back to 10 s lost.
    newest = vm.recovery_points[0].time.isoformat()
    run(fabric, clock, "web01", OP.APPLY_RECOVERY_POINT, recovery_point=newest)
    assert fabric.observe().vms["web01"].last_failover_loss_seconds == 10.0
    run(fabric, clock, "web01", OP.COMMIT)
    vm = fabric.observe().vms["web01"]
    assert (vm.recovery_points, vm.applied_point) == ((), None)


def test_an_unknown_recovery_point_is_refused(fabric: sim.SimFabric, clock: VirtualClock) -> None:
    run(fabric, clock, "web01", OP.UNPLANNED_FAILOVER, shutdown_source=True)
    with pytest.raises(errors.RejectedError, match=r"no recovery point '2020-01-01.*rp-2026"):
        fabric.start(
            Request("web01", OP.APPLY_RECOVERY_POINT, recovery_point="2020-01-01T00:00:00+00:00")
        )


@settings(max_examples=40, deadline=None)
@given(
    before=st.floats(0, 300),
    lag=st.sampled_from([0.0, 10.0, 45.0, 200.0]),
    outage=st.none() | st.floats(0, 100),
    stop=st.booleans(),
    planned=st.booleans(),
)
def test_a_failover_loses_exactly_the_writes_after_the_last_sync(
    before: float, lag: float, outage: float | None, stop: bool, planned: bool
) -> None:
    """Whatever the timing: a planned failover loses nothing; an unplanned one loses the
    writes between the last sync it reported and the moment the source stopped writing."""
    clock = VirtualClock(START)
    with tempfile.TemporaryDirectory() as tmp, sim_fabric(Path(tmp), INVENTORY, clock) as fabric:
        clock.advance(before)
        fabric.lag("web01", lag)
        writes_end = None
        if stop:
            job = run(fabric, clock, "web01", OP.STOP_VM)
            writes_end = job.finished_at
        if outage is not None:
            fabric.site_down("ams")
            writes_end = writes_end or clock.now()
            clock.advance(outage)
        vm = fabric.observe().vms["web01"]
        op = OP.PLANNED_FAILOVER if planned else OP.UNPLANNED_FAILOVER
        if op not in vm.allowed_operations:
            assert planned  # an unplanned failover only needs the target
            return
        assert vm.replication is not None
        assert vm.replication.last_sync is not None
        unshipped = ((writes_end or clock.now()) - vm.replication.last_sync).total_seconds()
        job = run(fabric, clock, "web01", op, shutdown_source=True)
        assert job.state is JobState.SUCCEEDED
        expected = 0.0 if planned else max(0.0, unshipped)
        assert job.data_loss_seconds == pytest.approx(expected, abs=1e-5)


# --- split brain ----------------------------------------------------------------------


def test_the_old_copy_still_runs_when_the_lost_site_returns(
    fabric: sim.SimFabric, clock: VirtualClock
) -> None:
    fabric.site_down("ams")
    run(fabric, clock, "web01", OP.UNPLANNED_FAILOVER, shutdown_source=True)
    run(fabric, clock, "web01", OP.COMMIT)
    fabric.site_up("ams")
    vm = fabric.observe().vms["web01"]
    assert (vm.active_site, vm.running) == ("rtm", ("ams", "rtm"))
    with pytest.raises(errors.RejectedError, match=r"old copy still runs at ams .* StopVM at ams"):
        fabric.start(Request("web01", OP.REVERSE_REPLICATE))
    assert run(fabric, clock, "web01", OP.STOP_VM, target_site="ams").state is JobState.SUCCEEDED
    job = run(fabric, clock, "web01", OP.REVERSE_REPLICATE)
    assert job.state is JobState.SUCCEEDED
    vm = fabric.observe().vms["web01"]
    assert vm.running == ("rtm",)
    assert vm.replication is not None
    assert vm.replication.direction == "rtm->ams"


# --- failures and refusals ----------------------------------------------------------------


def test_an_injected_failure_surfaces_as_a_failed_job_and_changes_nothing(
    fabric: sim.SimFabric, clock: VirtualClock
) -> None:
    fabric.inject_failure("web01", OP.PLANNED_FAILOVER, times=1)
    job_id = fabric.start(Request("web01", OP.PLANNED_FAILOVER))
    assert fabric.get_job(job_id).state is JobState.RUNNING  # accepted first
    clock.advance(3)
    job = fabric.get_job(job_id)
    assert job.state is JobState.FAILED
    assert job.error is not None
    assert "PlannedFailover of web01 failed" in job.error
    assert job.data_loss_seconds is None
    vm = fabric.observe().vms["web01"]
    assert (vm.active_site, vm.protection_state) == ("ams", ProtectionState.PROTECTED)
    assert run(fabric, clock, "web01", OP.PLANNED_FAILOVER).state is JobState.SUCCEEDED


def test_a_job_fails_when_its_site_goes_down_while_it_runs(
    fabric: sim.SimFabric, clock: VirtualClock
) -> None:
    job_id = fabric.start(Request("web01", OP.PLANNED_FAILOVER))
    clock.advance(1)
    fabric.site_down("rtm")
    clock.advance(1)
    fabric.site_up("rtm")
    clock.advance(5)
    job = fabric.get_job(job_id)
    assert job.state is JobState.FAILED
    assert job.error is not None
    assert "site rtm went down at 2026-01-01T12:00:01.000000+00:00 while the job ran" in job.error
    assert fabric.observe().vms["web01"].active_site == "ams"


def test_a_planned_failover_is_refused_while_the_target_is_down(fabric: sim.SimFabric) -> None:
    fabric.site_down("rtm")
    with pytest.raises(errors.RejectedError) as refused:
        fabric.start(Request("web01", OP.PLANNED_FAILOVER))
    assert str(refused.value) == (
        "web01: PlannedFailover is not allowed: site rtm (the target) is disconnected: "
        "PlannedFailover needs it connected; wait for rtm to reconnect"
    )


def test_a_second_job_on_a_busy_vm_is_refused(fabric: sim.SimFabric) -> None:
    fabric.start(Request("web01", OP.TEST_FAILOVER))
    with pytest.raises(errors.RejectedError, match="job job-000001 \\(TestFailover\\) is running"):
        fabric.start(Request("web01", OP.PLANNED_FAILOVER))


def test_unknown_vms_and_jobs_are_terminal_errors(fabric: sim.SimFabric) -> None:
    with pytest.raises(errors.TerminalError, match="no VM 'nope'"):
        fabric.start(Request("nope", OP.COMMIT))
    with pytest.raises(errors.TerminalError, match="no job job-000099"):
        fabric.get_job("job-000099")


def test_a_state_dir_without_a_fabric_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(errors.TerminalError, match=r"run drctl fabric init INVENTORY\.yaml first"):
        sim.SimFabric(tmp_path / "empty")


# --- faults of the fabric's API (the Provider calls themselves) -----------------------------


@pytest.mark.parametrize(
    ("kind", "raised"),
    [
        ("rejected", errors.RejectedError),
        ("transient", errors.TransientError),
        ("throttled", errors.ThrottledError),
        ("terminal", errors.TerminalError),
    ],
)
def test_an_injected_start_error_is_raised_for_its_vm_only_then_clears(
    fabric: sim.SimFabric, kind: faults.ErrorKind, raised: type[errors.ProviderError]
) -> None:
    fabric.inject_call_error("start", kind, times=2, vm="web01")
    for _ in range(2):
        with pytest.raises(raised, match="injected"):
            fabric.start(Request("web01", OP.STOP_VM, "ams"))
    fabric.start(Request("db01", OP.STOP_VM, "ams"))
    assert [j.vm for j in fabric.list_jobs()] == ["db01"]
    fabric.start(Request("web01", OP.STOP_VM, "ams"))
    assert [j.vm for j in fabric.list_jobs()] == ["db01", "web01"]


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        ("cancel", "transient", "no Provider call 'cancel'"),
        ("start", "boom", "no error kind 'boom'"),
        ("start", "transient", "only a throttled error has a retry-after"),
    ],
)
def test_a_call_error_that_cannot_be_raised_is_refused(
    fabric: sim.SimFabric, call: str, error: str, words: str
) -> None:
    retry_after = 3.0 if words.startswith("only") else None
    with pytest.raises(errors.UsageError, match=words):
        fabric.inject_call_error(call, error, retry_after=retry_after)  # type: ignore[arg-type]


def test_a_fabric_made_before_call_errors_existed_opens_without_any(
    tmp_path: Path, clock: VirtualClock
) -> None:
    sim.init_fabric(tmp_path, INVENTORY, clock)
    with contextlib.closing(sqlite3.connect(tmp_path / "fabric.db")) as db:
        db.execute("DROP TABLE call_faults")
        db.commit()
    with sim.SimFabric(tmp_path, clock) as fabric:
        assert set(fabric.observe().vms) == {"web01", "db01", "batch"}
        fabric.inject_call_error("observe", "transient")
        with pytest.raises(errors.TransientError):
            fabric.observe()


# --- replication faults ---------------------------------------------------------------------


def test_lagging_replication_reads_warning_then_critical_while_it_replicates(
    fabric: sim.SimFabric, clock: VirtualClock
) -> None:
    clock.advance(100)
    assert fabric.lag("web01", 45) is Health.WARNING
    vm = fabric.observe().vms["web01"]
    assert vm.replication is not None
    assert vm.replication.last_sync == at(30)  # ships what was written 45 s before each tick
    assert (vm.replication.state, vm.replication.health) == (
        ReplicationState.REPLICATING,
        Health.WARNING,
    )
    assert fabric.lag("web01", 200) is Health.CRITICAL
    assert fabric.lag("web01", 0) is Health.NORMAL


@pytest.mark.parametrize("lag", [45.0, 200.0])
def test_a_planned_failover_ships_the_lag_slower_and_loses_nothing(
    fabric: sim.SimFabric, clock: VirtualClock, lag: float
) -> None:
    """Warning or Critical health never refuses it (issue 9, rule 5): it takes the lag longer."""
    clock.advance(100)
    fabric.lag("web01", lag)
    vm = fabric.observe().vms["web01"]
    assert vm.replication is not None
    assert vm.replication.health is not Health.NORMAL
    assert OP.PLANNED_FAILOVER in vm.allowed_operations
    job = run(fabric, clock, "web01", OP.PLANNED_FAILOVER)
    assert (job.state, job.data_loss_seconds) == (JobState.SUCCEEDED, 0.0)
    assert job.finished_at is not None
    assert (job.finished_at - job.started_at).total_seconds() == TIMINGS.planned_failover + lag
    assert fabric.observe().vms["web01"].running == ("rtm",)


def test_a_required_resync_blocks_planned_failover_until_the_fabric_resyncs(
    fabric: sim.SimFabric, clock: VirtualClock
) -> None:
    clock.advance(40)
    assert fabric.resync_required("web01") == TIMINGS.initial_replication
    clock.advance(TIMINGS.initial_replication / 2)
    rep = fabric.observe().vms["web01"].replication
    assert rep is not None
    assert (rep.state, rep.health, rep.last_sync) == (
        ReplicationState.RESYNC_REQUIRED,
        Health.CRITICAL,
        at(INTERVAL),
    )
    vm = fabric.observe().vms["web01"]
    assert OP.PLANNED_FAILOVER not in vm.allowed_operations
    assert OP.UNPLANNED_FAILOVER in vm.allowed_operations
    clock.advance(TIMINGS.initial_replication / 2)
    rep = fabric.observe().vms["web01"].replication
    assert rep is not None
    assert (rep.state, rep.health) == (ReplicationState.REPLICATING, Health.NORMAL)
    clock.advance(INTERVAL)
    rep = fabric.observe().vms["web01"].replication
    assert rep is not None
    assert rep.last_sync == at(2 * INTERVAL)  # shipping again


def test_a_target_outage_makes_replication_fall_behind(
    fabric: sim.SimFabric, clock: VirtualClock
) -> None:
    fabric.site_down("rtm")
    clock.advance(INTERVAL * 2)
    rep = fabric.observe().vms["web01"].replication
    assert rep is not None
    assert (rep.health, rep.last_sync) == (Health.WARNING, at(0))


def test_a_test_failover_leaves_production_running_and_replicating(
    fabric: sim.SimFabric, clock: VirtualClock
) -> None:
    run(fabric, clock, "web01", OP.TEST_FAILOVER)
    clock.advance(INTERVAL)
    vm = fabric.observe().vms["web01"]
    assert vm.test_failover is DrillState.RUNNING
    assert (vm.active_site, vm.running) == ("ams", ("ams",))
    assert vm.replication is not None
    assert vm.replication.last_sync == at(INTERVAL)
    assert vm.allowed_operations == {OP.TEST_FAILOVER_CLEANUP, OP.STOP_VM}
    run(fabric, clock, "web01", OP.TEST_FAILOVER_CLEANUP)
    assert fabric.observe().vms["web01"].test_failover is DrillState.NONE


def test_a_vm_moved_by_hand_runs_at_the_new_site_only(fabric: sim.SimFabric) -> None:
    fabric.move("web01", "rtm")
    vm = fabric.observe().vms["web01"]
    assert (vm.active_site, vm.running, vm.protection_state) == (
        "rtm",
        ("rtm",),
        ProtectionState.PROTECTED,
    )
    assert vm.replication is not None
    assert vm.replication.direction == "rtm->ams"
    # As in the real fabric, the operator's failover is in the job list (not drctl's journal).
    (job,) = fabric.list_jobs()
    assert (job.vm, job.operation, job.state) == ("web01", OP.PLANNED_FAILOVER, JobState.SUCCEEDED)
    assert vm.last_failover_job == job.id
    with pytest.raises(errors.UsageError, match="already active at rtm"):
        fabric.move("web01", "rtm")
    with pytest.raises(errors.UsageError, match="no site 'lon'"):
        fabric.move("web01", "lon")


def test_enable_replication_of_an_unprotected_vm(
    fabric: sim.SimFabric, clock: VirtualClock
) -> None:
    assert fabric.observe().vms["batch"].replication is None
    job = run(fabric, clock, "batch", OP.ENABLE_REPLICATION)
    assert (job.target_site, job.finished_at) == ("ams", at(TIMINGS.initial_replication))
    rep = fabric.observe().vms["batch"].replication
    assert rep is not None
    assert rep.direction == "rtm->ams"


def test_observed_header(fabric: sim.SimFabric, clock: VirtualClock) -> None:
    clock.advance(7)
    observed = fabric.observe()
    assert observed.at == at(7)
    assert observed.can_stop_vms
    assert {s.name: s.connected for s in observed.sites.values()} == {"ams": True, "rtm": True}
    assert list(observed.vms) == ["web01", "db01", "batch"]


# --- several processes ------------------------------------------------------------------------

_WORKER = """
import sys
from datetime import UTC, datetime
from pathlib import Path
from reconciler import errors
from reconciler.kits.clock import VirtualClock
from reconciler.fabric.sim import faults
from reconciler.fabric.sim import provider as sim
from reconciler.fabric.base import Request
from reconciler.core.state import Operation

state_dir, worker, count = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
fabric = sim.SimFabric(state_dir, VirtualClock(datetime(2026, 1, 1, 12, tzinfo=UTC)))
won = 0
for i in range(count):
    # Every worker asks for the shared VMs, each for its own.
    for vm in (f"shared{i}", f"own{worker}-{i}"):
        try:
            fabric.start(Request(vm, Operation.PLANNED_FAILOVER))
            won += vm.startswith("shared")
        except errors.RejectedError:
            pass
    fabric.observe()
print(won)
"""


def test_several_processes_share_one_fabric(tmp_path: Path) -> None:
    """Concurrent starts and observations: no job lost, none doubled, one per VM."""
    workers, count = 4, 15
    vms = [inventory_vm(f"shared{i}") for i in range(count)]
    vms += [inventory_vm(f"own{w}-{i}") for w in range(workers) for i in range(count)]
    slow = timings(planned_failover=3600)
    sim.init_fabric(tmp_path, inventory(*vms, timings=slow), VirtualClock(START))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(tmp_path), str(w), str(count)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(workers)
    ]
    results = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in results]
    assert sum(int(out) for out, _ in results) == count  # each shared VM won exactly once

    fabric = sim.SimFabric(tmp_path, VirtualClock(START))
    jobs = fabric.list_jobs()
    fabric.close()
    assert len(jobs) == count * (workers + 1)
    assert len({j.id for j in jobs}) == len(jobs)
    assert sorted(j.vm for j in jobs) == sorted(vm.name for vm in vms)
    assert [j.id for j in jobs] == [f"job-{n:06d}" for n in range(1, len(jobs) + 1)]
