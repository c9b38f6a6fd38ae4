"""drctl's own multi-step jobs on Hyper-V Replica: the cmdlets of each operation, and how far
the hosts show one has come. Pure.

Hyper-V has no service-side job for a failover: each operation is a
sequence of cmdlets on the two hosts, as Microsoft documents it
(../shared/hyperv.md section 1), which the provider runs one step per poll
with each step journaled before its cmdlet (`provider`). `reached` reads how
many steps the hosts show done, from the copies' modes, replication states
and power alone, so that after a crash between two cmdlets the job resumes
from what the hosts report; the journal only says which steps were sent,
and a step that is not idempotent (Prepare, Start-VMFailover, -Reverse,
Complete-VMFailover, ...) is never sent twice: sent again it would answer
InvalidState, or worse.

Roles: `source` is the copy at the VM's active site when the job started,
`target` the copy at the site the operation acts on or goes to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from reconciler import errors
from reconciler.core.state import Operation
from reconciler.fabric.hyperv import script
from reconciler.fabric.hyperv.reading import Copy

Role = Literal["source", "target"]


@dataclass(frozen=True, slots=True)
class StepPlan:
    name: str  # as the journal and the job's description name it
    cmdlet: str
    role: Role
    idempotent: bool  # sent again, it does nothing more (Stop-VM, Start-VM)
    script: str
    purpose: str | None = None  # for a cmdlet drctl's hard rules allow only for some purposes


def steps_of(
    op: Operation, vm: str, reverse_to: str | None = None, point: str | None = None
) -> tuple[StepPlan, ...]:
    """The cmdlets of `op` on `vm`, in order; `reverse_to` names the old primary (a host or
    its broker) for the reverse replication after an unplanned failover, `point` the
    recovery snapshot an unplanned failover boots (None: the latest)."""
    if op is Operation.PLANNED_FAILOVER:
        return (
            StepPlan("Stop-VM", "Stop-VM", "source", True, script.stop_vm(vm)),
            StepPlan(
                "Start-VMFailover -Prepare",
                "Start-VMFailover",
                "source",
                False,
                script.prepare_failover(vm),
            ),
            StepPlan("Start-VMFailover", "Start-VMFailover", "target", False, script.failover(vm)),
            StepPlan(
                "Set-VMReplication -Reverse",
                "Set-VMReplication",
                "target",
                False,
                script.reverse(vm),
            ),
            StepPlan("Start-VM", "Start-VM", "target", True, script.start_vm(vm)),
        )
    if op is Operation.UNPLANNED_FAILOVER:
        first = (
            StepPlan("Start-VMFailover", "Start-VMFailover", "target", False, script.failover(vm))
            if point is None
            else StepPlan(
                "Start-VMFailover -VMRecoverySnapshot",
                "Start-VMFailover",
                "target",
                False,
                script.failover_to_point(vm, point),
            )
        )
        return (
            first,
            StepPlan("Start-VM", "Start-VM", "target", True, script.start_vm(vm)),
        )
    if op is Operation.COMMIT:
        return (
            StepPlan(
                "Complete-VMFailover",
                "Complete-VMFailover",
                "target",
                False,
                script.complete_failover(vm),
            ),
        )
    if op is Operation.REVERSE_REPLICATE:
        return (
            StepPlan(
                "Set-VMReplication -AsReplica",
                "Set-VMReplication",
                "target",
                False,
                script.as_replica(vm),
            ),
            StepPlan(
                "Set-VMReplication -Reverse -ReplicaServerName",
                "Set-VMReplication",
                "source",
                False,
                script.reverse_to(vm, reverse_to or ""),
            ),
            StepPlan(
                "Start-VMInitialReplication",
                "Start-VMInitialReplication",
                "source",
                False,
                script.start_initial_replication(vm),
            ),
        )
    if op is Operation.TEST_FAILOVER:
        return (
            StepPlan(
                "Start-VMFailover -AsTest",
                "Start-VMFailover",
                "target",
                False,
                script.test_failover(vm),
            ),
            StepPlan(
                "Start-VM (test VM)",
                "Start-VM",
                "target",
                True,
                script.start_vm(script.test_vm_name(vm)),
            ),
        )
    if op is Operation.TEST_FAILOVER_CLEANUP:
        return (
            StepPlan(
                "Stop-VMFailover",
                "Stop-VMFailover",
                "target",
                False,
                script.stop_failover(vm),
                purpose="test-cleanup",
            ),
        )
    if op is Operation.RESYNC:
        return (
            StepPlan(
                "Resume-VMReplication -Resynchronize",
                "Resume-VMReplication",
                "source",
                False,
                script.resynchronize(vm),
            ),
        )
    if op is Operation.STOP_VM:
        # The active copy is shut down; any other running copy is stale (split brain
        # after an unplanned failover) and is turned off: its writes are not to be kept.
        return (StepPlan("Stop-VM", "Stop-VM", "target", True, script.stop_vm(vm)),)
    if op is Operation.START_VM:
        return (StepPlan("Start-VM", "Start-VM", "target", True, script.start_vm(vm)),)
    raise ValueError(f"{op} is not a Hyper-V Replica job")


def stale_stop(vm: str) -> tuple[StepPlan, ...]:
    """StopVM of a copy that is not the active one: `Stop-VM -TurnOff` on the host holding it."""
    return (
        StepPlan("Stop-VM -TurnOff", "Stop-VM", "target", True, script.stop_vm(vm, turn_off=True)),
    )


def revert_prepare(vm: str) -> StepPlan:
    """Undo the -Prepare this job issued on the primary, when it cannot complete."""
    return StepPlan(
        "Stop-VMFailover",
        "Stop-VMFailover",
        "source",
        False,
        script.stop_failover(vm),
        purpose="revert-own-prepare",
    )


def needs(op: Operation) -> frozenset[Role]:
    """The copies `reached` reads: their hosts must answer for the job to go on."""
    if op in {Operation.PLANNED_FAILOVER, Operation.REVERSE_REPLICATE}:
        return frozenset({"source", "target"})
    if op is Operation.RESYNC:
        return frozenset({"source"})
    return frozenset({"target"})


def reached(op: Operation, source: Copy | None, target: Copy | None) -> int:
    """How many of `op`'s steps the copies show done (`needs` says which must be given)."""
    s, t = source, target
    if op is Operation.PLANNED_FAILOVER:
        s, t = _given(s), _given(t)
        if t.mode == "Primary":
            return 5 if t.running else 4
        if t.state == "FailedOverWaitingCompletion":
            return 3
        if s.state == "PreparedForFailover":
            return 2
        return 0 if s.running else 1
    if op is Operation.UNPLANNED_FAILOVER:
        t = _given(t)
        if t.failed_over:
            return 2 if t.running else 1
        return 0
    if op is Operation.COMMIT:
        t = _given(t)
        return 1 if t.state == "FailedOver" else 0
    if op is Operation.REVERSE_REPLICATE:
        s, t = _given(s), _given(t)
        if s.mode == "Primary":
            return 2 if s.state == "ReadyForInitialReplication" else 3
        if t.mode == "Replica" and t.state == "WaitingForInitialReplication":
            return 1
        return 0
    if op is Operation.TEST_FAILOVER:
        t = _given(t)
        if not t.test_vm:
            return 0
        return 2 if t.test_vm_power not in {None, "Off", "Saved"} else 1
    if op is Operation.TEST_FAILOVER_CLEANUP:
        t = _given(t)
        return 0 if t.test_vm else 1
    if op is Operation.RESYNC:
        s = _given(s)
        waiting = {"WaitingForStartResynchronize", "Suspended", "Error", "ResynchronizeSuspended"}
        return 0 if s.state in waiting else 1
    if op is Operation.STOP_VM:
        t = _given(t)
        return 0 if t.running else 1
    t = _given(t)  # START_VM
    return 1 if t.running else 0


def _given(copy: Copy | None) -> Copy:
    if copy is None:
        raise errors.TransientError("the host holding a copy this job needs does not answer")
    return copy


def settled(op: Operation, source: Copy | None, target: Copy | None) -> bool:
    """Whether the job is over once every step is done: a replication it started has
    finished its initial copy (or resync)."""
    if op is Operation.REVERSE_REPLICATE:
        return source is not None and source.mode == "Primary" and source.state == "Replicating"
    if op is Operation.RESYNC:
        return source is not None and source.state == "Replicating"
    return True
