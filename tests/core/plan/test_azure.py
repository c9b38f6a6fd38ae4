"""ASR's Hyper-V-to-Azure scenario: the planner never proposes what Azure lacks.

Here rtm is the Azure side (`Site.azure`). A VM active in Azure replicates
nowhere until it fails back: a spec asking replication from Azure is refused
with what to commit instead; the way out of Azure is a planned failback
(ASR's Failback), never an unplanned failover, whatever consent the spec gives.
"""

from __future__ import annotations

import dataclasses

from builders import NOW, SITES, desired, observed, vm, want

from reconciler.core import plan
from reconciler.core.desired import DesiredVM
from reconciler.core.plan import Phase
from reconciler.core.state import (
    FailoverKind,
    Observed,
    ObservedVM,
    Operation,
    ProtectionState,
    Site,
)

OP = Operation
PS = ProtectionState
AZURE = "rtm"


def asr_azure(*vms: ObservedVM, down: tuple[str, ...] = ()) -> Observed:
    o = observed(*vms, down=down, can_stop_vms=False)
    sites = {s: Site(s, s not in down, azure=s == AZURE) for s in SITES}
    return dataclasses.replace(o, sites=sites, reports_power=False, plan_failover=True)


def decide(wanted: DesiredVM, o: Observed) -> plan.VMPlan:
    return plan.build_plan(desired(wanted), o, NOW).vms[0]


def in_azure() -> ObservedVM:
    """sql01 committed in Azure after a planned failover: ASR allows its Failback only."""
    found = vm(
        "sql01",
        AZURE,
        running=(),
        unknown=(AZURE,),
        protection=PS.COMMITTED,
        allowed=frozenset({OP.PLANNED_FAILOVER}),
    )
    return dataclasses.replace(found, last_failover=FailoverKind.PLANNED)


def test_a_spec_asking_replication_from_azure_is_refused_and_moves_nothing() -> None:
    got = decide(want("sql01", AZURE), asr_azure(vm("sql01", unknown=("ams",), running=())))
    assert got.phase is Phase.BLOCKED
    assert got.action is None
    assert "replication rtm->ams" in got.reason
    assert "does not replicate back" in got.reason
    assert "commit `replication: off`" in got.reason


def test_a_spec_asking_azure_with_replication_off_fails_over_planned() -> None:
    got = decide(
        want("sql01", AZURE, replication=None), asr_azure(vm("sql01", unknown=("ams",), running=()))
    )
    assert got.action is not None
    assert (got.action.operation, got.action.target_site) == (OP.PLANNED_FAILOVER, AZURE)


def test_a_vm_committed_in_azure_with_replication_off_is_converged() -> None:
    got = decide(want("sql01", AZURE, replication=None), asr_azure(in_azure()))
    assert got.phase is Phase.CONVERGED


def test_a_vm_committed_in_azure_fails_back_planned_not_reprotected() -> None:
    got = decide(want("sql01", "ams"), asr_azure(in_azure()))
    assert got.action is not None
    assert (got.action.operation, got.action.target_site) == (OP.PLANNED_FAILOVER, "ams")
    assert "failing back from Azure" in got.reason


def test_a_failback_waits_for_the_hyperv_site_whatever_the_consent() -> None:
    wanted = want("sql01", "ams", allow_data_loss=True)
    got = decide(wanted, asr_azure(in_azure(), down=("ams",)))
    assert got.phase is Phase.WAITING_FOR_SITE
    assert got.action is None
    assert "from Azure there is no unplanned failover" in got.reason
    assert "allowDataLoss does not apply" in got.reason


def test_after_the_failback_and_its_commit_replication_is_reversed_towards_azure() -> None:
    back = vm(
        "sql01",
        "ams",
        running=(),
        unknown=("ams",),
        protection=PS.COMMITTED,
        allowed=frozenset({OP.REVERSE_REPLICATE}),
    )
    got = decide(want("sql01", "ams"), asr_azure(back))
    assert got.action is not None
    assert (got.action.operation, got.action.target_site) == (OP.REVERSE_REPLICATE, AZURE)


def test_a_failback_after_an_unplanned_failover_waits_for_the_lost_writes() -> None:
    """The failback overwrites the copy at the Hyper-V site, which may hold the lost writes."""
    after_unplanned = dataclasses.replace(
        in_azure(), last_failover=FailoverKind.UNPLANNED, last_failover_job="job-9"
    )
    got = decide(want("sql01", "ams"), asr_azure(after_unplanned))
    assert (got.phase, got.action) == (Phase.HELD, None)
    assert "discardLostWrites: job-9" in got.reason
    allowed = want("sql01", "ams")._replace(discard_lost_writes="job-9")
    got = decide(allowed, asr_azure(after_unplanned))
    assert got.action is not None
    assert got.action.operation is OP.PLANNED_FAILOVER
