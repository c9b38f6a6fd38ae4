"""The executor across restarts: what a previous run left open is resolved, never issued twice."""

from __future__ import annotations

from pathlib import Path

from reconciler.core import plan
from reconciler.core.desired import DesiredState, DesiredVM, PlanSpec
from reconciler.core.state import Operation
from reconciler.engine import execute, journal, metrics
from reconciler.fabric import base
from reconciler.fabric.sim import inventory
from reconciler.fabric.sim import provider as sim
from reconciler.kits.clock import VirtualClock

INVENTORY = """\
sites: [ams, rtm]
vms:
  - {name: sql01, activeSite: ams, replication: ams->rtm}
timings: {plannedFailover: 3, commit: 1, reverseReplicate: 2, stopVM: 1}
"""


def setup(tmp_path: Path) -> tuple[VirtualClock, sim.SimFabric, DesiredState]:
    clock = VirtualClock()
    (tmp_path / "inv.yaml").write_text(INVENTORY)
    sim.init_fabric(tmp_path, inventory.load_inventory(tmp_path / "inv.yaml"), clock)
    desired = DesiredState(
        plans=(
            PlanSpec(
                "finance",
                "finance.yaml",
                ("ams", "rtm"),
                allow_data_loss=False,
                max_parallel=10,
                groups=(),
                vms=(DesiredVM("finance", "sql01", "rtm", ("rtm", "ams"), False, None),),
            ),
        )
    )
    return clock, sim.SimFabric(tmp_path, clock), desired


STOP = plan.Action("finance", "sql01", Operation.STOP_VM, "ams")


def test_intent_whose_call_reached_the_fabric_is_adopted_not_reissued(tmp_path: Path) -> None:
    clock, fabric, desired = setup(tmp_path)
    history = journal.Journal(tmp_path)
    history.record_intent(STOP, "rev1", clock.now())
    # The process died right after the fabric accepted the call, before the job id was kept.
    job_id = fabric.start(base.Request("sql01", Operation.STOP_VM, "ams"))
    collected = metrics.Metrics()
    executor = execute.Executor(fabric, history, clock, on_event=collected.record_event)
    assert executor.running == 1
    in_flight = collected.registry.get_sample_value(
        "drctl_actions_in_flight", {"operation": "StopVM"}
    )
    assert in_flight == 1
    outcome = execute.apply(executor, desired, "rev1", timeout=120)
    assert outcome.converged
    stops = [j for j in fabric.list_jobs() if j.operation is Operation.STOP_VM]
    assert [j.id for j in stops] == [job_id]
    assert [e.job_id for e in history.entries() if e.operation is Operation.STOP_VM] == [job_id]


def test_intent_the_fabric_never_saw_is_closed_and_the_step_planned_again(tmp_path: Path) -> None:
    clock, fabric, desired = setup(tmp_path)
    history = journal.Journal(tmp_path)
    history.record_intent(STOP, "rev1", clock.now())
    executor = execute.Executor(fabric, history, clock)
    assert executor.running == 0
    assert history.entries()[0].result == journal.NOT_ISSUED
    assert execute.apply(executor, desired, "rev1", timeout=120).converged


def test_a_job_the_fabric_forgot_is_recorded_failed_and_the_rest_goes_on(tmp_path: Path) -> None:
    clock, fabric, desired = setup(tmp_path)
    history = journal.Journal(tmp_path)
    entry = history.record_intent(STOP, "rev1", clock.now())
    history.record_started(entry, "job-999999", clock.now())
    executor = execute.Executor(fabric, history, clock)
    outcome = execute.apply(executor, desired, "rev1", timeout=120)
    assert outcome.converged
    forgotten = history.entries()[0]
    assert forgotten.result == journal.FAILED
    assert forgotten.error is not None
    assert "no longer knows job job-999999" in forgotten.error


def test_replacing_the_fabric_closes_the_actions_still_open(tmp_path: Path) -> None:
    from reconciler.cli import main as cli

    clock, fabric, _desired = setup(tmp_path)
    fabric.close()
    history = journal.Journal(tmp_path)
    entry = history.record_intent(STOP, "rev1", clock.now())
    history.record_started(entry, "job-000001", clock.now())
    assert (
        cli.main(["fabric", "init", str(tmp_path / "inv.yaml"), "--state-dir", str(tmp_path)]) == 0
    )
    closed = history.entries()[0]
    assert closed.result == journal.ABANDONED
    assert closed.error == "the simulated fabric was replaced by drctl fabric init"
    assert history.open_entries() == []
