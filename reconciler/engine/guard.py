"""drctl's hard rules on what it calls, enforced at the last moment before a provider call.

The planner never proposes these operations, and a fabric's allowed
operations do not matter to them: the executor (`engine.execute`) asks
`refusal` for every action just before it calls the provider, so that even
a planner bug cannot issue one. A refused action is recorded in the
journal as refused, with the reason, and emitted as an event; the provider
is never called.
"""

from __future__ import annotations

from reconciler.core.desired import DesiredState
from reconciler.core.plan import Action
from reconciler.core.state import Operation

# Never called, whatever the fabric allows: CancelFailover stops a failover
# half-way and leaves the VM unreplicated (design.md section 1);
# CompleteMigration ends replication for good, and with it the way back.
DENIED = frozenset({Operation.CANCEL_FAILOVER, Operation.COMPLETE_MIGRATION})

# Called only for a VM whose desired state confirms it, on that VM's entry:
# disabling replication removes the return path (on ASR it deletes the
# replicated item) and rebuilding it is a full initial copy.
CONFIRMED_ONLY = frozenset({Operation.DISABLE_REPLICATION})


# Per provider kind: calls a provider makes inside its own multi-step jobs
# (`fabric.base.OwnsJobs`) that are allowed only for the purposes named. On
# Hyper-V Replica `Stop-VMFailover` is the product's undo, not ASR's harmful
# cancel: it cleans up a test failover, or reverts a `-Prepare` drctl issued
# itself and cannot complete; for anything else (cancelling a failover on
# the replica, which discards what ran there) drctl never calls it.
STEP_SCOPES: dict[str, dict[str, frozenset[str]]] = {
    "hyperv": {"Stop-VMFailover": frozenset({"test-cleanup", "revert-own-prepare"})},
}


def step_refusal(kind: str, cmdlet: str | None, purpose: str | None) -> str | None:
    """Why drctl's hard rules forbid a provider of `kind` to make the call `cmdlet` for
    `purpose` inside its own job, or None when they allow it (`engine.step_log`)."""
    allowed = STEP_SCOPES.get(kind, {}).get(cmdlet or "")
    if allowed is None or purpose in allowed:
        return None
    return (
        f"drctl calls {cmdlet} on a {kind} fabric only for {', '.join(sorted(allowed))} "
        f"(drctl's hard rule), not for {purpose or 'an unnamed purpose'}"
    )


def refusal(action: Action, desired: DesiredState) -> str | None:
    """Why drctl's hard rules forbid starting `action`, or None when they allow it.

    DisableReplication is allowed only when the VM's own desired state says
    `replication: off` with `confirmDisableReplication: true`, read from
    `desired` itself, not from what the planner made of it.
    """
    op = action.operation
    if op in DENIED:
        return (
            f"drctl never calls {op}, whatever the fabric allows (drctl's hard rule): "
            "do it in the fabric by hand if it is really meant"
        )
    if op in CONFIRMED_ONLY and not _confirmed(action, desired):
        return (
            f"drctl calls {op} only for a VM whose spec says `confirmDisableReplication: "
            f"true` (drctl's hard rule), and {action.plan}/{action.vm}'s does not"
        )
    return None


def _confirmed(action: Action, desired: DesiredState) -> bool:
    # Rare (a VM whose replication is turned off): a scan, not an index per step.
    for plan in desired.plans:
        if plan.name == action.plan:
            return any(
                vm.name == action.vm and vm.replication is None and vm.confirm_disable_replication
                for vm in plan.vms
            )
    return False
