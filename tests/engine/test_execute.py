"""The executor across restarts and errors of the fabric.

What a previous run left open is resolved, never issued twice. The three
kinds of failure are handled apart: a refused call is planned again, a
transient or throttled one backs off, and only a terminal error or a failed
job spends one of the attempts that make a VM Blocked.
"""

from __future__ import annotations

import itertools
from datetime import timedelta
from pathlib import Path

import pytest

from reconciler.core import plan
from reconciler.core.desired import DesiredState, DesiredVM, PlanSpec
from reconciler.core.plan import Phase
from reconciler.core.state import Operation
from reconciler.engine import execute, journal, metrics
from reconciler.fabric import base
from reconciler.fabric.sim import faults, inventory
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
    intent = history.record_intent(STOP, "rev1", clock.now())
    # The process died right after the fabric accepted the call, before the job id was kept.
    job_id = fabric.start(
        base.Request("sql01", Operation.STOP_VM, "ams", intent_id=intent.intent_id)
    )
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
    entry = history.record_intent(STOP, "rev1", clock.now()).id
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
    entry = history.record_intent(STOP, "rev1", clock.now()).id
    history.record_started(entry, "job-000001", clock.now())
    assert (
        cli.main(["fabric", "init", str(tmp_path / "inv.yaml"), "--state-dir", str(tmp_path)]) == 0
    )
    closed = history.entries()[0]
    assert closed.result == journal.ABANDONED
    assert closed.error == "the simulated fabric was replaced by drctl fabric init"
    assert history.open_entries() == []


# --- the three kinds of failure --------------------------------------------------------------

REV = "rev1"
ATTEMPTS = execute.Settings().max_attempts


class Run:
    """An executor on the simulator, and everything a user sees of it."""

    def __init__(self, tmp_path: Path) -> None:
        self.clock, self.fabric, self.desired = setup(tmp_path)
        self.journal = journal.Journal(tmp_path)
        self.events: list[execute.Event] = []
        self.executor = execute.Executor(
            self.fabric, self.journal, self.clock, on_event=self.events.append
        )
        self.plans: list[plan.Plan] = []

    def apply(self, timeout: float = 600) -> execute.Outcome:
        return execute.apply(
            self.executor, self.desired, REV, timeout, after_step=self.plans.append
        )

    def step(self) -> plan.VMPlan:
        built = self.executor.step(self.desired, REV)
        self.plans.append(built)
        return built.vms[0]

    def phases(self) -> set[plan.Phase]:
        return {built.vms[0].phase for built in self.plans}

    def results(self, operation: Operation = Operation.STOP_VM) -> list[str]:
        return [e.result for e in self.journal.entries() if e.operation is operation]

    def attempts(self) -> dict[tuple[str, Operation], plan.Attempts]:
        return self.journal.attempts(REV, self.executor.settings.backoff)

    def kinds(self) -> list[execute.EventKind]:
        return [e.kind for e in self.events if e.operation is Operation.STOP_VM]


def test_a_refused_start_is_planned_again_at_once_without_spending_an_attempt(
    tmp_path: Path,
) -> None:
    run = Run(tmp_path)
    # More refusals than the attempts a revision has: none of them counts.
    run.fabric.inject_call_error("start", "rejected", times=ATTEMPTS + 2, vm="sql01")
    for _ in range(ATTEMPTS + 2):
        vm = run.step()
        assert vm.action is not None
        assert vm.action.ready  # no backoff: the next pass plans from what it observes
    assert run.results() == [journal.REFUSED] * (ATTEMPTS + 2)
    assert run.kinds() == [execute.EventKind.REFUSED] * (ATTEMPTS + 2)
    assert run.attempts() == {}
    assert run.apply().converged
    assert plan.Phase.BLOCKED not in run.phases()
    assert run.results() == [journal.REFUSED] * (ATTEMPTS + 2) + [journal.SUCCEEDED]


def test_a_transient_error_backs_off_exponentially_and_never_blocks(tmp_path: Path) -> None:
    """A network blip longer than the attempt budget: the VM waits, then converges."""
    run = Run(tmp_path)
    t0 = run.clock.now()
    run.fabric.inject_call_error("start", "transient", times=ATTEMPTS + 2, vm="sql01")
    outcome = run.apply()
    blocked = [vm.reason for built in run.plans for vm in built.vms if vm.phase is Phase.BLOCKED]
    assert blocked == []
    assert outcome.converged
    assert run.results() == [journal.DEFERRED] * (ATTEMPTS + 2) + [journal.SUCCEEDED]
    assert run.kinds()[: ATTEMPTS + 2] == [execute.EventKind.DEFERRED] * (ATTEMPTS + 2)
    assert run.attempts() == {}
    deferred = [
        e.finished_at
        for e in run.journal.entries()
        if e.result == journal.DEFERRED and e.finished_at is not None
    ]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(deferred)]
    assert gaps == [2.0, 4.0, 8.0, 16.0]  # Settings.backoff: base 2 s, doubled
    # The pass after the first deferral: what `drctl status` and the daemon see.
    vm = run.plans[1].vms[0]
    assert "the fabric did not take the call" in vm.reason
    assert "no attempt spent, retrying in 2s" in vm.reason
    assert vm.action is not None
    assert vm.action.waiting_for == ("backoff",)
    assert vm.action.retry_at == t0 + timedelta(seconds=2)


