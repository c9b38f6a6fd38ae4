"""What a new revision changes that the daemon weighs: widened consent restarts the settle
window, and a revision that leaves a move in flight unmanaged is refused."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest
from builders import NOW, desired, job, observed, vm, want

from reconciler.core.desired import DesiredState, PlanSpec
from reconciler.core.state import Operation, ProtectionState
from reconciler.daemon import change

NO_MOVES = change.Moves(stopped=frozenset(), open={})


def plan_of(state: DesiredState, **changes: Any) -> PlanSpec:
    return dataclasses.replace(state.plans[0], **changes)


BASE = plan_of(desired(want("sql01"), want("web01")))


def with_vm(**changes: Any) -> PlanSpec:
    return dataclasses.replace(BASE, vms=(BASE.vms[0]._replace(**changes), BASE.vms[1]))


@pytest.mark.parametrize(
    ("after", "said"),
    [
        (with_vm(allow_data_loss=True), "allowDataLoss: true"),
        (
            with_vm(data_loss_window=("ams", NOW + timedelta(hours=2))),
            "allowDataLoss: {from, until}",
        ),
        (with_vm(data_loss_revision="abc1234"), "allowDataLoss: {revision}"),
        (with_vm(discard_lost_writes="job-000004"), "discardLostWrites"),
        (with_vm(commit_approved="any"), "commitApproved"),
        (with_vm(recovery_point="latestAppConsistent"), "recoveryPoint"),
        (with_vm(confirm_disable_replication=True), "confirmDisableReplication: true"),
        (with_vm(commit_after_seconds=5.0), "a shorter commitAfterSeconds"),
        (dataclasses.replace(BASE, self_heal=True), "selfHeal: true"),
        (dataclasses.replace(BASE, unordered_failover=True), "unorderedFailover: true"),
        (
            dataclasses.replace(BASE, reprotect_after_unplanned="auto"),
            "reprotectAfterUnplanned: auto",
        ),
    ],
)
def test_each_key_that_lets_drctl_do_more_widens_the_plan(after: PlanSpec, said: str) -> None:
    assert change.widened(BASE, after) == [said]
    assert change.unsettling(BASE, after, observed(vm("sql01"), vm("web01")), was_moving=True) == [
        f"it widens {said}"
    ]


def test_taking_a_consent_back_widens_nothing() -> None:
    consenting = with_vm(allow_data_loss=True, commit_approved="any")
    assert change.widened(consenting, BASE) == []


def test_a_manual_commit_turned_auto_widens_the_plan() -> None:
    manual = with_vm(commit="manual")
    assert change.widened(manual, BASE) == ["commit: auto"]


def test_a_vm_new_to_the_plan_brings_its_consent_with_it() -> None:
    before = dataclasses.replace(BASE, vms=BASE.vms[1:])
    assert change.widened(before, with_vm(allow_data_loss=True)) == ["allowDataLoss: true"]
    assert change.widened(before, BASE) == []


def test_a_plan_at_rest_settles_when_it_moves_a_moving_one_only_when_sent_elsewhere() -> None:
    to_rtm = plan_of(desired(want("sql01", "rtm"), want("web01", "rtm")))
    at_ams = observed(vm("sql01"), vm("web01"))
    assert change.unsettling(BASE, to_rtm, at_ams, was_moving=False) == ["it moves VMs"]
    # The same revision again (an unrelated commit) while the move goes on: no new wait.
    assert change.unsettling(to_rtm, to_rtm, at_ams, was_moving=True) == []
    # Sent back while still moving: it settles again.
    assert change.unsettling(to_rtm, BASE, at_ams, was_moving=True) == ["it moves VMs"]


# --- refusal --------------------------------------------------------------------------


TWO_PLANS = desired(want("sql01"), want("web01"), want("hr-web", plan="hr"))
ONLY_HR = desired(want("hr-web", plan="hr"))
AT_REST = {"embedded": observed(vm("sql01"), vm("web01"), vm("hr-web"))}


def test_a_revision_with_no_plan_is_refused_even_when_everything_rests() -> None:
    (why,) = change.refusal(TWO_PLANS, DesiredState(plans=()), AT_REST, NO_MOVES)
    assert why.startswith("it holds no RecoveryPlan")


def test_a_plan_whose_vms_rest_may_be_retired() -> None:
    assert change.refusal(TWO_PLANS, ONLY_HR, AT_REST, NO_MOVES) == []


def test_a_plan_renamed_keeps_its_vms_managed_and_is_not_refused() -> None:
    renamed = desired(
        want("sql01", plan="fin"), want("web01", plan="fin"), want("hr-web", plan="hr")
    )
    busy = {"embedded": observed(vm("sql01", running=()), vm("web01"), vm("hr-web"))}
    moves = change.Moves(stopped=frozenset({"sql01"}), open={})
    assert change.refusal(TWO_PLANS, renamed, busy, moves) == []


@pytest.mark.parametrize(
    ("sql01", "moves", "words"),
    [
        (vm("sql01", running=()), change.Moves(frozenset({"sql01"}), {}), "drctl stopped it"),
        (
            vm("sql01", job=job("sql01", Operation.PLANNED_FAILOVER)),
            NO_MOVES,
            "its PlannedFailover job",
        ),
        (
            vm("sql01"),
            change.Moves(frozenset(), {"sql01": "StopVM (job-000002)"}),
            "the StopVM (job-000002) drctl started",
        ),
        (
            vm("sql01", "rtm", protection=ProtectionState.COMMIT_PENDING),
            NO_MOVES,
            "waits for its commit",
        ),
        (
            vm("sql01", "rtm", protection=ProtectionState.COMMITTED),
            NO_MOVES,
            "replication is not reversed",
        ),
    ],
)
def test_a_revision_that_drops_a_vm_with_a_move_in_flight_is_refused_saying_what_to_do(
    sql01: Any, moves: change.Moves, words: str
) -> None:
    fabric = {"embedded": observed(sql01, vm("web01"), vm("hr-web"))}
    (why,) = change.refusal(TWO_PLANS, ONLY_HR, fabric, moves)
    assert why.startswith("it drops sql01 of plan finance while ")
    assert words in why
    assert "restore the plan" in why


def test_a_drop_is_refused_while_the_fabric_cannot_be_observed() -> None:
    blind = {"embedded": dataclasses.replace(observed(), unreachable="connection refused")}
    reasons = change.refusal(TWO_PLANS, ONLY_HR, blind, NO_MOVES)
    assert len(reasons) == 2
    assert all("cannot tell that it rests" in why for why in reasons)
