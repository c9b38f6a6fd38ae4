"""The drill of a plan (spec.drill), as the planner decides it from the fabric and the journal.

A new drill id on a converged plan starts test copies by group; every copy
running makes the engine check them; they are kept keepMinutes, then cleaned
up in reverse group order; an ended record of the id means done. Real work
preempts a drill: its copies are cleaned up first, the move waits for that.
Every action proposed is a test operation: production is never touched.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from builders import NOW, PROTECTED_OPS, desired, job, observed, vm, want

from reconciler.core import plan, state
from reconciler.core.desired import DesiredState, Drill, Group
from reconciler.core.state import Operation

RUNNING = state.TestFailoverState.RUNNING
WITH_COPY = PROTECTED_OPS - {Operation.TEST_FAILOVER} | {Operation.TEST_FAILOVER_CLEANUP}
GROUPS = (Group("db", (), ("sql01",)), Group("web", ("db",), ("web01", "web02")))


def drilled(keep: float = 30.0, drill_id: str = "2026-q4") -> DesiredState:
    wanted = desired(
        want("sql01", group="db"),
        want("web01", group="web"),
        want("web02", group="web"),
        groups=GROUPS,
    )
    spec = dataclasses.replace(wanted.plans[0], drill=Drill(drill_id, keep, "isolated"))
    return dataclasses.replace(wanted, plans=(spec,))


def record(**changes: object) -> plan.DrillRecord:
    base = plan.DrillRecord("finance", "2026-q4", NOW - timedelta(minutes=5))
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def build(wanted: DesiredState, *vms: object, drill: plan.DrillRecord | None = None) -> plan.Plan:
    provenance = plan.Provenance(drills={"finance": drill} if drill is not None else {})
    return plan.build_plan(wanted, observed(*vms), NOW, provenance=provenance)  # type: ignore[arg-type]


def ops(built: plan.Plan) -> dict[str, tuple[Operation, bool]]:
    return {a.vm: (a.operation, a.ready) for a in built.actions}


def test_a_new_drill_id_starts_test_copies_of_the_first_group_and_the_next_waits() -> None:
    built = build(drilled(), vm("sql01"), vm("web01"), vm("web02"))
    assert ops(built) == {
        "sql01": (Operation.TEST_FAILOVER, True),
        "web01": (Operation.TEST_FAILOVER, False),
        "web02": (Operation.TEST_FAILOVER, False),
    }
    assert built.drills["finance"].step is plan.DrillStep.STARTING
    assert not built.converged  # a drill under way: apply and the daemon see it through
    by_vm = {vp.name: vp for vp in built.vms}
    assert by_vm["web01"].phase is plan.Phase.DRILLING
    assert "after sql01" in by_vm["web01"].reason
    assert {a.network for a in built.actions} == {"isolated"}
    assert {a.target_site for a in built.actions} == {"rtm"}


def test_the_next_group_starts_when_the_previous_groups_copies_run() -> None:
    built = build(
        drilled(),
        vm("sql01", test=RUNNING, allowed=WITH_COPY),
        vm("web01"),
        vm("web02"),
        drill=record(),
    )
    assert ops(built) == {
        "web01": (Operation.TEST_FAILOVER, True),
        "web02": (Operation.TEST_FAILOVER, True),
    }


def test_every_copy_running_asks_for_the_checks_then_keeps_them() -> None:
    copies = [vm(n, test=RUNNING, allowed=WITH_COPY) for n in ("sql01", "web01", "web02")]
    checking = build(drilled(), *copies, drill=record())
    assert checking.drills["finance"].step is plan.DrillStep.CHECKING
    assert checking.actions == ()
    keeping = build(drilled(), *copies, drill=record(running_at=NOW - timedelta(minutes=29)))
    view = keeping.drills["finance"]
    assert view.step is plan.DrillStep.KEEPING
    assert view.keep_until == NOW + timedelta(minutes=1)
    assert plan.pending(keeping).retry_at == view.keep_until  # the daemon wakes then


def test_after_keep_minutes_the_copies_are_cleaned_up_in_reverse_group_order() -> None:
    copies = [vm(n, test=RUNNING, allowed=WITH_COPY) for n in ("sql01", "web01", "web02")]
    built = build(drilled(), *copies, drill=record(running_at=NOW - timedelta(minutes=30)))
    assert ops(built) == {
        "sql01": (Operation.TEST_FAILOVER_CLEANUP, False),
        "web01": (Operation.TEST_FAILOVER_CLEANUP, True),
        "web02": (Operation.TEST_FAILOVER_CLEANUP, True),
    }
    last = build(
        drilled(),
        vm("sql01", test=RUNNING, allowed=WITH_COPY),
        vm("web01"),
        vm("web02"),
        drill=record(running_at=NOW - timedelta(minutes=31)),
    )
    assert ops(last) == {"sql01": (Operation.TEST_FAILOVER_CLEANUP, True)}


def test_a_failed_check_or_test_failover_cleans_up_at_once() -> None:
    built = build(
        drilled(),
        vm("sql01", test=RUNNING, allowed=WITH_COPY),
        vm("web01"),
        vm("web02"),
        drill=record(failed="TestFailover of web01 failed"),
    )
    assert ops(built) == {"sql01": (Operation.TEST_FAILOVER_CLEANUP, True)}


def test_no_copy_left_ends_the_drill_and_an_ended_id_never_runs_again() -> None:
    ended = build(
        drilled(),
        vm("sql01"),
        vm("web01"),
        vm("web02"),
        drill=record(running_at=NOW - timedelta(minutes=31)),
    )
    assert ended.drills["finance"].step is plan.DrillStep.ENDED
    assert ended.actions == ()
    done = build(
        drilled(),
        vm("sql01"),
        vm("web01"),
        vm("web02"),
        drill=record(ended_at=NOW, result="passed"),
    )
    assert done.drills == {}
    assert done.converged
    again = build(
        drilled(drill_id="2027-q1"),
        vm("sql01"),
        vm("web01"),
        vm("web02"),
        drill=record(ended_at=NOW, result="passed"),
    )
    assert again.drills["finance"].step is plan.DrillStep.STARTING


def test_a_drill_never_starts_while_the_plan_has_real_work() -> None:
    wanted = drilled()
    moving = dataclasses.replace(
        wanted.plans[0],
        vms=tuple(
            v._replace(active_site="rtm", replication=("rtm", "ams")) for v in wanted.plans[0].vms
        ),
    )
    built = build(
        dataclasses.replace(wanted, plans=(moving,)), vm("sql01"), vm("web01"), vm("web02")
    )
    assert built.drills == {}
    assert {a.operation for a in built.actions} <= {Operation.STOP_VM, Operation.PLANNED_FAILOVER}


def test_a_move_preempts_a_running_drill_cleanup_first_then_the_move() -> None:
    wanted = drilled()
    moving = dataclasses.replace(
        wanted.plans[0],
        vms=tuple(
            v._replace(active_site="rtm", replication=("rtm", "ams")) for v in wanted.plans[0].vms
        ),
    )
    copies = [vm(n, test=RUNNING, allowed=WITH_COPY) for n in ("sql01", "web01", "web02")]
    built = build(
        dataclasses.replace(wanted, plans=(moving,)),
        *copies,
        drill=record(running_at=NOW - timedelta(minutes=1)),
    )
    assert built.drills["finance"].step is plan.DrillStep.PREEMPTED
    ready = {a.vm: a.operation for a in built.actions if a.ready}
    assert set(ready.values()) == {Operation.TEST_FAILOVER_CLEANUP}
    assert all(
        a.operation in {Operation.TEST_FAILOVER_CLEANUP} or not a.ready for a in built.actions
    )


def test_a_test_job_running_is_followed_as_part_of_the_drill() -> None:
    built = build(
        drilled(),
        vm("sql01", job=job("sql01", Operation.TEST_FAILOVER)),
        vm("web01"),
        vm("web02"),
        drill=record(),
    )
    assert built.drills["finance"].step is plan.DrillStep.STARTING
    assert "web01" not in {a.vm for a in built.actions if a.ready}
    assert {vp.name: vp.phase for vp in built.vms}["sql01"] is plan.Phase.DRILLING


def test_a_test_copy_the_drill_did_not_start_is_never_cleaned_up_nor_drilled_over() -> None:
    built = build(drilled(), vm("sql01", test=RUNNING, allowed=WITH_COPY), vm("web01"), vm("web02"))
    assert built.drills == {}
    assert built.actions == ()


def test_a_recorded_drill_whose_first_call_did_not_get_through_is_still_starting() -> None:
    built = build(drilled(), vm("sql01"), vm("web01"), vm("web02"), drill=record())
    assert built.drills["finance"].step is plan.DrillStep.STARTING
    assert ops(built)["sql01"] == (Operation.TEST_FAILOVER, True)


def test_a_suspended_plan_starts_no_drill() -> None:
    """`spec.suspend` is "no actions at all": a new drill id waits for the resume."""
    wanted = drilled()
    wanted = dataclasses.replace(
        wanted, plans=(dataclasses.replace(wanted.plans[0], suspend=True),)
    )
    built = build(wanted, vm("sql01"), vm("web01"), vm("web02"))
    assert built.actions == ()
    assert {vp.phase for vp in built.vms} == {plan.Phase.SUSPENDED}
