"""The lifecycle of one replicated VM as a pure model: what each operation does, and when.

The simulated fabric (`fabric.sim.provider`) asks `check_operation` when a job
starts and applies `apply_effect` when the job finishes; the local servers
that imitate the ASR REST API and Hyper-V Replica will share the same model
through a `Flavour`. No I/O, no clock: what depends on the world (which sites
are reachable, how far replication lags, whether a job runs) comes in as
`Conditions`, and time-derived quantities (data positions) come in as numbers.

The ASR VMM-to-VMM flow (design.md section 1):

    Protected(A->B) --PlannedFailover/UnplannedFailover--> CommitPending(active B)
    CommitPending --Commit--> Committed --ReverseReplicate--> Protected(B->A)

Hyper-V Replica's planned failover ends already replicating in reverse
(`Set-VMReplication -Reverse`), with nothing to commit; its unplanned failover
still ends CommitPending (`Complete-VMFailover`).

ASR's Hyper-V-to-Azure scenario (`VMState.azure_site`) is asymmetric: towards
Azure it is the flow above, but a VM active in Azure replicates nowhere, and
its one way out is a planned failover back (ASR's Failback), after the commit
in Azure:

    Committed(active Azure) --PlannedFailover (Failback)--> CommitPending(active Hyper-V)
    --Commit--> Committed --ReverseReplicate--> Protected(Hyper-V->Azure)

No unplanned failover, no test failover and no ReverseReplicate out of Azure
(ReplicationProtectedItems_FailoverCommit.json: an item committed in Azure
allows CompleteMigration, DisableProtection and Failback only).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, replace

from reconciler.core.state import (
    FailoverKind,
    Health,
    Operation,
    ProtectionState,
    ReplicationState,
    TestFailoverState,
)

# Replication health from how far replication is behind its schedule (the lag
# on top of the normal one-interval cycle, plus the time shipping has been cut
# off by a disconnected site). One missed cycle is still Normal, as in ASR.
# Health is reported, never a precondition: a planned failover ships the lag
# whatever the health reads (it takes longer), and is never refused for it.
WARNING_AFTER_INTERVALS = 1.0
CRITICAL_AFTER_INTERVALS = 5.0


@dataclass(frozen=True, slots=True)
class Flavour:
    """How a product ends a failover; everything else in the lifecycle is shared."""

    name: str
    planned_failover_reverses: bool  # ends Protected, replicating back; nothing to commit
    commit_required: bool  # a failover that does not reverse ends CommitPending


ASR_VMM = Flavour("ASR VMM-to-VMM", planned_failover_reverses=False, commit_required=True)
# Ends a failover as VMM-to-VMM does, either way; what Azure lacks is `VMState.azure_site`'s.
ASR_AZURE = Flavour("ASR Hyper-V-to-Azure", planned_failover_reverses=False, commit_required=True)
HYPERV_REPLICA = Flavour("Hyper-V Replica", planned_failover_reverses=True, commit_required=True)


@dataclass(frozen=True, slots=True)
class VMState:
    """One VM at rest between jobs.

    Replication, when on, always flows from the active copy to the peer site.
    `running` holds the sites where a production copy runs: the active one
    and, after an unplanned failover that could not stop the source, a stale
    copy at the peer (split brain). A test failover copy is not in `running`:
    it lives on an isolated network and is reported by `test_failover`.
    """

    active_site: str
    peer_site: str
    running: frozenset[str]
    protection: ProtectionState
    replication: ReplicationState = ReplicationState.OFF
    last_failover: FailoverKind | None = None
    test_failover: TestFailoverState = TestFailoverState.NONE
    # The site that is Azure in ASR's Hyper-V-to-Azure scenario (None: neither is):
    # a VM active there replicates nowhere and leaves it only by a planned failback.
    azure_site: str | None = None

    @property
    def in_azure(self) -> bool:
        return self.azure_site is not None and self.active_site == self.azure_site

    @property
    def stale_copies(self) -> frozenset[str]:
        """Copies that run but are not the active one: they must be stopped, never used."""
        return self.running - {self.active_site}

    @property
    def direction(self) -> str:
        return f"{self.active_site}->{self.peer_site}"


def protected(active_site: str, peer_site: str, *, azure_site: str | None = None) -> VMState:
    """A VM running at `active_site`, replicating to `peer_site`, initial sync done."""
    return VMState(
        active_site,
        peer_site,
        frozenset({active_site}),
        ProtectionState.PROTECTED,
        ReplicationState.REPLICATING,
        azure_site=azure_site,
    )


def unprotected(active_site: str, peer_site: str, *, azure_site: str | None = None) -> VMState:
    """A VM running at `active_site` with replication off."""
    return VMState(
        active_site,
        peer_site,
        frozenset({active_site}),
        ProtectionState.UNPROTECTED,
        azure_site=azure_site,
    )


@dataclass(frozen=True, slots=True)
class Conditions:
    """What the world around one VM looks like when an operation is asked for."""

    connected: frozenset[str]
    # Reported with the VM; no operation depends on it (see replication_health).
    health: Health = Health.NORMAL
    job_running: str | None = None  # the job in progress on this VM, described


@dataclass(frozen=True, slots=True)
class Rejection:
    """An operation the VM does not allow now, and why."""

    operation: Operation
    reason: str

    def __str__(self) -> str:
        return f"{self.operation} is not allowed: {self.reason}"


def replication_health(
    state: ReplicationState, behind_seconds: float, interval_seconds: float
) -> Health:
    """Health of a replication that is `behind_seconds` behind its schedule."""
    if state in {ReplicationState.RESYNC_REQUIRED, ReplicationState.ERROR}:
        return Health.CRITICAL
    if state is ReplicationState.PAUSED:
        return Health.WARNING
    if behind_seconds > CRITICAL_AFTER_INTERVALS * interval_seconds:
        return Health.CRITICAL
    if behind_seconds > WARNING_AFTER_INTERVALS * interval_seconds:
        return Health.WARNING
    return Health.NORMAL


def required_sites(vm: VMState, op: Operation, target: str | None = None) -> frozenset[str]:
    """Sites that must stay connected from the start of `op` to its end.

    An unplanned failover needs only the target: that is its point. StopVM
    and StartVM need the site of the copy they act on (`target`, resolved).
    """
    active, peer = vm.active_site, vm.peer_site
    if op in {
        Operation.PLANNED_FAILOVER,
        Operation.REVERSE_REPLICATE,
        Operation.ENABLE_REPLICATION,
        Operation.RESYNC,
    }:
        return frozenset({active, peer})
    if op in {
        Operation.UNPLANNED_FAILOVER,
        Operation.TEST_FAILOVER,
        Operation.TEST_FAILOVER_CLEANUP,
    }:
        return frozenset({peer})
    if op in {Operation.STOP_VM, Operation.START_VM}:
        return frozenset({target}) if target is not None else frozenset()
    return frozenset({active})


# ---------------------------------------------------------------------------
# Preconditions: each returns None when allowed, else the reason, naming the
# state or site at fault and what would make the operation allowed.

_Check = Callable[[VMState, str | None], str | None]


def check_operation(
    vm: VMState, op: Operation, cond: Conditions, target: str | None = None
) -> str | None:
    """Why `op` is not allowed on `vm` now, or None if it is.

    `target` is the site `op` acts on (see `resolve_target`); None takes the
    default, except that StopVM needs it when two copies run.
    """
    if cond.job_running is not None:
        return (
            f"job {cond.job_running} is running on this VM: wait for it to finish "
            "(a running job is never cancelled)"
        )
    if vm.protection is ProtectionState.UNKNOWN:
        return "the VM's protection state is unknown: nothing is allowed until it reads a known one"
    check = _FROM_AZURE.get(op, _CHECKS[op]) if vm.in_azure else _CHECKS[op]
    reason = (
        _wrong_target(vm, op, target)
        or check(vm, target)
        or _disconnected(vm, op, cond, resolve_target(vm, op, target))
    )
    if reason is None and op is Operation.PLANNED_FAILOVER and not vm.in_azure:
        # A failback from Azure ships what changed there itself: nothing replicates.
        reason = _replication_behind(vm)
    return reason


# Operations that go towards the peer site: where the VM fails over to, where
# the test copy boots, where reverse or new replication makes the replica.
_TOWARDS_PEER = frozenset(
    {
        Operation.PLANNED_FAILOVER,
        Operation.UNPLANNED_FAILOVER,
        Operation.TEST_FAILOVER,
        Operation.TEST_FAILOVER_CLEANUP,
        Operation.REVERSE_REPLICATE,
        Operation.ENABLE_REPLICATION,
        Operation.RESYNC,
    }
)
_ON_ACTIVE = frozenset({Operation.COMMIT, Operation.APPLY_RECOVERY_POINT, Operation.START_VM})


def resolve_target(vm: VMState, op: Operation, target: str | None = None) -> str | None:
    """The site `op` acts on, when the caller left it out.

    A failover, a test failover, (re)enabling replication and a resync go to the peer;
    Commit, ApplyRecoveryPoint and StartVM act on the active copy; StopVM on
    the only running copy. DisableReplication acts on both sites: None.
    """
    if target is not None:
        return target
    if op in _TOWARDS_PEER:
        return vm.peer_site
    if op in _ON_ACTIVE:
        return vm.active_site
    if op is Operation.STOP_VM and len(vm.running) == 1:
        return next(iter(vm.running))
    return None


def _wrong_target(vm: VMState, op: Operation, target: str | None) -> str | None:
    if target is None:
        return None
    if target not in {vm.active_site, vm.peer_site}:
        return f"site {target} is not one of this VM's sites ({vm.active_site}, {vm.peer_site})"
    if op in _TOWARDS_PEER and target != vm.peer_site:
        return f"the VM is active at {target}: {op} goes towards {vm.peer_site}"
    if op is Operation.START_VM and target != vm.active_site:
        return (
            f"the copy at {target} is not the active one: starting it would make two "
            f"authoritative copies; fail over to move the VM to {target}"
        )
    if op in _ON_ACTIVE and target != vm.active_site:
        return f"{op} acts on the active copy at {vm.active_site}, not at {target}"
    return None


@functools.lru_cache(maxsize=4096)
def allowed_operations(vm: VMState, cond: Conditions) -> frozenset[Operation]:
    """Every operation `vm` allows now (cached: an observation repeats few states)."""
    allowed: set[Operation] = {
        op
        for op in Operation
        if op is not Operation.STOP_VM and check_operation(vm, op, cond) is None
    }
    if any(check_operation(vm, Operation.STOP_VM, cond, site) is None for site in vm.running):
        allowed.add(Operation.STOP_VM)
    return frozenset(allowed)


def _disconnected(vm: VMState, op: Operation, cond: Conditions, target: str | None) -> str | None:
    for site in sorted(required_sites(vm, op, target) - cond.connected):
        if op in {Operation.STOP_VM, Operation.START_VM}:
            verb = "stopped" if op is Operation.STOP_VM else "started"
            return (
                f"site {site} is disconnected: its copy cannot be {verb} until the site reconnects"
            )
        role = "source" if site == vm.active_site else "target"
        hint = ""
        if op is Operation.PLANNED_FAILOVER and role == "source" and not vm.in_azure:
            hint = ", or use UnplannedFailover (it loses the writes not yet replicated)"
        return (
            f"site {site} (the {role}) is disconnected: {op} needs it connected; "
            f"wait for {site} to reconnect{hint}"
        )
    return None


def _not_protected(vm: VMState) -> str | None:
    hints = {
        ProtectionState.COMMIT_PENDING: "commit the failover first (Commit)",
        ProtectionState.COMMITTED: "reverse replication first (ReverseReplicate)",
        ProtectionState.UNPROTECTED: "enable replication first (EnableReplication)",
    }
    if vm.protection is ProtectionState.PROTECTED:
        if vm.replication is ReplicationState.INITIAL_SYNC:
            return (
                f"no recovery point at {vm.peer_site} yet: wait for the initial "
                "replication to finish"
            )
        return None
    hint = hints.get(vm.protection, "check the VM in the fabric")
    return f"the VM is {vm.protection}, not Protected: {hint}"


def _test_copy_up(vm: VMState) -> str | None:
    if vm.test_failover is TestFailoverState.RUNNING:
        return (
            f"a test failover copy runs at {vm.peer_site}: clean it up first (TestFailoverCleanup)"
        )
    return None


def _peer_runs(vm: VMState) -> str | None:
    if vm.peer_site in vm.running:
        return (
            f"an old copy of the VM still runs at {vm.peer_site}: stop it first "
            f"(StopVM at {vm.peer_site})"
        )
    return None


def _check_failover(vm: VMState, target: str | None) -> str | None:
    return _not_protected(vm) or _test_copy_up(vm) or _peer_runs(vm)


def _replication_behind(vm: VMState) -> str | None:
    """Why a planned failover could not ship every write first, if it could not.

    It needs replication running, with any health: a lagging replication
    (Warning, Critical) ships what is left before the replica starts, which
    takes longer and loses nothing (issue 9, rule 5).
    """
    if vm.replication is not ReplicationState.REPLICATING:
        hint = {
            ReplicationState.RESYNC_REQUIRED: (
                "wait for the fabric's resync to finish or start one (Resync)"
            )
        }.get(vm.replication, "resume replication")
        return (
            f"replication {vm.direction} is {vm.replication}, not Replicating: {hint}, "
            "or use UnplannedFailover (it loses the writes not yet replicated)"
        )
    return None


def _check_test_failover(vm: VMState, target: str | None) -> str | None:
    return _not_protected(vm) or _test_copy_up(vm)


def _check_test_cleanup(vm: VMState, target: str | None) -> str | None:
    if vm.test_failover is not TestFailoverState.RUNNING:
        return "no test failover copy runs: there is nothing to clean up"
    return None


def _check_commit(vm: VMState, target: str | None) -> str | None:
    if vm.protection is ProtectionState.COMMITTED:
        return "the failover is already committed"
    if vm.protection is not ProtectionState.COMMIT_PENDING:
        return f"the VM is {vm.protection}: there is no failover to commit"
    return None


def _check_apply_point(vm: VMState, target: str | None) -> str | None:
    if vm.protection is not ProtectionState.COMMIT_PENDING:
        return (
            f"the VM is {vm.protection}: a recovery point is chosen between an unplanned "
            "failover and its commit"
        )
    if vm.last_failover is not FailoverKind.UNPLANNED:
        return (
            "the failover was planned: it lost nothing and there is no other point to "
            "choose; Commit it"
        )
    return None


def _check_reverse(vm: VMState, target: str | None) -> str | None:
    if vm.protection is ProtectionState.PROTECTED:
        return f"replication already runs {vm.direction}"
    if vm.protection is ProtectionState.COMMIT_PENDING:
        return "the failover is not committed: Commit it first"
    if vm.protection is ProtectionState.UNPROTECTED:
        return "replication is off: use EnableReplication"
    if vm.peer_site in vm.running:
        return (
            f"the old copy still runs at {vm.peer_site} (split brain after an unplanned "
            f"failover): stop it first with StopVM at {vm.peer_site}; reverse "
            "replication would overwrite it"
        )
    return None


def _check_enable(vm: VMState, target: str | None) -> str | None:
    if vm.protection is not ProtectionState.UNPROTECTED:
        return f"the VM is {vm.protection}: replication is already configured"
    return _peer_runs(vm)


def _check_disable(vm: VMState, target: str | None) -> str | None:
    if vm.protection is ProtectionState.UNPROTECTED:
        return "replication is already off"
    if vm.protection is ProtectionState.COMMIT_PENDING:
        return "the failover is not committed: Commit it first"
    return _test_copy_up(vm)


def _check_resync(vm: VMState, target: str | None) -> str | None:
    if vm.protection is not ProtectionState.PROTECTED:
        return f"the VM is {vm.protection}: there is no replication to resync"
    if vm.replication is not ReplicationState.RESYNC_REQUIRED:
        return (
            f"replication {vm.direction} is {vm.replication}, not ResyncRequired: "
            "there is nothing to resync"
        )
    return None


def _check_start(vm: VMState, target: str | None) -> str | None:
    if vm.active_site in vm.running:
        return f"the VM already runs at {vm.active_site}"
    return None


def _check_stop(vm: VMState, target: str | None) -> str | None:
    if not vm.running:
        return "no copy of the VM runs"
    if target is None:
        if len(vm.running) > 1:
            return (
                f"copies run at {', '.join(sorted(vm.running))}: name the copy to stop "
                "(target site)"
            )
        return None
    if target not in vm.running:
        return f"no copy of the VM runs at {target}"
    return None


def _not_modelled(vm: VMState, target: str | None) -> str | None:
    # Operations a real fabric may list as allowed, that drctl never calls
    # (engine/guard.py): the model runs neither, so no fabric built on it
    # reports them allowed.
    return "the lifecycle model does not run it: drctl never calls it, whatever a fabric allows"


def _check_failback(vm: VMState, target: str | None) -> str | None:
    if vm.protection is ProtectionState.COMMIT_PENDING:
        return (
            f"the failover to Azure ({vm.active_site}) is not committed: Commit it first; "
            f"the failback to {vm.peer_site} (PlannedFailover) comes after"
        )
    if vm.protection is not ProtectionState.COMMITTED:
        return f"the VM is {vm.protection} in Azure: only a committed failover fails back"
    return _test_copy_up(vm) or _peer_runs(vm)


def _no_way_from_azure(op: Operation) -> _Check:
    def check(vm: VMState, target: str | None) -> str | None:
        return (
            f"{vm.active_site} is Azure, and from Azure there is no {op}: the one way back "
            f"is the planned failback (PlannedFailover to {vm.peer_site}, ASR's Failback)"
        )

    return check


def _no_replication_from_azure(vm: VMState, target: str | None) -> str | None:
    return (
        f"a VM active in Azure ({vm.active_site}) does not replicate back to "
        f"{vm.peer_site}: fail it back first (PlannedFailover to {vm.peer_site}), commit "
        f"it there, then ReverseReplicate replicates {vm.peer_site}->{vm.active_site} again"
    )


# What a VM active in Azure allows in place of `_CHECKS` (Hyper-V-to-Azure).
_FROM_AZURE: dict[Operation, _Check] = {
    Operation.PLANNED_FAILOVER: _check_failback,
    Operation.UNPLANNED_FAILOVER: _no_way_from_azure(Operation.UNPLANNED_FAILOVER),
    Operation.TEST_FAILOVER: _no_way_from_azure(Operation.TEST_FAILOVER),
    Operation.REVERSE_REPLICATE: _no_replication_from_azure,
    Operation.ENABLE_REPLICATION: _no_replication_from_azure,
    Operation.RESYNC: _no_replication_from_azure,
}


_CHECKS: dict[Operation, _Check] = {
    Operation.PLANNED_FAILOVER: _check_failover,
    Operation.UNPLANNED_FAILOVER: _check_failover,
    Operation.TEST_FAILOVER: _check_test_failover,
    Operation.TEST_FAILOVER_CLEANUP: _check_test_cleanup,
    Operation.COMMIT: _check_commit,
    Operation.APPLY_RECOVERY_POINT: _check_apply_point,
    Operation.REVERSE_REPLICATE: _check_reverse,
    Operation.ENABLE_REPLICATION: _check_enable,
    Operation.DISABLE_REPLICATION: _check_disable,
    Operation.STOP_VM: _check_stop,
    Operation.START_VM: _check_start,
    Operation.RESYNC: _check_resync,
    Operation.CANCEL_FAILOVER: _not_modelled,
    Operation.COMPLETE_MIGRATION: _not_modelled,
}


# ---------------------------------------------------------------------------
# Effects.


def apply_operation(
    vm: VMState,
    op: Operation,
    cond: Conditions,
    flavour: Flavour,
    *,
    target: str | None = None,
    shutdown_source: bool = False,
) -> VMState | Rejection:
    """The state after `op`, or why `op` is not allowed now.

    An unplanned failover stops the source copy only when asked to
    (`shutdown_source`, ASR's `sourceSiteOperations: Required`) and the source
    site is reachable; otherwise that copy keeps running, stale.
    """
    reason = check_operation(vm, op, cond, target)
    if reason is not None:
        return Rejection(op, reason)
    source_stopped = shutdown_source and vm.active_site in cond.connected
    return apply_effect(vm, op, flavour, target=target, source_stopped=source_stopped)


def apply_effect(
    vm: VMState,
    op: Operation,
    flavour: Flavour,
    *,
    target: str | None = None,
    source_stopped: bool = True,
) -> VMState:
    """The state after `op` finished; the caller checked `op` when it started.

    `source_stopped` says whether an unplanned failover stopped the source copy.
    """
    if op is Operation.PLANNED_FAILOVER:
        return _failed_over(vm, FailoverKind.PLANNED, flavour, source_stopped=True)
    if op is Operation.UNPLANNED_FAILOVER:
        return _failed_over(vm, FailoverKind.UNPLANNED, flavour, source_stopped=source_stopped)
    if op is Operation.COMMIT:
        return replace(vm, protection=ProtectionState.COMMITTED)
    if op in {Operation.REVERSE_REPLICATE, Operation.ENABLE_REPLICATION}:
        return replace(
            vm, protection=ProtectionState.PROTECTED, replication=ReplicationState.REPLICATING
        )
    if op is Operation.DISABLE_REPLICATION:
        return replace(vm, protection=ProtectionState.UNPROTECTED, replication=ReplicationState.OFF)
    if op is Operation.RESYNC:
        return replace(vm, replication=ReplicationState.REPLICATING)
    if op is Operation.TEST_FAILOVER:
        return replace(vm, test_failover=TestFailoverState.RUNNING)
    if op is Operation.TEST_FAILOVER_CLEANUP:
        return replace(vm, test_failover=TestFailoverState.NONE)
    if op is Operation.STOP_VM:
        stopped = resolve_target(vm, op, target)
        return replace(vm, running=vm.running - {stopped})
    if op is Operation.START_VM:
        return replace(vm, running=vm.running | {vm.active_site})
    # ApplyRecoveryPoint changes the data the active copy holds, not the state.
    return vm


def failed_after_shutdown(vm: VMState) -> VMState:
    """What a planned failover leaves when it fails after shutting the source down.

    The first step of a planned failover stops the active copy; when a later
    step fails, nothing runs: the VM is still active at the source, still
    protected and replicating (the replica was never started), and no copy
    of it runs until someone starts it again or retries the failover.
    """
    return replace(vm, running=vm.running - {vm.active_site})


def _failed_over(
    vm: VMState, kind: FailoverKind, flavour: Flavour, *, source_stopped: bool
) -> VMState:
    old, new = vm.active_site, vm.peer_site
    running = {new}
    if old in vm.running and not source_stopped:
        running.add(old)
    if kind is FailoverKind.PLANNED and flavour.planned_failover_reverses:
        return VMState(
            new,
            old,
            frozenset(running),
            ProtectionState.PROTECTED,
            ReplicationState.REPLICATING,
            kind,
            azure_site=vm.azure_site,
        )
    protection = (
        ProtectionState.COMMIT_PENDING if flavour.commit_required else ProtectionState.COMMITTED
    )
    return VMState(
        new,
        old,
        frozenset(running),
        protection,
        ReplicationState.OFF,
        kind,
        azure_site=vm.azure_site,
    )


def failover_data_loss(op: Operation, written_until: float, replicated_until: float) -> float:
    """Seconds of writes a failover loses.

    `written_until` is when the source copy took its last write (the failover
    start, the moment its site went down, or when it was stopped);
    `replicated_until` is the newest write the replica holds (the last sync).
    A planned failover ships what is left before it starts the replica.
    """
    if op is Operation.PLANNED_FAILOVER:
        return 0.0
    return max(0.0, written_until - replicated_until)
