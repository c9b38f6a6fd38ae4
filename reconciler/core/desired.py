"""The desired state the planner reads: frozen values, one per plan and per VM.

`spec` builds them from the YAML documents (with every default and policy
resolved); the planner, the executor, metrics and reports read them. Plain
values, no parser: the planner must not depend on how the state was written.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime

DEFAULT_MAX_PARALLEL = 10
# The fabric of plans when the specs declare none: the simulator in the state dir.
EMBEDDED_FABRIC = "embedded"


@dataclass(frozen=True, slots=True)
class DesiredVM:
    """One VM with defaults and policies applied."""

    plan: str
    name: str
    active_site: str
    replication: tuple[str, str] | None  # (source, target); None means off
    allow_data_loss: bool
    group: str | None
    # policy.commit: auto commits once the VM ran at the target commit_after_seconds;
    # manual waits for commitApproved (the failover's job id, or "any").
    commit: str = "auto"
    commit_after_seconds: float = 60.0
    commit_approved: str | None = None
    recovery_point: str = "latest"
    # discardLostWrites: the unplanned failover's job id whose lost writes may be
    # overwritten by the reverse replication.
    discard_lost_writes: str | None = None
    confirm_disable_replication: bool = False
    # The scoped forms of allowDataLoss: away from a site until a time, or for one revision.
    data_loss_window: tuple[str, datetime] | None = None
    data_loss_revision: str | None = None

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
    fabric: str = EMBEDDED_FABRIC  # the Fabric it runs on, resolved across documents
    self_heal: bool = False  # policy.selfHeal: move back what was moved outside drctl
    unordered_failover: bool = False  # policy.unorderedFailover
    reprotect_after_unplanned: str = "wait"  # policy.reprotectAfterUnplanned: wait | auto
    doc: int = 0  # the document's index in its file, to locate problems


@dataclass(frozen=True)
class FabricSpec:
    """One Fabric document: where a plan's VMs are replicated, and how to reach it.

    `settings` holds the kind's own keys as written (references to secrets,
    never secrets); the fabric's provider reads them.
    """

    name: str
    kind: str  # simulator (later asr, hyperv)
    sites: tuple[str, ...]
    settings: Mapping[str, object]
    file: str
    doc: int = 0


@dataclass(frozen=True)
class DesiredState:
    plans: tuple[PlanSpec, ...]
    fabrics: tuple[FabricSpec, ...] = ()

    def fabric_names(self) -> list[str]:
        """Every fabric a plan uses, in the order the plans come."""
        return list(dict.fromkeys(plan.fabric for plan in self.plans))

    def fabrics_in_use(self) -> list[str]:
        """The fabrics to observe: those the plans use, and the embedded one when the
        specs declare none (its VMs are listed as unmanaged even without a plan)."""
        names = self.fabric_names()
        if not self.fabrics and EMBEDDED_FABRIC not in names:
            names.append(EMBEDDED_FABRIC)
        return names

    def fabric(self, name: str) -> FabricSpec | None:
        """The declared Fabric called `name`; None for the embedded simulator."""
        return next((f for f in self.fabrics if f.name == name), None)

    def only(self, fabric: str) -> DesiredState:
        """The plans that run on `fabric`."""
        return DesiredState(
            tuple(p for p in self.plans if p.fabric == fabric),
            tuple(f for f in self.fabrics if f.name == fabric),
        )

    def vms(self) -> Iterator[DesiredVM]:
        for plan in self.plans:
            yield from plan.vms
