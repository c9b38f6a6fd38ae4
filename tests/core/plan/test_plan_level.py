"""A grouped plan on a fabric that cannot stop VMs moves whole through its plan-level operations.

ASR cannot stop a VM: the group order of a move holds only through its
recovery plan (`Observed.plan_failover`). The plan-level failover moves
every VM of the plan, so it is asked only when every VM wants the target,
may lose what each VM consents to lose, and none of them waits for
something else; commit and reprotect go through the plan when every VM is
at that step.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from builders import NOW, desired, job, observed, vm, want

from reconciler.core import plan
from reconciler.core.desired import DesiredState, DesiredVM, Group
from reconciler.core.plan import Phase, Provenance
from reconciler.core.state import (
    FailoverKind,
    Health,
    JobState,
    Observed,
    ObservedVM,
    Operation,
    ProtectionState,
    ReplicationState,
)

GROUPS = (Group("db", (), ("sql01",)), Group("web", ("db",), ("web01",)))
UNPLANNED = frozenset({Operation.UNPLANNED_FAILOVER})


def asr(*vms: ObservedVM, down: tuple[str, ...] = ()) -> Observed:
    """The fabric as the ASR provider reports it: no stop, a plan-level failover."""
    return dataclasses.replace(
        observed(*vms, down=down, can_stop_vms=False), plan_failover=True, reports_power=False
    )


def plan_of(*vms: DesiredVM, unordered: bool = False) -> DesiredState:
    wanted = desired(*vms, groups=GROUPS)
    return dataclasses.replace(
        wanted,
        plans=tuple(dataclasses.replace(p, unordered_failover=unordered) for p in wanted.plans),
    )


def decide(
    wanted: DesiredState, seen: Observed, provenance: Provenance | None = None
) -> dict[str, plan.VMPlan]:
    return {vp.name: vp for vp in plan.build_plan(wanted, seen, NOW, provenance=provenance).vms}


def through_plan(got: dict[str, plan.VMPlan]) -> list[plan.Action]:
    return [vp.action for vp in got.values() if vp.action is not None and vp.action.plan_groups]


def test_a_move_of_some_vms_only_never_moves_the_whole_plan() -> None:
    """Only sql01 wants rtm: the plan-level failover would move web01 too."""
    seen = asr(vm("sql01"), vm("web01"))
    got = decide(plan_of(want("sql01", "rtm", group="db"), want("web01", group="web")), seen)
    assert through_plan(got) == []
    assert got["sql01"].action is None
    assert got["sql01"].phase is Phase.BLOCKED
    assert "keeps web01 at ams" in got["sql01"].reason
    assert "move the whole plan, or commit `policy.unorderedFailover: true`" in (
        got["sql01"].reason
    )
    assert got["web01"].converged
    # The other way round: web01 moves alone, and is never left waiting for a plan
    # failover that sql01, which stays, would have to ask.
    got = decide(plan_of(want("sql01", group="db"), want("web01", "rtm", group="web")), seen)
    assert through_plan(got) == []
    assert got["web01"].phase is Phase.BLOCKED
    assert "move the whole plan, or" in got["web01"].reason
    # With policy.unorderedFailover the VM moves alone, without the plan.
    got = decide(
        plan_of(want("sql01", "rtm", group="db"), want("web01", group="web"), unordered=True),
        seen,
    )
    action = got["sql01"].action
    assert action is not None and action.ready and action.plan_groups == ()
    assert action.operation is Operation.PLANNED_FAILOVER


def test_an_unplanned_plan_failover_needs_the_consent_of_every_vm_it_moves() -> None:
    """The site is down: the plan fails over unplanned only when each VM consents."""
    seen = asr(vm("sql01", allowed=UNPLANNED), vm("web01", allowed=UNPLANNED), down=("ams",))
    only_leader = plan_of(
        want("sql01", "rtm", group="db", allow_data_loss=True), want("web01", "rtm", group="web")
    )
    got = decide(only_leader, seen)
    assert through_plan(got) == []
    assert got["web01"].phase is Phase.BLOCKED
    assert "allowDataLoss" in got["web01"].reason
    assert got["sql01"].phase is Phase.BLOCKED
    assert "web01" in got["sql01"].reason
    everyone = plan_of(
        want("sql01", "rtm", group="db", allow_data_loss=True),
        want("web01", "rtm", group="web", allow_data_loss=True),
    )
    (action,) = through_plan(decide(everyone, seen))
    assert (action.vm, action.operation, action.ready) == (
        "sql01",
        Operation.UNPLANNED_FAILOVER,
        True,
    )


def test_a_lagging_plan_still_fails_over_planned_through_the_plan() -> None:
    """Rule 5: lag makes a planned failover slower, never a reason to lose writes."""
    seen = asr(
        vm("sql01", health=Health.WARNING, last_sync_age=900),
        vm("web01", health=Health.CRITICAL, last_sync_age=3600),
    )
    wanted = plan_of(
        want("sql01", "rtm", group="db", allow_data_loss=True),
        want("web01", "rtm", group="web", allow_data_loss=True),
    )
    (action,) = through_plan(decide(wanted, seen))
    assert (action.operation, action.ready) == (Operation.PLANNED_FAILOVER, True)


def moving() -> DesiredState:
    return plan_of(want("sql01", "rtm", group="db"), want("web01", "rtm", group="web"))


def test_the_plan_waits_for_a_vm_of_it_whose_own_job_runs() -> None:
    seen = asr(vm("sql01"), vm("web01", job=job("web01", Operation.TEST_FAILOVER, job_id="j-9")))
    got = decide(moving(), seen)
    (action,) = through_plan(got)
    assert (action.vm, action.ready, action.waiting_for) == ("sql01", False, ("web01",))
    assert "web01 (job j-9, TestFailover, runs on it)" in got["sql01"].reason
    assert got["web01"].phase is Phase.SYNCING


def test_the_plan_waits_for_a_vm_of_it_that_waits_for_a_person() -> None:
    suspended = dataclasses.replace(
        job("web01", Operation.REVERSE_REPLICATE, job_id="j-5"),
        state=JobState.SUSPENDED,
        state_description="Waiting for a manual action",
    )
    got = decide(moving(), asr(vm("sql01"), vm("web01", job=suspended)))
    assert through_plan(got) == [] or not through_plan(got)[0].ready
    assert got["web01"].phase is Phase.WAITING_FOR_USER
    assert got["sql01"].phase is Phase.BLOCKED
    assert "web01 waits for a person in the fabric" in got["sql01"].reason


def test_the_plan_never_moves_a_held_vm_with_it() -> None:
    """web01 came back to ams outside drctl: Held, and the plan does not move it."""
    moved_at = NOW - timedelta(hours=1)
    by_hand = dataclasses.replace(
        vm("web01"),
        last_failover=FailoverKind.PLANNED,
        last_failover_job="job-portal",
        last_failover_at=moved_at,
    )
    own = Provenance({}, moved_at - timedelta(hours=1))
    got = decide(moving(), asr(vm("sql01"), by_hand), own)
    assert got["web01"].phase is Phase.HELD
    assert through_plan(got) == [] or not through_plan(got)[0].ready
    assert got["sql01"].phase is Phase.BLOCKED
    assert "web01 is Held" in got["sql01"].reason


def test_an_unplanned_plan_failover_waits_for_a_vm_that_asks_another_recovery_point() -> None:
    """The recovery plan boots every VM from its latest point, in boot order: a VM that asks
    another point would boot its dependents on data it is then rolled back from."""
    seen = asr(vm("sql01", allowed=UNPLANNED), vm("web01", allowed=UNPLANNED), down=("ams",))
    wanted = plan_of(
        want("sql01", "rtm", group="db", allow_data_loss=True)._replace(
            recovery_point="latestAppConsistent"
        ),
        want("web01", "rtm", group="web", allow_data_loss=True),
    )
    got = decide(wanted, seen)
    assert through_plan(got) == []
    assert got["sql01"].phase is Phase.BLOCKED
    assert "sql01 asks `recoveryPoint: latestAppConsistent`" in got["sql01"].reason
    assert "sql01" in got["web01"].reason
    # A planned failover loses nothing and has no point to choose: it goes through the plan.
    planned = asr(vm("sql01"), vm("web01"))
    (action,) = through_plan(decide(wanted, planned))
    assert action.operation is Operation.PLANNED_FAILOVER


def test_a_resyncing_vm_keeps_the_plan_from_moving_unplanned_silently() -> None:
    """No planned failover for web01 (resync required), no consent: Blocked, said per VM."""
    seen = asr(
        vm("sql01"),
        vm("web01", rstate=ReplicationState.RESYNC_REQUIRED, allowed=UNPLANNED),
    )
    got = decide(moving(), seen)
    assert through_plan(got) == []
    assert got["web01"].phase is Phase.BLOCKED
    assert ProtectionState.PROTECTED is got["web01"].observed.protection_state  # type: ignore[union-attr]


def failed_over(
    name: str, *, ago: float = 120.0, kind: FailoverKind = FailoverKind.PLANNED
) -> ObservedVM:
    """`name` failed over to rtm `ago` seconds before NOW, its commit pending."""
    return dataclasses.replace(
        vm(
            name,
            "rtm",
            protection=ProtectionState.COMMIT_PENDING,
            allowed=frozenset({Operation.COMMIT}),
        ),
        last_failover=kind,
        last_failover_job="job-plan",
        last_failover_at=NOW - timedelta(seconds=ago),
    )


def committed(name: str) -> ObservedVM:
    return dataclasses.replace(
        vm(
            name,
            "rtm",
            protection=ProtectionState.COMMITTED,
            replication=None,
            allowed=frozenset({Operation.REVERSE_REPLICATE}),
        ),
        last_failover=FailoverKind.PLANNED,
        last_failover_job="job-plan",
        last_failover_at=NOW - timedelta(seconds=600),
    )


def test_the_plan_commits_and_reprotects_through_the_plan_once_every_vm_is_at_that_step() -> None:
    got = decide(moving(), asr(failed_over("sql01"), failed_over("web01")))
    (action,) = through_plan(got)
    assert (action.vm, action.operation, action.ready) == ("sql01", Operation.COMMIT, True)
    assert action.plan_groups == (("sql01",), ("web01",))
    assert got["web01"].action is None
    assert "with plan 'finance' through the fabric's plan-level Commit" in got["web01"].reason
    got = decide(moving(), asr(committed("sql01"), committed("web01")))
    (action,) = through_plan(got)
    assert (action.vm, action.operation, action.target_site, action.ready) == (
        "sql01",
        Operation.REVERSE_REPLICATE,
        "ams",
        True,
    )
    assert got["web01"].action is None


def test_the_plan_commit_waits_for_the_last_vm_whose_gate_is_time() -> None:
    """commitAfterSeconds: no VM commits alone before the plan's commit is due."""
    got = decide(moving(), asr(failed_over("sql01", ago=50), failed_over("web01", ago=20)))
    (action,) = through_plan(got)
    assert (action.ready, action.waiting_for) == (False, ("commit gate",))
    assert action.retry_at == NOW + timedelta(seconds=40)
    assert [vp.action for vp in got.values() if vp.action is not None] == [action]


def test_a_commit_gate_that_waits_for_a_person_leaves_the_others_committing_one_by_one() -> None:
    wanted = plan_of(
        want("sql01", "rtm", group="db"),
        want("web01", "rtm", group="web")._replace(commit="manual"),
    )
    got = decide(wanted, asr(failed_over("sql01"), failed_over("web01")))
    assert through_plan(got) == []
    action = got["sql01"].action
    assert action is not None and (action.operation, action.ready) == (Operation.COMMIT, True)
    assert got["web01"].action is None
    assert "commitApproved" in got["web01"].reason
    # Without the capability (or with unorderedFailover) every commit is a VM's own.
    got = decide(
        moving(),
        dataclasses.replace(asr(failed_over("sql01"), failed_over("web01")), plan_failover=False),
    )
    assert through_plan(got) == []
