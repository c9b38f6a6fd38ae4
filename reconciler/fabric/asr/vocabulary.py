"""ASR's own words and what drctl reads in them: operations, protection states, job states.

`asr.reading` reads a protected item and a job through these tables;
`asr.action` names the REST action of each operation. Pure. Every text here
is spelled as the official examples in ../shared/asr/examples and the SDK's
enums spell it (ReplicationProtectedItemOperation, the jobs' `state`); the
few that the examples do not show are marked. A text not in a table is never
guessed at: a protection state drctl does not know reads `Unknown` (its text
kept beside it), an operation it does not know is left out of the allowed
set, and a job of a scenario it does not know is no job of drctl's.
"""

from __future__ import annotations

from reconciler.core.state import (
    FailoverKind,
    JobState,
    Operation,
    ProtectionState,
    TestFailoverState,
)

# allowedOperations -> drctl's operation. `Failback` is offered by
# Hyper-V-to-Azure after a commit in Azure (ReplicationProtectedItems_FailoverCommit.json):
# a planned failover back, the only way out of Azure. DisableProtection,
# CancelFailover and CompleteMigration are read so that a reason can name
# them; engine/guard.py never lets drctl call the last two, and this
# provider does not disable protection at all (`allowed_of` leaves them out).
OPERATIONS: dict[str, Operation] = {
    "PlannedFailover": Operation.PLANNED_FAILOVER,
    "UnplannedFailover": Operation.UNPLANNED_FAILOVER,
    "Failback": Operation.PLANNED_FAILOVER,
    "Commit": Operation.COMMIT,
    "ReverseReplicate": Operation.REVERSE_REPLICATE,
    "TestFailover": Operation.TEST_FAILOVER,
    "TestFailoverCleanup": Operation.TEST_FAILOVER_CLEANUP,
    "ChangePit": Operation.APPLY_RECOVERY_POINT,
    "RepairReplication": Operation.RESYNC,
    "DisableProtection": Operation.DISABLE_REPLICATION,
    "CancelFailover": Operation.CANCEL_FAILOVER,
    "CompleteMigration": Operation.COMPLETE_MIGRATION,
}

# The operations this provider starts, by the REST action of a protected item
# (the SDK's begin_<action>). Not here: StopVM and StartVM (ASR cannot stop or
# start a VM), EnableReplication and DisableReplication (protection is set up
# and removed in the portal), CancelFailover and CompleteMigration (never).
ACTIONS: dict[Operation, str] = {
    Operation.PLANNED_FAILOVER: "planned_failover",
    Operation.UNPLANNED_FAILOVER: "unplanned_failover",
    Operation.COMMIT: "failover_commit",
    Operation.REVERSE_REPLICATE: "reprotect",
    Operation.TEST_FAILOVER: "test_failover",
    Operation.TEST_FAILOVER_CLEANUP: "test_failover_cleanup",
    Operation.APPLY_RECOVERY_POINT: "apply_recovery_point",
    Operation.RESYNC: "repair_replication",
}

# A job's scenarioName -> the operation it runs. The examples show no job of
# a protected item (only DeleteRecoveryPlan, AddProtectionProfile, ...): these
# names follow allowedOperations' spelling and are not verified against a
# live vault. A job of another scenario is not a DR operation of one VM.
SCENARIOS: dict[str, Operation] = {text: op for text, op in OPERATIONS.items() if op in ACTIONS}
IDLE_SCENARIO = "None"  # currentScenario.scenarioName of an item with no job

# A job's state -> drctl's. ASR says InProgress where drctl says Running.
JOB_STATES: dict[str, JobState] = {
    "NotStarted": JobState.NOT_STARTED,
    "InProgress": JobState.RUNNING,
    "Suspended": JobState.SUSPENDED,
    "Succeeded": JobState.SUCCEEDED,
    "Failed": JobState.FAILED,
    "Cancelled": JobState.CANCELLED,
}

# protectionState -> (drctl's state, how the failover that led there went).
# From the examples: Protected, PlannedFailoverCommitRequired (after a
# planned failover), UnplannedFailoverCommitPendingStatesBegin (after an
# unplanned one), PlannedFailoverStatesBegin (committed). UnplannedFailoverCommitted
# is the simulator's word in ASR's manner, not seen in an example.
PROTECTION: dict[str, tuple[ProtectionState, FailoverKind | None]] = {
    "Protected": (ProtectionState.PROTECTED, None),
    "PlannedFailoverCommitRequired": (ProtectionState.COMMIT_PENDING, FailoverKind.PLANNED),
    "UnplannedFailoverCommitPendingStatesBegin": (
        ProtectionState.COMMIT_PENDING,
        FailoverKind.UNPLANNED,
    ),
    "PlannedFailoverStatesBegin": (ProtectionState.COMMITTED, FailoverKind.PLANNED),
    "UnplannedFailoverCommitted": (ProtectionState.COMMITTED, FailoverKind.UNPLANNED),
}

# testFailoverState: WaitingForCompletion while the test copy runs (its cleanup
# pending); None before any, MarkedForDeletion once cleaned up.
TEST_FAILOVER_RUNNING = frozenset({"WaitingForCompletion"})


def test_failover_of(text: str | None) -> TestFailoverState:
    return TestFailoverState.RUNNING if text in TEST_FAILOVER_RUNNING else TestFailoverState.NONE


def protection_of(text: str | None) -> tuple[ProtectionState, FailoverKind | None]:
    """drctl's reading of a protectionState text; Unknown for a text not in PROTECTION."""
    if text is None:
        return ProtectionState.UNKNOWN, None
    return PROTECTION.get(text, (ProtectionState.UNKNOWN, None))


def allowed_of(texts: list[str] | None) -> frozenset[Operation]:
    """The operations of an item's allowedOperations that this provider starts.

    Allowed means the fabric accepts it from drctl: an operation ASR offers
    that drctl never calls through this provider (DisableProtection,
    CancelFailover, CompleteMigration) is not in the set, whatever ASR says.
    """
    found = (OPERATIONS.get(t) for t in texts or ())
    return frozenset(op for op in found if op is not None and op in ACTIONS)
