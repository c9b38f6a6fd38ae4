"""The lifecycle model: every (state, operation) pair, the flavours, and random sequences."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.core import lifecycle
from reconciler.core.lifecycle import Conditions, Rejection, VMState
from reconciler.core.state import (
    FailoverKind,
    Health,
    Operation,
    ProtectionState,
    ReplicationState,
)
from reconciler.core.state import TestFailoverState as DrillState
from reconciler.fabric.sim import timing

OP = Operation
PS = ProtectionState
RS = ReplicationState
A, B = "ams", "rtm"
BOTH = Conditions(frozenset({A, B}))
ASR = lifecycle.ASR_VMM

# --- the states of one VM, ams -> rtm, as the ASR VMM-to-VMM flow reaches them.

PROTECTED = lifecycle.protected(A, B)
STOPPED = replace(PROTECTED, running=frozenset())
DRILL = replace(PROTECTED, test_failover=DrillState.RUNNING)
RESYNC = replace(PROTECTED, replication=RS.RESYNC_REQUIRED)
INITIAL_SYNC = replace(PROTECTED, replication=RS.INITIAL_SYNC)
PENDING_PLANNED = VMState(B, A, frozenset({B}), PS.COMMIT_PENDING, RS.OFF, FailoverKind.PLANNED)
PENDING_UNPLANNED = replace(PENDING_PLANNED, last_failover=FailoverKind.UNPLANNED)
PENDING_SPLIT = replace(PENDING_UNPLANNED, running=frozenset({A, B}))
COMMITTED_PLANNED = replace(PENDING_PLANNED, protection=PS.COMMITTED)
COMMITTED_SPLIT = replace(PENDING_SPLIT, protection=PS.COMMITTED)
UNPROTECTED = lifecycle.unprotected(A, B)
UNPROTECTED_STOPPED = replace(UNPROTECTED, running=frozenset())

STATES = {
    "protected": PROTECTED,
    "stopped": STOPPED,
    "drill": DRILL,
    "resync": RESYNC,
    "initial-sync": INITIAL_SYNC,
    "pending-planned": PENDING_PLANNED,
    "pending-unplanned": PENDING_UNPLANNED,
    "pending-split": PENDING_SPLIT,
    "committed-planned": COMMITTED_PLANNED,
    "committed-split": COMMITTED_SPLIT,
    "unprotected": UNPROTECTED,
    "unprotected-stopped": UNPROTECTED_STOPPED,
}


@dataclass(frozen=True)
class No:
    """Rejected, with a reason containing `words`."""

    words: str


def _failed_over(kind: FailoverKind, running: frozenset[str] = frozenset({B})) -> VMState:
    return VMState(B, A, running, PS.COMMIT_PENDING, RS.OFF, kind)


# Every pair, both sites connected, health Normal, no job running. A state
# maps to what each operation leads to (the default target), or No(reason).
TABLE: dict[str, dict[Operation, VMState | No]] = {
    "protected": {
        OP.PLANNED_FAILOVER: _failed_over(FailoverKind.PLANNED),
        # Without shutdown_source the old copy keeps running (see the shutdown test).
        OP.UNPLANNED_FAILOVER: _failed_over(FailoverKind.UNPLANNED, frozenset({A, B})),
        OP.TEST_FAILOVER: DRILL,
        OP.TEST_FAILOVER_CLEANUP: No("no test failover copy runs"),
        OP.COMMIT: No("the VM is Protected: there is no failover to commit"),
        OP.APPLY_RECOVERY_POINT: No("between an unplanned failover and its commit"),
        OP.REVERSE_REPLICATE: No("replication already runs ams->rtm"),
        OP.ENABLE_REPLICATION: No("already configured"),
        OP.DISABLE_REPLICATION: UNPROTECTED,
        OP.STOP_VM: STOPPED,
        OP.START_VM: No("already runs at ams"),
        OP.RESYNC: No(
            "replication ams->rtm is Replicating, not ResyncRequired: there is nothing to resync"
        ),
    },
    "stopped": {
        OP.PLANNED_FAILOVER: _failed_over(FailoverKind.PLANNED),
        OP.UNPLANNED_FAILOVER: _failed_over(FailoverKind.UNPLANNED),
        OP.TEST_FAILOVER: replace(STOPPED, test_failover=DrillState.RUNNING),
        OP.TEST_FAILOVER_CLEANUP: No("nothing to clean up"),
        OP.COMMIT: No("Protected"),
        OP.APPLY_RECOVERY_POINT: No("Protected"),
        OP.REVERSE_REPLICATE: No("already runs"),
        OP.ENABLE_REPLICATION: No("already configured"),
        OP.DISABLE_REPLICATION: UNPROTECTED_STOPPED,
        OP.STOP_VM: No("no copy of the VM runs"),
        OP.START_VM: PROTECTED,
        OP.RESYNC: No("nothing to resync"),
    },
    "drill": {
        OP.PLANNED_FAILOVER: No("clean it up first (TestFailoverCleanup)"),
        OP.UNPLANNED_FAILOVER: No("clean it up first (TestFailoverCleanup)"),
        OP.TEST_FAILOVER: No("a test failover copy runs at rtm"),
        OP.TEST_FAILOVER_CLEANUP: PROTECTED,
        OP.COMMIT: No("Protected"),
        OP.APPLY_RECOVERY_POINT: No("Protected"),
        OP.REVERSE_REPLICATE: No("already runs"),
        OP.ENABLE_REPLICATION: No("already configured"),
        OP.DISABLE_REPLICATION: No("clean it up first"),
        OP.STOP_VM: replace(DRILL, running=frozenset()),
        OP.START_VM: No("already runs"),
        OP.RESYNC: No("nothing to resync"),
    },
    "resync": {
        OP.PLANNED_FAILOVER: No(
            "replication ams->rtm is ResyncRequired, not Replicating: "
            "wait for the fabric's resync to finish or start one (Resync), or use "
            "UnplannedFailover"
        ),
        OP.UNPLANNED_FAILOVER: _failed_over(FailoverKind.UNPLANNED, frozenset({A, B})),
        OP.TEST_FAILOVER: replace(RESYNC, test_failover=DrillState.RUNNING),
        OP.TEST_FAILOVER_CLEANUP: No("nothing to clean up"),
        OP.COMMIT: No("Protected"),
        OP.APPLY_RECOVERY_POINT: No("Protected"),
        OP.REVERSE_REPLICATE: No("already runs"),
        OP.ENABLE_REPLICATION: No("already configured"),
        OP.DISABLE_REPLICATION: UNPROTECTED,
        OP.STOP_VM: replace(RESYNC, running=frozenset()),
        OP.START_VM: No("already runs"),
        OP.RESYNC: PROTECTED,
    },
    "initial-sync": {
        OP.PLANNED_FAILOVER: No("no recovery point at rtm yet"),
        OP.UNPLANNED_FAILOVER: No("no recovery point at rtm yet"),
        OP.TEST_FAILOVER: No("no recovery point at rtm yet"),
        OP.TEST_FAILOVER_CLEANUP: No("nothing to clean up"),
        OP.COMMIT: No("Protected"),
        OP.APPLY_RECOVERY_POINT: No("Protected"),
        OP.REVERSE_REPLICATE: No("already runs"),
        OP.ENABLE_REPLICATION: No("already configured"),
        OP.DISABLE_REPLICATION: UNPROTECTED,
        OP.STOP_VM: replace(INITIAL_SYNC, running=frozenset()),
        OP.START_VM: No("already runs"),
        OP.RESYNC: No("is InitialSync, not ResyncRequired"),
    },
    "pending-planned": {
        OP.PLANNED_FAILOVER: No("CommitPending, not Protected: commit the failover first"),
        OP.UNPLANNED_FAILOVER: No("commit the failover first"),
        OP.TEST_FAILOVER: No("commit the failover first"),
        OP.TEST_FAILOVER_CLEANUP: No("nothing to clean up"),
        OP.COMMIT: COMMITTED_PLANNED,
        OP.APPLY_RECOVERY_POINT: No("the failover was planned"),
        OP.REVERSE_REPLICATE: No("not committed: Commit it first"),
        OP.ENABLE_REPLICATION: No("already configured"),
        OP.DISABLE_REPLICATION: No("Commit it first"),
        OP.STOP_VM: replace(PENDING_PLANNED, running=frozenset()),
        OP.START_VM: No("already runs at rtm"),
        OP.RESYNC: No("the VM is CommitPending: there is no replication to resync"),
    },
    "pending-unplanned": {
        OP.PLANNED_FAILOVER: No("commit the failover first"),
        OP.UNPLANNED_FAILOVER: No("commit the failover first"),
        OP.TEST_FAILOVER: No("commit the failover first"),
        OP.TEST_FAILOVER_CLEANUP: No("nothing to clean up"),
        OP.COMMIT: replace(PENDING_UNPLANNED, protection=PS.COMMITTED),
        OP.APPLY_RECOVERY_POINT: PENDING_UNPLANNED,
        OP.REVERSE_REPLICATE: No("Commit it first"),
        OP.ENABLE_REPLICATION: No("already configured"),
        OP.DISABLE_REPLICATION: No("Commit it first"),
        OP.STOP_VM: replace(PENDING_UNPLANNED, running=frozenset()),
        OP.START_VM: No("already runs"),
        OP.RESYNC: No("no replication to resync"),
    },
    "pending-split": {
        OP.PLANNED_FAILOVER: No("commit the failover first"),
        OP.UNPLANNED_FAILOVER: No("commit the failover first"),
        OP.TEST_FAILOVER: No("commit the failover first"),
        OP.TEST_FAILOVER_CLEANUP: No("nothing to clean up"),
        OP.COMMIT: COMMITTED_SPLIT,
        OP.APPLY_RECOVERY_POINT: PENDING_SPLIT,
        OP.REVERSE_REPLICATE: No("Commit it first"),
        OP.ENABLE_REPLICATION: No("already configured"),
        OP.DISABLE_REPLICATION: No("Commit it first"),
        OP.STOP_VM: No("copies run at ams, rtm: name the copy to stop"),
        OP.START_VM: No("already runs"),
        OP.RESYNC: No("no replication to resync"),
    },
    "committed-planned": {
        OP.PLANNED_FAILOVER: No("Committed, not Protected: reverse replication first"),
        OP.UNPLANNED_FAILOVER: No("reverse replication first (ReverseReplicate)"),
        OP.TEST_FAILOVER: No("reverse replication first"),
        OP.TEST_FAILOVER_CLEANUP: No("nothing to clean up"),
        OP.COMMIT: No("the failover is already committed"),
        OP.APPLY_RECOVERY_POINT: No("between an unplanned failover and its commit"),
        OP.REVERSE_REPLICATE: replace(
            COMMITTED_PLANNED, protection=PS.PROTECTED, replication=RS.REPLICATING
        ),
        OP.ENABLE_REPLICATION: No("already configured"),
        OP.DISABLE_REPLICATION: replace(COMMITTED_PLANNED, protection=PS.UNPROTECTED),
        OP.STOP_VM: replace(COMMITTED_PLANNED, running=frozenset()),
        OP.START_VM: No("already runs"),
        OP.RESYNC: No("the VM is Committed: there is no replication to resync"),
    },
    "committed-split": {
        OP.PLANNED_FAILOVER: No("reverse replication first"),
        OP.UNPLANNED_FAILOVER: No("reverse replication first"),
        OP.TEST_FAILOVER: No("reverse replication first"),
        OP.TEST_FAILOVER_CLEANUP: No("nothing to clean up"),
        OP.COMMIT: No("the failover is already committed"),
        OP.APPLY_RECOVERY_POINT: No("between an unplanned failover and its commit"),
        OP.REVERSE_REPLICATE: No(
            "the old copy still runs at ams (split brain after an "
            "unplanned failover): stop it first with StopVM at ams"
        ),
        OP.ENABLE_REPLICATION: No("already configured"),
        OP.DISABLE_REPLICATION: replace(COMMITTED_SPLIT, protection=PS.UNPROTECTED),
        OP.STOP_VM: No("name the copy to stop"),
        OP.START_VM: No("already runs"),
        OP.RESYNC: No("no replication to resync"),
    },
    "unprotected": {
        OP.PLANNED_FAILOVER: No("Unprotected, not Protected: enable replication first"),
        OP.UNPLANNED_FAILOVER: No("enable replication first (EnableReplication)"),
        OP.TEST_FAILOVER: No("enable replication first"),
        OP.TEST_FAILOVER_CLEANUP: No("nothing to clean up"),
        OP.COMMIT: No("the VM is Unprotected: there is no failover to commit"),
        OP.APPLY_RECOVERY_POINT: No("the VM is Unprotected"),
        OP.REVERSE_REPLICATE: No("replication is off: use EnableReplication"),
        OP.ENABLE_REPLICATION: PROTECTED,
        OP.DISABLE_REPLICATION: No("replication is already off"),
        OP.STOP_VM: UNPROTECTED_STOPPED,
        OP.START_VM: No("already runs"),
        OP.RESYNC: No("the VM is Unprotected: there is no replication to resync"),
    },
    "unprotected-stopped": {
        OP.PLANNED_FAILOVER: No("enable replication first"),
        OP.UNPLANNED_FAILOVER: No("enable replication first"),
        OP.TEST_FAILOVER: No("enable replication first"),
        OP.TEST_FAILOVER_CLEANUP: No("nothing to clean up"),
        OP.COMMIT: No("Unprotected"),
        OP.APPLY_RECOVERY_POINT: No("Unprotected"),
        OP.REVERSE_REPLICATE: No("use EnableReplication"),
        OP.ENABLE_REPLICATION: STOPPED,
        OP.DISABLE_REPLICATION: No("already off"),
        OP.STOP_VM: No("no copy of the VM runs"),
        OP.START_VM: UNPROTECTED,
        OP.RESYNC: No("no replication to resync"),
    },
}

# A real fabric may list these as allowed; the model runs neither, in any
# state, since drctl never calls them (engine/guard.py).
for row in TABLE.values():
    row.update(
        {op: No("drctl never calls it") for op in (OP.CANCEL_FAILOVER, OP.COMPLETE_MIGRATION)}
    )
# A state a fabric reported in words drctl does not know: nothing is allowed.
STATES["unknown"] = replace(PROTECTED, protection=PS.UNKNOWN)
TABLE["unknown"] = {op: No("the VM's protection state is unknown") for op in Operation}

PAIRS = [(name, op) for name in STATES for op in Operation]


def test_the_table_covers_every_state_and_operation() -> None:
    """Adding an operation or a state without deciding what it does fails here."""
    assert set(TABLE) == set(STATES)
    for name, row in TABLE.items():
        assert set(row) == set(Operation), name


@pytest.mark.parametrize(("name", "op"), PAIRS, ids=[f"{n}-{o}" for n, o in PAIRS])
def test_each_operation_moves_to_its_documented_state_or_says_why_not(
    name: str, op: Operation
) -> None:
    """The effect, or a rejection whose reason names the state and what would allow it."""
    result = lifecycle.apply_operation(STATES[name], op, BOTH, ASR)
    expected = TABLE[name][op]
    allowed = lifecycle.allowed_operations(STATES[name], BOTH)
    if isinstance(expected, No):
        assert isinstance(result, Rejection)
        assert expected.words in result.reason
        assert str(result).startswith(f"{op} is not allowed: ")
        if op is not OP.STOP_VM:  # StopVM is allowed with a named copy (below)
            assert op not in allowed
    else:
        assert result == expected
        assert op in allowed


def test_stopping_one_of_two_copies_names_it() -> None:
    """After a split brain, StopVM at the old site stops the old copy only."""
    result = lifecycle.apply_operation(COMMITTED_SPLIT, OP.STOP_VM, BOTH, ASR, target=A)
    assert result == replace(COMMITTED_SPLIT, running=frozenset({B}))
    assert OP.STOP_VM in lifecycle.allowed_operations(COMMITTED_SPLIT, BOTH)
    then = lifecycle.apply_operation(result, OP.REVERSE_REPLICATE, BOTH, ASR)
    assert isinstance(then, VMState)
    assert then.protection is PS.PROTECTED
    assert then.direction == "rtm->ams"


def test_unplanned_failover_stops_a_reachable_source_when_asked() -> None:
    result = lifecycle.apply_operation(
        PROTECTED, OP.UNPLANNED_FAILOVER, BOTH, ASR, shutdown_source=True
    )
    assert result == _failed_over(FailoverKind.UNPLANNED)


def test_unplanned_failover_cannot_stop_an_unreachable_source() -> None:
    """The old copy keeps running at the lost site: split brain when it returns."""
    only_b = Conditions(frozenset({B}))
    result = lifecycle.apply_operation(
        PROTECTED, OP.UNPLANNED_FAILOVER, only_b, ASR, shutdown_source=True
    )
    assert isinstance(result, VMState)
    assert result.active_site == B
    assert result.running == frozenset({A, B})
    assert result.stale_copies == frozenset({A})


def test_a_planned_failover_that_failed_after_its_shutdown_leaves_no_copy_running() -> None:
    """Still active at the source and protected: start it there, or fail over again."""
    left = lifecycle.failed_after_shutdown(PROTECTED)
    assert left == STOPPED
    assert {OP.START_VM, OP.PLANNED_FAILOVER} <= lifecycle.allowed_operations(left, BOTH)


def test_a_resync_needs_both_sites_and_ends_replicating() -> None:
    only_a = Conditions(frozenset({A}))
    assert lifecycle.check_operation(RESYNC, OP.RESYNC, only_a) == (
        "site rtm (the target) is disconnected: Resync needs it connected; "
        "wait for rtm to reconnect"
    )
    assert lifecycle.resolve_target(RESYNC, OP.RESYNC) == B
    assert lifecycle.apply_operation(RESYNC, OP.RESYNC, BOTH, ASR) == PROTECTED


# --- connectivity, health and jobs ----------------------------------------------

ALL_PROTECTED_OPS = frozenset(
    {
        OP.PLANNED_FAILOVER,
        OP.UNPLANNED_FAILOVER,
        OP.TEST_FAILOVER,
        OP.DISABLE_REPLICATION,
        OP.STOP_VM,
    }
)


@pytest.mark.parametrize(
    ("conditions", "allowed"),
    [
        (BOTH, ALL_PROTECTED_OPS),
        (Conditions(frozenset({B})), {OP.UNPLANNED_FAILOVER, OP.TEST_FAILOVER}),
        (Conditions(frozenset({A})), {OP.DISABLE_REPLICATION, OP.STOP_VM}),
        # A planned failover ships the lag: health never refuses it (issue 9, rule 5).
        (Conditions(frozenset({A, B}), Health.WARNING), ALL_PROTECTED_OPS),
        (Conditions(frozenset({A, B}), Health.CRITICAL), ALL_PROTECTED_OPS),
        (Conditions(frozenset({A, B}), job_running="job-000001 (TestFailover)"), set()),
    ],
    ids=["both-connected", "source-down", "target-down", "lagging", "critical", "job-running"],
)
def test_allowed_operations_of_a_protected_vm(
    conditions: Conditions, allowed: set[Operation]
) -> None:
    assert lifecycle.allowed_operations(PROTECTED, conditions) == allowed


@pytest.mark.parametrize(
    ("conditions", "words"),
    [
        (
            Conditions(frozenset({B})),
            (
                "site ams (the source) is disconnected: PlannedFailover needs "
                "it connected; wait for ams to reconnect, or use UnplannedFailover"
            ),
        ),
        (Conditions(frozenset({A})), "site rtm (the target) is disconnected"),
        (
            Conditions(frozenset({A, B}), job_running="job-000007 (StopVM)"),
            "job job-000007 (StopVM) is running on this VM: wait for it to finish",
        ),
    ],
)
def test_a_refused_planned_failover_names_the_cause_and_the_way_out(
    conditions: Conditions, words: str
) -> None:
    reason = lifecycle.check_operation(PROTECTED, OP.PLANNED_FAILOVER, conditions)
    assert reason is not None
    assert words in reason


@pytest.mark.parametrize("health", list(Health))
def test_a_planned_failover_is_allowed_with_any_replication_health(health: Health) -> None:
    """Lag makes it slower (it ships what is left first), never refused, never unplanned."""
    lagging = Conditions(frozenset({A, B}), health)
    assert lifecycle.check_operation(PROTECTED, OP.PLANNED_FAILOVER, lagging) is None
    result = lifecycle.apply_operation(PROTECTED, OP.PLANNED_FAILOVER, lagging, ASR)
    assert result == _failed_over(FailoverKind.PLANNED)


def test_an_old_copy_at_a_disconnected_site_cannot_be_stopped() -> None:
    reason = lifecycle.check_operation(
        COMMITTED_SPLIT, OP.STOP_VM, Conditions(frozenset({B})), target=A
    )
    assert (
        reason == "site ams is disconnected: its copy cannot be stopped until the site reconnects"
    )


@pytest.mark.parametrize(
    ("op", "target", "words"),
    [
        (OP.PLANNED_FAILOVER, A, "the VM is active at ams: PlannedFailover goes towards rtm"),
        (OP.PLANNED_FAILOVER, "lon", "site lon is not one of this VM's sites (ams, rtm)"),
        (OP.START_VM, B, "starting it would make two authoritative copies"),
    ],
)
def test_a_wrong_target_is_refused(op: Operation, target: str, words: str) -> None:
    state = STOPPED if op is OP.START_VM else PROTECTED
    reason = lifecycle.check_operation(state, op, BOTH, target)
    assert reason is not None
    assert words in reason


def test_commit_accepts_the_active_site_as_target() -> None:
    assert lifecycle.check_operation(PENDING_PLANNED, OP.COMMIT, BOTH, target=B) is None
    assert lifecycle.resolve_target(PENDING_PLANNED, OP.COMMIT) == B
    assert lifecycle.resolve_target(PROTECTED, OP.PLANNED_FAILOVER) == B


# --- flavours, durations, health, data loss ---------------------------------------


def test_hyperv_replica_planned_failover_ends_replicating_in_reverse() -> None:
    result = lifecycle.apply_operation(
        PROTECTED, OP.PLANNED_FAILOVER, BOTH, lifecycle.HYPERV_REPLICA
    )
    assert result == VMState(
        B, A, frozenset({B}), PS.PROTECTED, RS.REPLICATING, FailoverKind.PLANNED
    )
    unplanned = lifecycle.apply_operation(
        PROTECTED, OP.UNPLANNED_FAILOVER, BOTH, lifecycle.HYPERV_REPLICA, shutdown_source=True
    )
    assert unplanned == _failed_over(FailoverKind.UNPLANNED)


def test_a_flavour_without_commit_ends_a_failover_committed() -> None:
    flavour = lifecycle.Flavour("no commit", planned_failover_reverses=False, commit_required=False)
    result = lifecycle.apply_operation(PROTECTED, OP.PLANNED_FAILOVER, BOTH, flavour)
    assert isinstance(result, VMState)
    assert result.protection is PS.COMMITTED


def test_reverse_replication_is_a_delta_after_planned_and_a_full_copy_after_unplanned() -> None:
    timings = timing.Timings(reverse_replicate=2, initial_replication=60)
    assert timings.duration(COMMITTED_PLANNED, OP.REVERSE_REPLICATE) == 2
    committed_unplanned = replace(PENDING_UNPLANNED, protection=PS.COMMITTED)
    assert timings.duration(committed_unplanned, OP.REVERSE_REPLICATE) == 60
    assert timings.duration(UNPROTECTED, OP.ENABLE_REPLICATION) == 60


def test_a_full_copy_takes_the_size_of_the_vm_at_the_replication_throughput() -> None:
    """Without a size, the inventory's initialReplication, as before sizes existed."""
    timings = timing.Timings(initial_replication=60, replication_mbps=50)
    committed_unplanned = replace(PENDING_UNPLANNED, protection=PS.COMMITTED)
    for op, state in (
        (OP.REVERSE_REPLICATE, committed_unplanned),
        (OP.ENABLE_REPLICATION, UNPROTECTED),
        (OP.RESYNC, RESYNC),
    ):
        assert timings.duration(state, op) == 60
        assert timings.duration(state, op, size_gb=100) == 100 * 1024 / 50
    assert timings.duration(COMMITTED_PLANNED, OP.REVERSE_REPLICATE, size_gb=100) == 2


