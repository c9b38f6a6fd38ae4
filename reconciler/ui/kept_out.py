"""What `drctl status` shows of a revision the daemon keeps out as not signed as required.

`drctl status` plans the specs as they are on disk; when the daemon on the
same state dir keeps that very revision out (`drctl run
--require-signed-commits`, daemon/trust.py), the VMs it would move are shown
`Blocked`, with why and what to do, instead of the moves the daemon will
not make. Called by the CLI before ui/report.py prints the plan.
"""

from __future__ import annotations

import dataclasses

from reconciler.core import plan
from reconciler.engine import status


def mark_untrusted(
    built: plan.Plan, revision: str, daemon: status.DaemonStatus | None
) -> plan.Plan:
    """`built` with each VM the daemon keeps out of `revision` (and that is not converged
    under it) Blocked, the reason saying why; `built` itself when there is none."""
    untrusted = daemon.untrusted if daemon is not None else None
    if untrusted is None or untrusted.revision != revision or not untrusted.vms:
        return built
    named = set(untrusted.vms)
    kept = daemon.revision_in_force if daemon is not None else None
    reason = vm_reason(untrusted, kept)
    vms = tuple(
        dataclasses.replace(vp, phase=plan.Phase.BLOCKED, reason=reason, action=None)
        if (vp.plan, vp.name) in named and not vp.converged
        else vp
        for vp in built.vms
    )
    blocked = {(vp.plan, vp.name) for vp, was in zip(vms, built.vms, strict=True) if vp is not was}
    actions = tuple(a for a in built.actions if (a.plan, a.vm) not in blocked)
    return dataclasses.replace(built, vms=vms, actions=actions)


def vm_reason(untrusted: status.Untrusted, in_force: str | None) -> str:
    """A kept-out VM's reason: the revision's first reason (the others are in the daemon line)."""
    stays = f"revision {in_force} stays in force" if in_force else "no revision is in force"
    more = len(untrusted.reasons) - 1
    others = f" (and {more} more: see the daemon's lines above)" if more > 0 else ""
    first = untrusted.reasons[0] if untrusted.reasons else "not signed as required"
    return f"not applied, {stays}: {first}{others}"
