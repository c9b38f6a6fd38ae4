"""What the modules that decide part of one VM's plan need of `decide.PlanContext`.

`decide.PlanContext` walks a VM to the step that applies and hands itself to
the module that decides that step (`commit`, `failover`, `replication`,
`hold`, and `fallback` once every VM is decided). They type it by this
Protocol, so that none of them imports `decide`, which imports them. Also how
a reason names other VMs, which they all say. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Protocol

from reconciler.core import state
from reconciler.core.desired import DesiredVM, PlanSpec
from reconciler.core.plan.model import Action, Phase, Provenance, VMPlan
from reconciler.core.state import Operation


class PlanContext(Protocol):
    """One RecoveryPlan's decisions, as the step modules see them."""

    plan: PlanSpec
    observed: state.Observed
    now: datetime
    provenance: Provenance | None

    @property
    def rank(self) -> Mapping[str, int]:
        """Each group's place in the boot order."""
        ...

    @property
    def stuck(self) -> list[str]:
        """VMs of the plan that must fail over but cannot now."""
        ...

    def result(
        self,
        vm: DesiredVM,
        o: state.ObservedVM | None,
        phase: Phase,
        reason: str,
        action: Action | None = None,
    ) -> VMPlan: ...

    def act(
        self,
        vm: DesiredVM,
        o: state.ObservedVM,
        phase: Phase,
        reason: str,
        operation: Operation,
        target_site: str | None,
        *,
        waiting_for: list[str] | None = None,
        shutdown_source: bool = False,
        stage: tuple[int, int] = (0, 0),
        recovery_point: str | None = None,
        plan_groups: tuple[tuple[str, ...], ...] = (),
    ) -> VMPlan: ...

    def consent(self, vm: DesiredVM, source: str) -> tuple[bool, str]: ...

    def stage(self, vm: DesiredVM, reverse: bool = False) -> tuple[int, int]: ...

    def waiting_predecessors(self, vm: DesiredVM, check: str) -> list[str]: ...

    def waiting_dependents(self, vm: DesiredVM) -> list[str]: ...


def names_text(names: list[str]) -> str:
    """Other VMs as a reason names them: the first five, then how many more."""
    shown = ", ".join(names[:5])
    return shown if len(names) <= 5 else f"{shown} and {len(names) - 5} more"