def test_a_planned_failover_takes_longer_by_what_replication_is_behind() -> None:
    timings = timing.Timings(planned_failover=3)
    assert timings.duration(PROTECTED, OP.PLANNED_FAILOVER) == 3
    assert timings.duration(PROTECTED, OP.PLANNED_FAILOVER, behind_seconds=45) == 48


@pytest.mark.parametrize(
    ("state", "behind", "health"),
    [
        (RS.REPLICATING, 0, Health.NORMAL),
        (RS.REPLICATING, 30, Health.NORMAL),
        (RS.REPLICATING, 31, Health.WARNING),
        (RS.REPLICATING, 150, Health.WARNING),
        (RS.REPLICATING, 151, Health.CRITICAL),
        (RS.RESYNC_REQUIRED, 0, Health.CRITICAL),
        (RS.PAUSED, 0, Health.WARNING),
    ],
)
def test_replication_health_thresholds(
    state: ReplicationState, behind: float, health: Health
) -> None:
    """Warning past one interval behind schedule, Critical past five (interval 30 s)."""
    assert lifecycle.replication_health(state, behind, 30) is health


def test_data_loss_of_a_failover() -> None:
    assert lifecycle.failover_data_loss(OP.PLANNED_FAILOVER, 100, 70) == 0
    assert lifecycle.failover_data_loss(OP.UNPLANNED_FAILOVER, 100, 70) == 30
    assert lifecycle.failover_data_loss(OP.UNPLANNED_FAILOVER, 60, 70) == 0


