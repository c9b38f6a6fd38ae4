"""The simulated fabric's own words for a VM: its raw protection state, its failover health.

A real provider reads the fabric's text for a VM's protection state and maps
it to a `ProtectionState`; a text it does not know becomes
`ProtectionState.UNKNOWN`, the text kept beside it, never the nearest known
state. The simulator words each lifecycle state as ASR does and reads every
text back through the same map (`protection_of`), so a text injected with
`drctl fabric raw-state` (`check_unknown`) takes the path an unknown text
from ASR would. `sim.observe` calls `protection_text` and `failover_health`
once per distinct VM state; `sim.provider` calls `check_unknown`. Pure.

Spellings (protectionState, protectionStateDescription) from the ASR REST
API examples in ../shared/asr/examples: Protected / Protected, and
"Cleanup test failover pending" while a test failover copy runs
(TestFailover); PlannedFailoverCommitRequired / Planned failover finished
(PlannedFailover); UnplannedFailoverCommitPendingStatesBegin / Failover
completed (UnplannedFailover, ApplyRecoveryPoint); PlannedFailoverStatesBegin
/ Planned failover committed (FailoverCommit). UnprotectedStatesBegin is in
public ASR scripts; UnplannedFailoverCommitted and the two descriptions "Not
protected" and "Failover committed" are the simulator's own, in ASR's manner.
"""

from __future__ import annotations

from reconciler import errors
from reconciler.core import lifecycle
from reconciler.core.state import (
    FailoverKind,
    Health,
    ProtectionState,
    Replication,
    ReplicationState,
    TestFailoverState,
)

PLANNED_COMMIT_REQUIRED = ("PlannedFailoverCommitRequired", "Planned failover finished")
UNPLANNED_COMMIT_PENDING = ("UnplannedFailoverCommitPendingStatesBegin", "Failover completed")
PLANNED_COMMITTED = ("PlannedFailoverStatesBegin", "Planned failover committed")
UNPLANNED_COMMITTED = ("UnplannedFailoverCommitted", "Failover committed")
UNPROTECTED = ("UnprotectedStatesBegin", "Not protected")

# Every text the simulator says, and the state it means.
_KNOWN = {
    "Protected": ProtectionState.PROTECTED,
    PLANNED_COMMIT_REQUIRED[0]: ProtectionState.COMMIT_PENDING,
    UNPLANNED_COMMIT_PENDING[0]: ProtectionState.COMMIT_PENDING,
    PLANNED_COMMITTED[0]: ProtectionState.COMMITTED,
    UNPLANNED_COMMITTED[0]: ProtectionState.COMMITTED,
    UNPROTECTED[0]: ProtectionState.UNPROTECTED,
}

NORMAL = str(Health.NORMAL)
WARNING = str(Health.WARNING)


def protection_text(state: lifecycle.VMState) -> tuple[str, str]:
    """(protectionState, protectionStateDescription) of a VM at rest in `state`."""
    planned = state.last_failover is FailoverKind.PLANNED
    if state.protection is ProtectionState.COMMIT_PENDING:
        return PLANNED_COMMIT_REQUIRED if planned else UNPLANNED_COMMIT_PENDING
    if state.protection is ProtectionState.COMMITTED:
        return PLANNED_COMMITTED if planned else UNPLANNED_COMMITTED
    if state.protection is ProtectionState.UNPROTECTED:
        return UNPROTECTED
    testing = state.test_failover is TestFailoverState.RUNNING
    return ("Protected", "Cleanup test failover pending" if testing else "Protected")


def protection_of(text: str) -> ProtectionState:
    """The state a raw text means; UNKNOWN for a text the simulator never says."""
    return _KNOWN.get(text, ProtectionState.UNKNOWN)


def check_unknown(text: str) -> None:
    """Refuse (UsageError) a text `drctl fabric raw-state` would not make unknown."""
    if not text.strip():
        raise errors.UsageError("the raw state must be a text, not empty")
    known = _KNOWN.get(text)
    if known is not None:
        raise errors.UsageError(
            f"'{text}' is a state the simulator knows ({known}): give a text it does not "
            "know, e.g. FailoverInProgressUnknownState"
        )


def failover_health(
    replication: Replication | None, behind_seconds: float
) -> tuple[str, tuple[str, ...]]:
    """(failoverHealth, the messages of its health errors) for a VM replicating so.

    Warning while replication needs a resync or runs behind its schedule,
    with what is wrong; Normal otherwise (replication off included).
    """
    if replication is None:
        return NORMAL, ()
    if replication.state is ReplicationState.RESYNC_REQUIRED:
        return WARNING, (
            "Replication needs a resynchronization: nothing is replicated until it completes",
        )
    if replication.health is not Health.NORMAL:
        interval = replication.interval_seconds or 0.0
        behind = (
            f"Replication is {behind_seconds:.0f} s behind its schedule of one recovery "
            f"point every {interval:g} s"
        )
        return WARNING, (behind,)
    return NORMAL, ()
