"""The desired state the planner reads: frozen values, one per plan and per VM.

`spec` builds them from the YAML documents (with every default and policy
resolved); the planner, the executor, metrics and reports read them. Plain
values, no parser: the planner must not depend on how the state was written.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

DEFAULT_MAX_PARALLEL = 10


@dataclass(frozen=True, slots=True)
class DesiredVM:
    """One VM with defaults and policies applied."""

    plan: str
    name: str
    active_site: str
    replication: tuple[str, str] | None  # (source, target); None means off
    allow_data_loss: bool
    group: str | None

    @property
    def replication_text(self) -> str:
        """Replication as every output writes it: `<from>-><to>` or `off`."""
        if self.replication is None:
            return "off"
        return f"{self.replication[0]}->{self.replication[1]}"


@dataclass(frozen=True, slots=True)
class Group:
    name: str
    after: tuple[str, ...]
    vms: tuple[str, ...]


@dataclass(frozen=True)
class PlanSpec:
    """One RecoveryPlan with every VM resolved."""

    name: str
    file: str
    sites: tuple[str, str]
    allow_data_loss: bool
    max_parallel: int
    groups: tuple[Group, ...]
    vms: tuple[DesiredVM, ...]
    settle_seconds: float = 0.0  # the daemon waits this long after a move before acting


@dataclass(frozen=True)
class DesiredState:
    plans: tuple[PlanSpec, ...]

    def vms(self) -> Iterator[DesiredVM]:
        for plan in self.plans:
            yield from plan.vms