# --- random sequences -------------------------------------------------------------


@dataclass
class World:
    """The physics around the model: connectivity, and which writes each copy holds.

    `data[site]` is the newest write a site's copy holds, in seconds of the
    VM's history. Writes land on the active copy while it runs and its site is
    connected; a sync copies the active copy to the replica when both sites
    are connected and replication runs.
    """

    vm: VMState = PROTECTED
    connected: set[str] = field(default_factory=lambda: {A, B})
    lagging: bool = False
    data: dict[str, float] = field(default_factory=lambda: {A: 0.0, B: 0.0})
    may_split: bool = False  # an unplanned failover left the source running

    def conditions(self) -> Conditions:
        return Conditions(
            frozenset(self.connected), Health.WARNING if self.lagging else Health.NORMAL
        )

    def links_up(self) -> bool:
        return (
            self.vm.protection is PS.PROTECTED
            and self.connected == {A, B}
            and self.vm.replication is RS.REPLICATING
        )


def _env_step(world: World, step: tuple[str, ...]) -> None:
    kind = step[0]
    vm = world.vm
    if kind == "down":
        world.connected.discard(step[1])
    elif kind == "up":
        world.connected.add(step[1])
    elif kind == "write" and vm.active_site in vm.running and vm.active_site in world.connected:
        world.data[vm.active_site] += 1.0
    elif kind == "sync" and world.links_up() and not world.lagging:
        world.data[vm.peer_site] = world.data[vm.active_site]
    elif kind == "lag":
        world.lagging = not world.lagging
    elif kind == "resync" and world.links_up():
        world.vm = replace(vm, replication=RS.RESYNC_REQUIRED)
    elif kind == "resynced" and vm.replication is RS.RESYNC_REQUIRED and world.connected == {A, B}:
        world.vm = replace(vm, replication=RS.REPLICATING)
        world.data[vm.peer_site] = world.data[vm.active_site]


