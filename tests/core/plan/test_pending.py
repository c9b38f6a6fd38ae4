"""What a plan waits for: jobs, a retry time, a site, or a person; and how long to sleep."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from builders import NOW, desired, job, observed, vm, want

from reconciler.core import plan
from reconciler.core.desired import Group
from reconciler.core.plan import Attempts
from reconciler.core.state import JobState, Observed, Operation

POLL, SLOW, IDLE = 0.1, 1.0, 30.0


def test_a_running_job_is_polled() -> None:
    built = plan.build_plan(
        desired(want("sql01", "rtm")), observed(vm("sql01", job=job("sql01"))), NOW
    )
    waiting = plan.pending(built)
    assert (waiting.jobs, waiting.can_progress) == (1, True)
    assert waiting.wake_in(NOW, POLL, SLOW, IDLE) == POLL


def test_a_backoff_wakes_at_its_retry_time_and_is_progress() -> None:
    attempts = {("sql01", Operation.STOP_VM): Attempts(1, "boom", NOW + timedelta(seconds=7))}
    built = plan.build_plan(desired(want("sql01", "rtm")), observed(vm("sql01")), NOW, attempts)
    waiting = plan.pending(built)
    assert waiting.retry_at == NOW + timedelta(seconds=7)
    assert waiting.can_progress
    assert waiting.wake_in(NOW, POLL, SLOW, IDLE) == 7.0


def test_an_unobservable_fabric_is_looked_at_again_soon() -> None:
    lost = Observed(sites={}, vms={}, unreachable="no route to host")
    built = plan.build_plan(desired(want("sql01", "rtm")), lost, NOW)
    waiting = plan.pending(built)
    assert (waiting.fabric, waiting.can_progress) == (1, True)
    assert waiting.wake_in(NOW, POLL, SLOW, IDLE) == SLOW


def test_only_a_person_can_move_a_blocked_vm() -> None:
    # ams, the source, is down and no data loss is allowed: a planned failover is impossible.
    built = plan.build_plan(
        desired(want("sql01", "rtm")),
        observed(vm("sql01", allowed=frozenset({Operation.UNPLANNED_FAILOVER})), down=("ams",)),
        NOW,
    )
    waiting = plan.pending(built)
    assert waiting.human == ("finance/sql01",)
    assert not waiting.can_progress
    assert waiting.wake_in(NOW, POLL, SLOW, IDLE) == IDLE


def test_a_converged_plan_waits_for_nothing() -> None:
    built = plan.build_plan(desired(want("sql01")), observed(vm("sql01")), NOW)
    waiting = plan.pending(built)
    assert waiting == plan.Pending(0, 0, None, 0, ())
    assert not waiting.can_progress


def test_each_vm_says_what_it_waits_for_and_a_suspended_job_waits_for_a_person() -> None:
    """`waits_for` is the ladder `pending` counts: a person before a job that holds the VM."""
    suspended = dataclasses.replace(job("db01"), state=JobState.SUSPENDED)
    d = desired(
        want("db01", "rtm", group="db"),
        want("web01", "rtm", group="web"),
        want("app01", "rtm"),
        want("hr01", plan="hr"),
        groups=(Group("db", (), ("db01",)), Group("web", ("db",), ("web01",))),
    )
    o = observed(vm("db01", job=suspended), vm("web01", running=()), vm("app01"), vm("hr01"))
    built = plan.build_plan(d, o, NOW)
    waits = {vp.name: plan.waits_for(vp) for vp in built.vms}
    assert waits == {
        "db01": plan.Wait.PERSON,  # WaitingForUser: its job is suspended in the fabric
        "web01": plan.Wait.STEPS,  # stopped already, its failover waits for db01's group
        "app01": plan.Wait.TURN,
        "hr01": None,
    }
    assert plan.pending(built).human == ("finance/db01",)
    running = plan.build_plan(d, observed(vm("db01", job=job("db01")), vm("web01")), NOW)
    assert plan.waits_for(running.vms[0]) is plan.Wait.JOB
