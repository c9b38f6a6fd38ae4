"""What the planner does with what it cannot read, and with what the fabric allows.

An unknown raw protection state and a name two VMs report are Blocked with
what the fabric said, never guessed around; the fabric's own allowed
operations are reported apart from drctl's preconditions, and an operation
drctl never calls is never proposed, whatever the fabric allows.
"""

from __future__ import annotations

import dataclasses
import itertools

import pytest
from builders import NOW, desired, job, observed, vm, want

from reconciler.core import plan
from reconciler.core.desired import DesiredState
from reconciler.core.plan import Phase
from reconciler.core.state import FailoverKind, Observed, ObservedVM, Operation, ProtectionState
from reconciler.engine import guard

OP = Operation
PS = ProtectionState


def decide(d: DesiredState, o: Observed) -> dict[str, plan.VMPlan]:
    return {vp.name: vp for vp in plan.build_plan(d, o, NOW).vms}


def unknown(o: ObservedVM, text: str, description: str | None = None) -> ObservedVM:
    """`o` as a provider reports a raw state it cannot map."""
    return dataclasses.replace(
        o, protection_state=PS.UNKNOWN, raw_state=text, raw_state_description=description
    )


UNKNOWN_REASON = (
    "the fabric reports protection state 'FailoverInProgressMystery' (Something odd) that "
    "drctl does not know; nothing is done to this VM until it reads a known state; check it "
    "in the fabric"
)


@pytest.mark.parametrize("site", ["ams", "rtm"], ids=["otherwise-converged", "otherwise-moving"])
def test_an_unknown_raw_state_is_blocked_with_its_text_and_nothing_is_done(site: str) -> None:
    o = unknown(vm("sql01", "ams"), "FailoverInProgressMystery", "Something odd")
    got = decide(desired(want("sql01", site)), observed(o))["sql01"]
    assert (got.phase, got.reason, got.action) == (Phase.BLOCKED, UNKNOWN_REASON, None)
    assert not got.converged
    assert not got.placed


def test_an_unknown_state_without_a_description_or_a_text_says_so() -> None:
    got = decide(desired(want("sql01")), observed(unknown(vm("sql01"), "Weird")))["sql01"]
    assert got.reason.startswith("the fabric reports protection state 'Weird' that drctl ")
    no_text = dataclasses.replace(vm("sql01"), protection_state=PS.UNKNOWN)
    got = decide(desired(want("sql01")), observed(no_text))["sql01"]
    assert got.reason.startswith("the fabric reports a protection state with no text that ")


def test_an_unknown_state_is_blocked_even_while_a_job_runs() -> None:
    o = unknown(vm("sql01", job=job("sql01")), "FailoverInProgressMystery", "Something odd")
    got = decide(desired(want("sql01", "rtm")), observed(o))["sql01"]
    assert (got.phase, got.reason) == (Phase.BLOCKED, UNKNOWN_REASON)


def test_a_vm_in_an_unknown_state_holds_the_moves_of_its_plan() -> None:
    """All or nothing: the plan's other VMs do not stop for a move it cannot make."""
    d = desired(want("sql01", "rtm"), want("web01", "rtm"))
    o = observed(unknown(vm("sql01"), "FailoverInProgressMystery"), vm("web01"))
    got = decide(d, o)["web01"]
    assert got.action is not None
    assert (got.action.operation, got.action.ready) == (OP.STOP_VM, False)
    assert "holding the stop: sql01 cannot fail over now" in got.reason


def with_duplicates(o: Observed, *vms: ObservedVM) -> Observed:
    return dataclasses.replace(o, duplicates={vms[0].name: vms})


def test_a_name_two_vms_report_is_blocked_naming_both_ids() -> None:
    twins = (
        dataclasses.replace(vm("web01"), vm_id="id-a"),
        dataclasses.replace(vm("web01", "rtm"), vm_id="id-b"),
    )
    o = with_duplicates(observed(vm("sql01")), *twins)
    got = decide(desired(want("web01", "rtm"), want("sql01")), o)
    assert (got["web01"].phase, got["web01"].action) == (Phase.BLOCKED, None)
    assert got["web01"].reason == (
        "2 VMs of the fabric are named 'web01' (ids id-a, id-b): drctl never guesses which "
        "one the spec means and does nothing to either; rename all but one in the fabric"
    )
    assert got["sql01"].phase is Phase.CONVERGED


def test_a_name_two_vms_report_in_no_spec_is_unmanaged() -> None:
    twins = (
        dataclasses.replace(vm("legacy01"), vm_id="id-a"),
        dataclasses.replace(vm("legacy01"), vm_id="id-b"),
    )
    o = with_duplicates(observed(vm("sql01")), *twins)
    assert plan.build_plan(desired(want("sql01")), o, NOW).unmanaged == ("legacy01",)


# --- the fabric's allowed operations and drctl's own rules --------------------------------


def test_the_fabrics_allowed_operations_are_named_apart_from_drctls_rules() -> None:
    """drctl wants ReverseReplicate; the fabric allows only what drctl never calls."""
    o = vm(
        "sql01",
        "rtm",
        protection=PS.COMMITTED,
        allowed=frozenset({OP.CANCEL_FAILOVER, OP.COMPLETE_MIGRATION}),
    )
    got = decide(desired(want("sql01", "rtm")), observed(o))["sql01"]
    assert (got.phase, got.action) == (Phase.BLOCKED, None)
    assert got.reason == (
        "failover to rtm committed; reversing replication to rtm->ams, but the fabric does "
        "not allow ReverseReplicate now (it allows: CancelFailover, CompleteMigration); "
        "check the VM in the fabric"
    )


def test_drctl_never_proposes_what_it_never_calls_whatever_the_fabric_allows() -> None:
    """A fabric that allows everything gets no CancelFailover, no CompleteMigration and no
    unconfirmed DisableReplication from the planner, in any state, wherever the spec wants
    the VM."""
    proposed = set()
    for protection, active, running, site, off, confirmed in itertools.product(
        [p for p in PS if p is not PS.UNKNOWN],
        ["ams", "rtm"],
        [(), ("ams",), ("rtm",), ("ams", "rtm")],
        ["ams", "rtm"],
        [False, True],
        [False, True],
    ):
        o = vm(
            "sql01", active, running=running, protection=protection, allowed=frozenset(Operation)
        )
        o = dataclasses.replace(o, last_failover=FailoverKind.PLANNED)
        wanted = want("sql01", site, replication=None if off else "auto")
        d = desired(wanted._replace(confirm_disable_replication=confirmed and off))
        action = decide(d, observed(o))["sql01"].action
        if action is None:
            continue
        proposed.add(action.operation)
        assert action.operation not in guard.DENIED
        if action.operation is OP.DISABLE_REPLICATION:
            assert confirmed and off
    assert OP.DISABLE_REPLICATION in proposed  # the confirmed case is reached
