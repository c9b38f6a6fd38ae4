"""Several fabrics under one executor: every job followed at its own fabric, none issued twice.

Real simulated fabrics in a state dir, a virtual clock, the real executor and
journal. A fabric that cannot be asked says nothing of its jobs: a job is
never recorded failed, and an interrupted call never closed as not issued,
because its fabric did not answer.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import fabrics as fabrics_
from builders import desired, inventory, inventory_vm, want

from reconciler import errors
from reconciler.core import plan
from reconciler.core.desired import DesiredState, FabricSpec
from reconciler.core.plan import Phase
from reconciler.core.state import Operation
from reconciler.engine import execute, fabrics, journal
from reconciler.engine import state_dir as layout
from reconciler.fabric import base
from reconciler.fabric.sim import provider as sim
from reconciler.kits.clock import VirtualClock

REV = "rev1"


class Lab:
    """Two simulated fabrics, lab1 (VM a1) and lab2 (VM b1), both VMs asked to move to rtm."""

    def __init__(self, tmp_path: Path) -> None:
        self.clock = VirtualClock()
        self.state = tmp_path / "state"
        for name, vm in (("lab1", "a1"), ("lab2", "b1")):
            sim.init_fabric(self.dir(name), inventory(inventory_vm(vm)), self.clock)
        # No commit gate: these tests count steps of the moves themselves.
        wanted = desired(
            want("a1", "rtm", plan="a")._replace(commit_after_seconds=0),
            want("b1", "rtm", plan="b")._replace(commit_after_seconds=0),
        )
        on = {"a": "lab1", "b": "lab2"}
        self.desired = DesiredState(
            plans=tuple(dataclasses.replace(p, fabric=on[p.name]) for p in wanted.plans),
            fabrics=tuple(
                FabricSpec(n, "simulator", ("ams", "rtm"), {}, "fabrics.yaml") for n in on.values()
            ),
        )
        self.journal = journal.Journal(self.state)
        self.executor = self.restart()

    def dir(self, name: str) -> Path:
        return layout.fabric_dir(self.state, name)

    def fabric(self, name: str) -> sim.SimFabric:
        return sim.SimFabric(self.dir(name), self.clock, name=name)

    def restart(self) -> execute.Executor:
        """A new executor on the same state dir: all memory dropped, as after a crash."""
        self.executor = execute.Executor(
            fabrics.Fabrics(self.state, self.clock), self.journal, self.clock
        )
        return self.executor

    def step(self, wanted: DesiredState | None = None) -> plan.Plan:
        built = self.executor.step(wanted or self.desired, REV)
        self.clock.advance(0.5)
        return built

    def results(self, vm: str) -> list[tuple[str, str | None]]:
        return [(e.result, e.job_id) for e in self.journal.entries() if e.vm == vm]


def test_jobs_are_journalled_with_their_fabric_and_ids_unique_across_fabrics(
    tmp_path: Path,
) -> None:
    lab = Lab(tmp_path)
    lab.step()
    entries = {e.vm: e for e in lab.journal.entries()}
    assert (entries["a1"].fabric, entries["a1"].job_id) == ("lab1", "lab1/job-000001")
    assert (entries["b1"].fabric, entries["b1"].job_id) == ("lab2", "lab2/job-000001")


def test_a_job_runs_through_its_fabrics_outage_and_is_followed_to_its_end(
    tmp_path: Path,
) -> None:
    lab = Lab(tmp_path)
    lab.step()  # StopVM on both
    with lab.fabric("lab2") as lab2:
        lab2.set_reachable(False)
    for _ in range(20):
        built = lab.step()
    assert [r for r, _ in lab.results("b1")] == [journal.RUNNING]
    b1 = next(vp for vp in built.vms if vp.name == "b1")
    assert b1.phase is Phase.WAITING_FOR_SITE
    assert built.plan_converged("a")  # the other fabric's plan went on
    with lab.fabric("lab2") as lab2:
        lab2.set_reachable(True)
    assert execute.apply(lab.executor, lab.desired, REV, timeout=120).converged
    assert lab.results("b1")[0] == (journal.SUCCEEDED, "lab2/job-000001")
    assert not [r for r, _ in lab.results("b1") if r == journal.FAILED]


def test_a_job_of_a_fabric_no_longer_declared_is_never_recorded_failed(tmp_path: Path) -> None:
    lab = Lab(tmp_path)
    lab.step()
    lab.restart()  # and the new revision no longer declares lab2
    only_a = lab.desired.only("lab1")
    for _ in range(10):
        lab.step(only_a)
    # Still open, followed and asked again after a backoff: never closed as failed.
    assert lab.results("b1") == [(journal.RUNNING, "lab2/job-000001")]


def test_an_interrupted_intent_is_matched_at_its_own_fabric_not_issued_twice(
    tmp_path: Path,
) -> None:
    lab = Lab(tmp_path)
    stop = plan.Action("b", "b1", Operation.STOP_VM, "ams")
    # The process recorded its intent, the fabric took the call, then the process died.
    intent = lab.journal.record_intent(stop, REV, lab.clock.now(), "lab2")
    with lab.fabric("lab2") as lab2:
        lab2.start(base.Request("b1", Operation.STOP_VM, "ams", intent_id=intent.intent_id))
        lab2.set_reachable(False)
    lab.restart()
    for _ in range(4):
        lab.step()
    # lab2 cannot say whether it got the call: the intent stays open, b1 starts nothing.
    assert lab.results("b1") == [(journal.INTENDED, None)]
    with lab.fabric("lab2") as lab2:
        lab2.set_reachable(True)
    lab.step()
    # Adopted: the StopVM it took (finished meanwhile) is the intent's job.
    assert lab.results("b1")[0] == (journal.SUCCEEDED, "lab2/job-000001")
    assert execute.apply(lab.executor, lab.desired, REV, timeout=120).converged
    with lab.fabric("lab2") as lab2:
        stops = [j for j in lab2.list_jobs() if j.operation is Operation.STOP_VM]
    assert len(stops) == 1


class _AcceptedThenTimedOut(fabrics_.Delegating):
    """The real simulator, whose first StopVM is taken but answered with a timeout.

    What a real fabric does when the response to an accepted call is lost on
    the way back.
    """

    lost = False

    def start(self, request: base.Request) -> str:
        job_id = self.inner.start(request)
        if not self.lost and request.operation is Operation.STOP_VM:
            self.lost = True
            raise errors.TransientError("the response timed out")
        return job_id


def test_a_start_that_timed_out_after_the_fabric_took_it_is_adopted_not_issued_again(
    tmp_path: Path,
) -> None:
    clock = VirtualClock()
    state = tmp_path / "state"
    sim.init_fabric(state, inventory(inventory_vm("sql01")), clock)
    flaky = _AcceptedThenTimedOut(sim.SimFabric(state, clock))
    history = journal.Journal(state)
    executor = execute.Executor(flaky, history, clock)
    wanted = desired(want("sql01", "rtm"))
    assert execute.apply(executor, wanted, REV, timeout=120).converged
    stops = [j for j in flaky.list_jobs() if j.operation is Operation.STOP_VM]
    assert len(stops) == 1
    stop_entries = [e for e in history.entries() if e.operation is Operation.STOP_VM]
    assert [(e.result, e.job_id) for e in stop_entries] == [(journal.SUCCEEDED, stops[0].id)]