def _op_step(world: World, op: Operation, target: str | None, shutdown: bool) -> None:
    before = world.vm
    cond = world.conditions()
    allowed = lifecycle.allowed_operations(before, cond)
    result = lifecycle.apply_operation(
        before, op, cond, ASR, target=target, shutdown_source=shutdown
    )
    if isinstance(result, Rejection):
        assert result.reason
        if op is not OP.STOP_VM and target is None:
            assert op not in allowed
        return
    assert op in allowed
    source, replica = before.active_site, before.peer_site
    if op is OP.PLANNED_FAILOVER:
        # The final ship happens only if the link can carry it (lagging or not).
        if world.links_up():
            world.data[replica] = world.data[source]
        assert world.data[replica] == world.data[source], "a planned failover lost writes"
    if op is OP.UNPLANNED_FAILOVER and source in result.running:
        world.may_split = True
    if op in {OP.REVERSE_REPLICATE, OP.ENABLE_REPLICATION}:
        assert result.peer_site not in before.running, "replicated over a running copy"
        world.data[result.peer_site] = world.data[result.active_site]
    for site in before.stale_copies - result.stale_copies:
        assert op is OP.STOP_VM and (target == site or len(before.running) == 1), (
            f"stale copy at {site} vanished through {op}"
        )
    for site in before.stale_copies:
        assert result.active_site != site, f"stale copy at {site} became the active one"
    world.vm = result


