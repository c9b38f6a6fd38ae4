"""Commit behind a gate: it deletes the other recovery points (issue 9 rule 6).

auto commits once the VM has run at the target `commitAfterSeconds` after the
failover; manual waits in CommitPending until the spec approves that failover.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from builders import NOW, desired, observed, vm, want

from reconciler.core import plan
from reconciler.core.desired import DesiredVM
from reconciler.core.plan import Phase
from reconciler.core.state import ObservedVM, Operation, ProtectionState

FAILED_OVER_AT = NOW - timedelta(seconds=20)


def pending_commit(*, running: tuple[str, ...] = ("rtm",)) -> ObservedVM:
    """sql01 failed over to rtm by job-000003 twenty seconds ago; not committed."""
    return dataclasses.replace(
        vm("sql01", "rtm", running=running, allowed=frozenset({Operation.COMMIT})),
        protection_state=ProtectionState.COMMIT_PENDING,
        replication=None,
        last_failover_job="job-000003",
        last_failover_at=FAILED_OVER_AT,
    )


def decide(wanted: DesiredVM, o: ObservedVM | None = None) -> plan.VMPlan:
    (vp,) = plan.build_plan(desired(wanted), observed(o or pending_commit()), NOW).vms
    return vp


def test_auto_commit_waits_until_the_vm_has_run_at_the_target_long_enough() -> None:
    vp = decide(want("sql01", "rtm"))  # the default: 60 s
    assert vp.phase is Phase.COMMIT_PENDING
    assert vp.action is not None
    assert (vp.action.operation, vp.action.ready) == (Operation.COMMIT, False)
    assert vp.action.retry_at == FAILED_OVER_AT + timedelta(seconds=60)
    assert vp.reason == (
        "failed over to rtm; committing once it has run at rtm for 60s "
        "(policy.commitAfterSeconds), in 40s"
    )
    assert plan.pending(
        plan.build_plan(desired(want("sql01", "rtm")), observed(pending_commit()), NOW)
    ).retry_at == FAILED_OVER_AT + timedelta(seconds=60)


def test_auto_commit_commits_once_the_time_has_passed() -> None:
    vp = decide(want("sql01", "rtm")._replace(commit_after_seconds=15))
    assert vp.action is not None
    assert (vp.action.operation, vp.action.ready) == (Operation.COMMIT, True)


def test_auto_commit_waits_while_no_copy_is_seen_running_at_the_target() -> None:
    vp = decide(want("sql01", "rtm")._replace(commit_after_seconds=0), pending_commit(running=()))
    assert vp.phase is Phase.COMMIT_PENDING
    assert vp.action is None
    assert vp.reason == (
        "no copy of sql01 runs; failed over to rtm, but no copy is seen running at rtm: the "
        "commit waits until it runs"
    )


def test_manual_commit_waits_for_approval_and_says_what_to_commit() -> None:
    vp = decide(want("sql01", "rtm")._replace(commit="manual"))
    assert vp.phase is Phase.COMMIT_PENDING
    assert vp.action is None
    assert vp.reason == (
        "failed over to rtm; commit waits for approval (it deletes the other recovery "
        "points): commit `commitApproved: job-000003` on the VM or the plan"
    )
    built = plan.build_plan(
        desired(want("sql01", "rtm")._replace(commit="manual")), observed(pending_commit()), NOW
    )
    assert plan.pending(built).human == ("finance/sql01",)


def test_manual_commit_commits_the_approved_failover_only() -> None:
    approved = decide(want("sql01", "rtm")._replace(commit="manual", commit_approved="job-000003"))
    assert approved.action is not None
    assert (approved.action.operation, approved.action.ready) == (Operation.COMMIT, True)
    other = decide(want("sql01", "rtm")._replace(commit="manual", commit_approved="job-000001"))
    assert other.action is None
    anything = decide(want("sql01", "rtm")._replace(commit="manual", commit_approved="any"))
    assert anything.action is not None
