"""A fabric that never reports power (ASR): the copy it keeps active is not waited on forever.

ASR reports no power at all, so its active copies read Unknown on every pass:
waiting "for the site to report its power" would never end, and a failover
would never be committed or reversed. On such a fabric (`Observed.reports_power`
False) the active copy counts as running (drctl can neither see nor start it);
every other copy whose power is Unknown keeps the rules of Unknown: never
taken for stopped, it is Held for a person, who answers for it with
`discardLostWrites` (reverse replication overwrites it).
"""

from __future__ import annotations

import dataclasses

from builders import NOW, desired, observed, vm, want

from reconciler.core import plan
from reconciler.core.plan import Phase
from reconciler.core.state import FailoverKind, Observed, Operation, ProtectionState

OP = Operation


def asr(o: Observed) -> Observed:
    return dataclasses.replace(o, reports_power=False, can_stop_vms=False)


def decide(o: Observed, site: str = "rtm") -> plan.VMPlan:
    return plan.build_plan(desired(want("sql01", site)), o, NOW).vms[0]


def test_a_failover_is_committed_and_reversed_though_asr_reports_no_power() -> None:
    pending = vm(
        "sql01",
        "rtm",
        protection=ProtectionState.COMMIT_PENDING,
        unknown=("rtm",),
        allowed=frozenset({OP.COMMIT}),
    )
    got = decide(asr(observed(pending)))
    assert (got.phase, got.action and got.action.operation) == (Phase.COMMIT_PENDING, OP.COMMIT)

    committed = dataclasses.replace(
        pending,
        protection_state=ProtectionState.COMMITTED,
        allowed_operations=frozenset({OP.REVERSE_REPLICATE}),
    )
    got = decide(asr(observed(committed)))
    assert got.action is not None
    assert got.action.operation is OP.REVERSE_REPLICATE


def test_a_protected_vm_at_its_site_is_converged_with_its_active_copy_unknown() -> None:
    at_rest = vm("sql01", "rtm", unknown=("rtm",))
    got = decide(asr(observed(at_rest)))
    assert (got.placed, got.converged, got.phase) == (True, True, Phase.CONVERGED)
    # The same observation from a fabric that does report power waits for it.
    assert decide(observed(at_rest)).phase is Phase.WAITING_FOR_SITE


def test_another_copy_of_unknown_power_keeps_the_rules_of_unknown() -> None:
    """After an unplanned failover the old copy may still run: never taken for stopped."""
    split = vm("sql01", "rtm", unknown=("rtm", "ams"), protection=ProtectionState.COMMITTED)
    got = decide(asr(observed(split)))
    assert (got.placed, got.converged, got.action) == (False, False, None)
    assert got.phase is Phase.HELD  # not "waiting for ams": ASR will never tell
    assert "cannot tell whether the old copy at ams still runs" in got.reason


def _after_unplanned(*, discard: str | None = None) -> plan.VMPlan:
    """sql01 failed over unplanned to rtm by drctl's job-7 and committed, on ASR."""
    committed = dataclasses.replace(
        vm(
            "sql01",
            "rtm",
            unknown=("rtm", "ams"),
            protection=ProtectionState.COMMITTED,
            allowed=frozenset({OP.REVERSE_REPLICATE}),
        ),
        last_failover=FailoverKind.UNPLANNED,
        last_failover_job="job-7",
    )
    wanted = want("sql01", "rtm")._replace(discard_lost_writes=discard)
    return plan.build_plan(desired(wanted), asr(observed(committed)), NOW).vms[0]


def test_after_an_unplanned_failover_on_asr_the_old_copy_waits_for_a_person_saying_what() -> None:
    """ASR never reports the old copy's power: waiting for it would never end, so the
    reason says what to check and what to commit, instead of "waiting for ams"."""
    got = _after_unplanned()
    assert (got.phase, got.action) == (Phase.HELD, None)
    assert got.reason == (
        "the fabric reports no power, so drctl cannot tell whether the old copy at ams "
        "still runs: make sure it is off at ams, salvage what it holds, then commit "
        "`discardLostWrites: job-7` on the VM (reverse replication rtm->ams then overwrites it)"
    )


def test_discard_lost_writes_of_that_failover_lets_replication_reverse_over_the_old_copy() -> None:
    got = _after_unplanned(discard="job-7")
    assert got.action is not None
    assert (got.phase, got.action.operation) == (Phase.REPROTECTING, OP.REVERSE_REPLICATE)
    # Another failover's job is not an answer for this one.
    assert _after_unplanned(discard="job-6").phase is Phase.HELD


def test_while_the_old_copys_site_is_down_the_vm_waits_for_it_saying_what_comes_next() -> None:
    committed = dataclasses.replace(
        vm(
            "sql01",
            "rtm",
            unknown=("rtm", "ams"),
            protection=ProtectionState.COMMITTED,
            allowed=frozenset({OP.REVERSE_REPLICATE}),
        ),
        last_failover=FailoverKind.UNPLANNED,
        last_failover_job="job-7",
    )
    got = decide(asr(observed(committed, down=("ams",))))
    assert (got.phase, got.action) == (Phase.WAITING_FOR_SITE, None)
    assert got.reason.startswith(
        "an old copy may still run at ams, which is disconnected: waiting for ams to return; "
        "the fabric reports no power, so then make sure it is off at ams"
    )
