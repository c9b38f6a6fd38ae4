"""A failover drctl did not start is never reverted by drctl on its own, and no copy is guessed.

Rules 1 and 2 of the planner (issue 9): the fabric's placement changed
through a job that is not in drctl's journal -> Held, with what to commit;
two copies run after such a failover -> Held, naming both. Only a revision
made after the move, or `policy.selfHeal`, moves it again.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from builders import NOW, desired, observed, vm, want

from reconciler.core import plan
from reconciler.core.desired import DesiredState
from reconciler.core.plan import Phase, Provenance
from reconciler.core.state import FailoverKind, ObservedVM, Operation, ProtectionState

MOVED_AT = NOW - timedelta(minutes=10)
ALLOWED = frozenset({Operation.PLANNED_FAILOVER, Operation.STOP_VM})


def moved_by_hand(*, running: tuple[str, ...] = ("rtm",)) -> ObservedVM:
    """sql01 failed over to rtm by job-000007 ten minutes ago, by someone."""
    return dataclasses.replace(
        vm("sql01", "rtm", running=running, allowed=ALLOWED),
        last_failover_job="job-000007",
        last_failover_at=MOVED_AT,
    )


def decide(wanted: DesiredState, o: ObservedVM, provenance: Provenance | None) -> plan.VMPlan:
    built = plan.build_plan(wanted, observed(o), NOW, provenance=provenance)
    (vp,) = built.vms
    return vp


def test_an_out_of_band_failover_is_held_with_what_to_commit() -> None:
    vp = decide(desired(want("sql01", "ams")), moved_by_hand(), Provenance({}, MOVED_AT))
    assert vp.phase is Phase.HELD
    assert vp.action is None
    assert vp.reason == (
        f"failed over to rtm outside drctl at {MOVED_AT.isoformat()} by job job-000007; "
        "commit `activeSite: rtm` to accept it, or commit a revision made after that which "
        "keeps `activeSite: ams` to move it back"
    )


def test_drcts_own_failover_is_moved_back_as_the_spec_says() -> None:
    own = Provenance({"job-000007": MOVED_AT - timedelta(seconds=5)}, MOVED_AT)
    vp = decide(desired(want("sql01", "ams")), moved_by_hand(), own)
    assert vp.phase is not Phase.HELD
    assert vp.action is not None


def test_a_job_id_drctl_used_before_the_fabric_was_recreated_is_not_drctls() -> None:
    later = Provenance({"job-000007": MOVED_AT + timedelta(hours=1)}, None)
    vp = decide(desired(want("sql01", "ams")), moved_by_hand(), later)
    assert vp.phase is Phase.HELD


def test_a_revision_made_after_the_move_moves_it_back() -> None:
    before = decide(
        desired(want("sql01", "ams")), moved_by_hand(), Provenance({}, MOVED_AT - timedelta(1))
    )
    after = decide(
        desired(want("sql01", "ams")),
        moved_by_hand(),
        Provenance({}, MOVED_AT + timedelta(seconds=1)),
    )
    assert before.phase is Phase.HELD
    assert after.phase is not Phase.HELD
    assert after.action is not None


def test_self_heal_moves_it_back() -> None:
    wanted = desired(want("sql01", "ams"))
    healing = dataclasses.replace(
        wanted, plans=tuple(dataclasses.replace(p, self_heal=True) for p in wanted.plans)
    )
    vp = decide(healing, moved_by_hand(), Provenance({}, None))
    assert vp.phase is not Phase.HELD
    assert vp.action is not None


def test_accepting_the_move_in_the_spec_is_not_held() -> None:
    vp = decide(desired(want("sql01", "rtm")), moved_by_hand(), Provenance({}, None))
    assert vp.phase is Phase.CONVERGED


def test_two_copies_after_an_out_of_band_failover_are_held_never_fenced() -> None:
    vp = decide(
        desired(want("sql01", "rtm")),
        moved_by_hand(running=("rtm", "ams")),
        Provenance({}, None),
    )
    assert vp.phase is Phase.HELD
    assert vp.action is None
    assert vp.reason.startswith(
        "copies run at rtm and ams, and the failover to rtm (job job-000007) was made "
        "outside drctl, which cannot tell which copy took writes last"
    )


def test_two_copies_after_drctls_own_unplanned_failover_are_fenced() -> None:
    own = Provenance({"job-000007": MOVED_AT - timedelta(seconds=30)}, None)
    o = dataclasses.replace(
        moved_by_hand(running=("rtm", "ams")),
        protection_state=ProtectionState.COMMITTED,
        replication=None,
        allowed_operations=frozenset({Operation.STOP_VM, Operation.REVERSE_REPLICATE}),
    )
    vp = decide(desired(want("sql01", "rtm")), o, own)
    assert vp.action is not None
    assert (vp.action.operation, vp.action.target_site) == (Operation.STOP_VM, "ams")


def test_without_provenance_the_planner_reads_every_failover_as_drctls() -> None:
    vp = decide(desired(want("sql01", "ams")), moved_by_hand(), None)
    assert vp.phase is not Phase.HELD


def test_held_needs_a_person() -> None:
    built = plan.build_plan(
        desired(want("sql01", "ams")), observed(moved_by_hand()), NOW, provenance=Provenance()
    )
    waiting = plan.pending(built)
    assert waiting.human == ("finance/sql01",)
    assert not waiting.can_progress


def committed_after_unplanned() -> ObservedVM:
    """sql01 failed over to rtm by drctl's own unplanned failover (job-000007), committed."""
    return dataclasses.replace(
        vm("sql01", "rtm", allowed=frozenset({Operation.REVERSE_REPLICATE})),
        protection_state=ProtectionState.COMMITTED,
        replication=None,
        last_failover=FailoverKind.UNPLANNED,
        last_failover_job="job-000007",
        last_failover_at=MOVED_AT,
        last_failover_loss_seconds=33.0,
    )


OWN = Provenance({"job-000007": MOVED_AT - timedelta(seconds=30)}, None)


def test_reverse_replication_after_an_unplanned_failover_waits_for_a_decision() -> None:
    vp = decide(desired(want("sql01", "rtm")), committed_after_unplanned(), OWN)
    assert vp.phase is Phase.HELD
    assert vp.action is None
    assert vp.reason == (
        "the copy at ams holds up to 33 s of writes that never reached rtm; salvage them, then "
        "commit `discardLostWrites: job-000007` to reverse replication (rtm->ams overwrites "
        "the copy at ams)"
    )


def test_discarding_the_lost_writes_of_that_failover_lets_replication_reverse() -> None:
    wanted = desired(want("sql01", "rtm")._replace(discard_lost_writes="job-000007"))
    vp = decide(wanted, committed_after_unplanned(), OWN)
    assert vp.action is not None
    assert vp.action.operation is Operation.REVERSE_REPLICATE
    other = desired(want("sql01", "rtm")._replace(discard_lost_writes="job-000001"))
    assert decide(other, committed_after_unplanned(), OWN).phase is Phase.HELD


def test_reprotect_after_unplanned_auto_reverses_replication_without_asking() -> None:
    wanted = desired(want("sql01", "rtm"))
    auto = dataclasses.replace(
        wanted,
        plans=tuple(dataclasses.replace(p, reprotect_after_unplanned="auto") for p in wanted.plans),
    )
    vp = decide(auto, committed_after_unplanned(), OWN)
    assert vp.action is not None
    assert vp.action.operation is Operation.REVERSE_REPLICATE
