"""What a fabric leaves to a person, and what it leaves to an operation, on the real simulator.

A job that suspends waiting for a manual step is WaitingForUser, followed but
never retried nor taken for finished; a resync that the fabric does not run
by itself is issued as a Resync operation.
"""

from __future__ import annotations

from pathlib import Path

from builders import desired, inventory, inventory_vm, want

from reconciler.core.plan import Phase
from reconciler.core.state import JobState, Operation, ProtectionState, ReplicationState
from reconciler.engine import execute, journal
from reconciler.fabric.sim import provider as sim
from reconciler.kits.clock import VirtualClock

REV = "rev1"


def setup(tmp_path: Path) -> tuple[VirtualClock, sim.SimFabric, execute.Executor]:
    clock = VirtualClock()
    sim.init_fabric(tmp_path, inventory(inventory_vm("sql01")), clock)
    fabric = sim.SimFabric(tmp_path, clock)
    return clock, fabric, execute.Executor(fabric, journal.Journal(tmp_path), clock)


def test_a_job_waiting_for_a_person_is_waiting_for_user_and_never_retried(
    tmp_path: Path,
) -> None:
    _clock, fabric, executor = setup(tmp_path)
    fabric.suspend_next("sql01", Operation.STOP_VM)
    wanted = desired(want("sql01", "rtm")._replace(commit_after_seconds=0))
    outcome = execute.apply(executor, wanted, REV, timeout=600)
    assert not outcome.converged and not outcome.timed_out  # returned: a person must act
    (vp,) = outcome.plan.vms
    assert vp.phase is Phase.WAITING_FOR_USER
    assert vp.reason.startswith("StopVM (job job-000001) waits for a person in the fabric")
    (job,) = fabric.list_jobs()
    assert job.state is JobState.SUSPENDED
    assert [e.result for e in executor.journal.entries()] == [journal.RUNNING]
    fabric.resume(job.id)
    assert execute.apply(executor, wanted, REV, timeout=600).converged
    assert executor.journal.entries()[0].result == journal.SUCCEEDED


def test_a_resync_the_fabric_does_not_run_by_itself_is_issued(tmp_path: Path) -> None:
    _clock, fabric, executor = setup(tmp_path)
    fabric.resync_required("sql01", manual=True)
    rep = fabric.observe().vms["sql01"].replication
    assert rep is not None and rep.state is ReplicationState.RESYNC_REQUIRED
    assert execute.apply(executor, desired(want("sql01")), REV, timeout=600).converged
    assert [e.operation for e in executor.journal.entries()] == [Operation.RESYNC]


def test_the_recovery_point_the_spec_names_is_applied_before_the_commit(tmp_path: Path) -> None:
    """On the simulator: unplanned failover, ApplyRecoveryPoint to the app-consistent
    point, then the commit; the fabric reports the larger loss that point costs."""
    clock, fabric, executor = setup(tmp_path)
    clock.advance(400)
    fabric.site_down("ams")
    wanted = want("sql01", "rtm", allow_data_loss=True)._replace(
        recovery_point="latestAppConsistent", commit_after_seconds=0
    )
    before = fabric.observe().vms["sql01"]
    assert before.replication is not None and before.replication.last_sync is not None
    execute.apply(executor, desired(wanted), REV, timeout=300)
    ops = [(e.operation, e.result) for e in executor.journal.entries()]
    assert ops == [
        (Operation.UNPLANNED_FAILOVER, journal.SUCCEEDED),
        (Operation.APPLY_RECOVERY_POINT, journal.SUCCEEDED),
        (Operation.COMMIT, journal.SUCCEEDED),
    ]
    applied = next(j for j in fabric.list_jobs() if j.operation is Operation.APPLY_RECOVERY_POINT)
    failover = next(j for j in fabric.list_jobs() if j.operation is Operation.UNPLANNED_FAILOVER)
    assert failover.data_loss_seconds is not None and applied.data_loss_seconds is not None
    assert applied.data_loss_seconds > failover.data_loss_seconds
    assert fabric.observe().vms["sql01"].last_failover_loss_seconds == applied.data_loss_seconds


def test_an_older_recovery_point_without_consent_is_never_applied(tmp_path: Path) -> None:
    clock, fabric, executor = setup(tmp_path)
    clock.advance(400)
    fabric.site_down("ams")
    failed_over = want("sql01", "rtm", allow_data_loss=True)._replace(commit="manual")
    execute.apply(executor, desired(failed_over), REV, timeout=300)
    assert fabric.observe().vms["sql01"].protection_state is ProtectionState.COMMIT_PENDING
    # The consent is taken back and an older point asked for: Blocked, nothing issued.
    older = failed_over._replace(allow_data_loss=False, recovery_point="latestAppConsistent")
    outcome = execute.apply(executor, desired(older), "rev2", timeout=300)
    (vp,) = outcome.plan.vms
    assert vp.phase is Phase.BLOCKED
    assert "more of writes than the point it runs from" in vp.reason
    ops = [e.operation for e in executor.journal.entries()]
    assert ops == [Operation.UNPLANNED_FAILOVER]
    assert [j.operation for j in fabric.list_jobs()] == [Operation.UNPLANNED_FAILOVER]
