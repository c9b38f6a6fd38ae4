"""What one `drctl apply` may act on: `--only PLAN[/VM]`, a saved plan's VMs and operations.

`cli.applying` builds a Scope and `execute.apply` asks it, for every action
ready to start, whether it is held (`holds`), and which VMs its outcome is
judged on (`covers`). The whole desired state is still planned: a scope
never changes the order a plan keeps (a VM of `--only finance/sql01` still
waits for its dependents, which the scope leaves alone, and says so), it
only keeps actions from starting. Pure.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

from reconciler.core import plan
from reconciler.core.state import Operation


@dataclass(frozen=True)
class Scope:
    """The VMs an apply acts on (None: every one) and, from a saved plan, their operations."""

    plans: frozenset[str] | None = None  # --only PLAN
    vms: frozenset[tuple[str, str]] | None = None  # --only PLAN/VM, or a saved plan's VMs
    # A saved plan: the operations each of its VMs may take on the way it showed.
    operations: Mapping[tuple[str, str], frozenset[Operation]] = field(default_factory=dict)
    why_outside: str = "outside --only"  # what a VM outside the scope is told

    def covers(self, plan_name: str, vm: str) -> bool:
        if self.plans is not None and plan_name in self.plans:
            return True
        if self.vms is not None and (plan_name, vm) in self.vms:
            return True
        return self.plans is None and self.vms is None

    def holds(self, action: plan.Action) -> str | None:
        """Why `action` may not start in this scope; None when it may."""
        moved = [action.vm, *(vm for group in action.plan_groups for vm in group)]
        outside = [vm for vm in dict.fromkeys(moved) if not self.covers(action.plan, vm)]
        if outside:
            return (
                f"{action.operation} of {action.plan}/{action.vm} would move "
                f"{', '.join(outside)}, {self.why_outside}"
            )
        allowed = self.operations.get((action.plan, action.vm))
        if self.operations and allowed is not None and action.operation not in allowed:
            return (
                f"the saved plan did not foresee {action.operation} for {action.plan}/"
                f"{action.vm} (it showed {', '.join(sorted(allowed)) or 'nothing'}): the "
                "fabric or the specs changed its way; run drctl plan --out again and review it"
            )
        return None


def scoped(built: plan.Plan, scope: Scope, held: Mapping[tuple[str, str], str]) -> plan.Plan:
    """`built` as the apply judges it: the VMs of the scope, with the reason of each held action.

    `held` maps (plan, vm) to why its action was held this pass.
    """
    vms = []
    for decided in built.vms:
        if not scope.covers(decided.plan, decided.name):
            continue
        why = held.get((decided.plan, decided.name))
        if why is not None and not decided.converged and decided.action is not None:
            waiting = dataclasses.replace(decided.action, ready=False, waiting_for=("scope",))
            reason = f"{decided.reason} (held: {why})"
            decided = dataclasses.replace(decided, reason=reason, action=waiting)  # noqa: PLW2901
        vms.append(decided)
    kept = {(vp.plan, vp.name) for vp in vms}
    actions = tuple(
        dataclasses.replace(a, ready=False, waiting_for=("scope",)) if (a.plan, a.vm) in held else a
        for a in built.actions
        if (a.plan, a.vm) in kept
    )
    plans = {vp.plan for vp in vms}
    return dataclasses.replace(
        built,
        vms=tuple(vms),
        actions=actions,
        drills={k: v for k, v in built.drills.items() if k in plans},
    )
