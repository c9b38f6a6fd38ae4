"""The lifecycle model in ASR's Hyper-V-to-Azure scenario: the way out of Azure is one.

ReplicationProtectedItems_FailoverCommit.json (../shared/asr/examples) shows an
item committed in Azure (activeLocation Recovery, instanceType HyperVReplicaAzure)
that allows only CompleteMigration, DisableProtection and Failback: no
UnplannedFailover, no TestFailover, no ReverseReplicate. Failback is a planned
failover RecoveryToPrimary; after it and its commit, ReplicationProtectedItems_Reprotect.json
reprotects PrimaryToRecovery, back to Protected at the primary.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from reconciler.core import lifecycle
from reconciler.core.lifecycle import Conditions, Rejection, VMState
from reconciler.core.state import FailoverKind, Operation, ProtectionState, ReplicationState

OP = Operation
PS = ProtectionState
HV, AZ = "ams", "azure"
BOTH = Conditions(frozenset({HV, AZ}))
FLAVOUR = lifecycle.ASR_AZURE


def _run(vm: VMState, op: Operation, cond: Conditions = BOTH) -> VMState:
    after = lifecycle.apply_operation(vm, op, cond, FLAVOUR, shutdown_source=True)
    assert not isinstance(after, Rejection), after
    return after


PROTECTED = lifecycle.protected(HV, AZ, azure_site=AZ)
PENDING_IN_AZURE = _run(PROTECTED, OP.PLANNED_FAILOVER)
IN_AZURE = _run(PENDING_IN_AZURE, OP.COMMIT)


def test_towards_azure_every_failover_and_the_drill_are_allowed() -> None:
    allowed = lifecycle.allowed_operations(PROTECTED, BOTH)
    assert {OP.PLANNED_FAILOVER, OP.UNPLANNED_FAILOVER, OP.TEST_FAILOVER} <= allowed


def test_a_vm_committed_in_azure_allows_only_the_planned_failback() -> None:
    assert (IN_AZURE.active_site, IN_AZURE.protection, IN_AZURE.replication) == (
        AZ,
        PS.COMMITTED,
        ReplicationState.OFF,
    )
    allowed = lifecycle.allowed_operations(IN_AZURE, BOTH)
    assert OP.PLANNED_FAILOVER in allowed
    for op in (OP.UNPLANNED_FAILOVER, OP.TEST_FAILOVER, OP.REVERSE_REPLICATE, OP.RESYNC):
        assert op not in allowed


@pytest.mark.parametrize(
    ("op", "words"),
    [
        (OP.UNPLANNED_FAILOVER, "from Azure there is no UnplannedFailover"),
        (OP.TEST_FAILOVER, "from Azure there is no TestFailover"),
        (OP.REVERSE_REPLICATE, "does not replicate back to ams"),
        (OP.ENABLE_REPLICATION, "does not replicate back to ams"),
    ],
)
def test_what_azure_lacks_is_refused_with_the_way_out(op: Operation, words: str) -> None:
    reason = lifecycle.check_operation(IN_AZURE, op, BOTH)
    assert reason is not None
    assert words in reason
    assert "PlannedFailover to ams" in reason


def test_the_failback_waits_for_the_commit_in_azure() -> None:
    reason = lifecycle.check_operation(PENDING_IN_AZURE, OP.PLANNED_FAILOVER, BOTH)
    assert reason is not None
    assert "Commit it first" in reason


def test_the_failback_needs_the_hyperv_site_and_offers_no_unplanned_way() -> None:
    reason = lifecycle.check_operation(IN_AZURE, OP.PLANNED_FAILOVER, Conditions(frozenset({AZ})))
    assert reason is not None
    assert "site ams (the target) is disconnected" in reason
    assert "UnplannedFailover" not in reason


def test_the_round_trip_fails_back_commits_and_reprotects_towards_azure() -> None:
    back = _run(IN_AZURE, OP.PLANNED_FAILOVER)
    assert (back.active_site, back.protection, back.last_failover) == (
        HV,
        PS.COMMIT_PENDING,
        FailoverKind.PLANNED,
    )
    assert back.running == frozenset({HV})
    committed = _run(back, OP.COMMIT)
    assert OP.REVERSE_REPLICATE in lifecycle.allowed_operations(committed, BOTH)
    again = _run(committed, OP.REVERSE_REPLICATE)
    assert again == replace(PROTECTED, last_failover=FailoverKind.PLANNED)


def test_without_an_azure_site_a_committed_vm_reverses_replication() -> None:
    """The VMM-to-VMM flow is untouched: no failback, a ReverseReplicate."""
    vmm = lifecycle.protected(HV, AZ)
    committed = _run(_run(vmm, OP.PLANNED_FAILOVER), OP.COMMIT)
    allowed = lifecycle.allowed_operations(committed, BOTH)
    assert OP.REVERSE_REPLICATE in allowed
    assert OP.PLANNED_FAILOVER not in allowed