def _check_invariants(world: World) -> None:
    vm = world.vm
    assert vm.running <= {A, B}
    assert {vm.active_site, vm.peer_site} == {A, B}
    if vm.protection is PS.PROTECTED:
        # Two authoritative copies: both running while replication links them.
        assert vm.peer_site not in vm.running, "two copies of a protected VM run"
    if len(vm.running) == 2:
        assert world.may_split, "two copies run without an unplanned failover that left one"
    if vm.protection is not PS.PROTECTED:
        assert vm.replication is RS.OFF


_sites = st.sampled_from([A, B])
# Failovers and writes weigh more: the interesting sequences write, lose a
# site or fall behind, then fail over.
_op = st.tuples(
    st.just("op"),
    st.sampled_from([OP.PLANNED_FAILOVER, OP.UNPLANNED_FAILOVER, *Operation]),
    st.none() | _sites,
    st.booleans(),
)
_steps = st.one_of(
    _op,
    _op,
    st.tuples(st.sampled_from(["down", "up"]), _sites),
    st.tuples(st.sampled_from(["write", "write", "sync", "lag", "resync", "resynced"])),
)


@settings(max_examples=500, deadline=None)
@given(st.lists(_steps, min_size=5, max_size=60))
def test_random_sequences_never_split_authority_or_lose_planned_writes(
    steps: list[tuple[object, ...]],
) -> None:
    """Whatever operators, sites and replication do, a planned failover keeps every write,
    a stale copy is never promoted or overwritten, and only an unplanned failover that left
    its source running makes two copies run."""
    world = World()
    for step in steps:
        if step[0] == "op":
            _, op, target, shutdown = step
            assert isinstance(op, Operation)
            _op_step(world, op, target if isinstance(target, str) else None, bool(shutdown))
        else:
            _env_step(world, tuple(str(s) for s in step))
        _check_invariants(world)