def test_the_retry_time_after_a_transient_error_is_known(tmp_path: Path) -> None:
    run = Run(tmp_path)
    t0 = run.clock.now()
    run.fabric.inject_call_error("start", "transient", vm="sql01")
    run.step()
    run.clock.advance(0.5)
    run.step()
    assert execute.next_retry_at(run.plans[-1], run.executor) == t0 + timedelta(seconds=2)
    assert execute.can_progress(run.plans[-1], run.executor)


@pytest.mark.parametrize("retry_after", [30.0, None])
def test_a_throttled_start_waits_as_told_then_goes_ahead(
    tmp_path: Path, retry_after: float | None
) -> None:
    run = Run(tmp_path)
    t0 = run.clock.now()
    run.fabric.inject_call_error("start", "throttled", vm="sql01", retry_after=retry_after)
    run.step()
    wait = 30.0 if retry_after is not None else execute.Settings().backoff(1)
    assert run.kinds() == [execute.EventKind.THROTTLED]
    assert run.executor.next_retry_at == t0 + timedelta(seconds=wait)
    run.clock.advance(wait - 0.5)
    vm = run.step()
    assert vm.action is not None
    assert not vm.action.ready
    assert vm.action.retry_at == t0 + timedelta(seconds=wait)
    assert f"retrying in {0.5:.0f}s" in vm.reason
    assert run.fabric.observe().vms["sql01"].job is None  # nothing started meanwhile
    run.clock.advance(0.5)
    run.step()
    assert run.kinds() == [execute.EventKind.THROTTLED, execute.EventKind.STARTED]
    assert run.apply().converged
    assert run.attempts() == {}
    assert run.results() == [journal.DEFERRED, journal.SUCCEEDED]


@pytest.mark.parametrize("kind", ["transient", "throttled"])
def test_a_job_is_followed_to_its_end_through_errors_of_get_job(
    tmp_path: Path, kind: faults.ErrorKind
) -> None:
    run = Run(tmp_path)
    run.step()  # starts the StopVM
    assert run.executor.running == 1
    run.fabric.inject_call_error("get_job", kind, times=ATTEMPTS + 1)
    run.clock.advance(0.5)
    run.step()
    assert run.executor.running == 1
    assert run.executor.next_retry_at is not None
    assert run.executor.next_retry_at > run.clock.now()
    outcome = run.apply()
    assert outcome.converged
    assert run.results() == [journal.SUCCEEDED]
    assert [e.result for e in run.journal.entries()].count(journal.FAILED) == 0


def test_an_intent_waits_for_list_jobs_to_answer_before_anything_starts(tmp_path: Path) -> None:
    clock, fabric, desired = setup(tmp_path)
    history = journal.Journal(tmp_path)
    history.record_intent(STOP, REV, clock.now())
    fabric.inject_call_error("list_jobs", "transient", times=2)
    executor = execute.Executor(fabric, history, clock)  # list_jobs fails: no crash
    assert history.entries()[0].result == journal.INTENDED
    executor.step(desired, REV)
    # The call may have reached the fabric: sql01 starts nothing until it says.
    assert fabric.observe().vms["sql01"].job is None
    assert [e.result for e in history.entries()] == [journal.INTENDED]
    assert execute.apply(executor, desired, REV, timeout=120).converged
    assert history.entries()[0].result == journal.NOT_ISSUED


@pytest.mark.parametrize("how", ["terminal error", "failed job"])
def test_only_a_terminal_error_or_a_failed_job_spends_an_attempt(tmp_path: Path, how: str) -> None:
    run = Run(tmp_path)
    if how == "terminal error":
        run.fabric.inject_call_error("start", "terminal", times=ATTEMPTS, vm="sql01")
    else:
        run.fabric.inject_failure("sql01", Operation.STOP_VM, times=ATTEMPTS)
    outcome = run.apply()
    assert not outcome.converged
    assert not outcome.timed_out
    vm = outcome.plan.vms[0]
    assert vm.phase is plan.Phase.BLOCKED
    assert f"StopVM failed {ATTEMPTS} times for this revision" in vm.reason
    error = "injected terminal error" if how == "terminal error" else "injected with drctl"
    assert error in vm.reason
    assert run.results() == [journal.FAILED] * ATTEMPTS
    assert run.attempts()[("sql01", Operation.STOP_VM)].failures == ATTEMPTS
    assert run.kinds().count(execute.EventKind.FAILED) == ATTEMPTS
