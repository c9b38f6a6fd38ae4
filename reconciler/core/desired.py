"""The desired state the planner reads: frozen values, one per plan and per VM.

`spec` builds them from the YAML documents (with every default and policy
resolved); the planner, the executor, metrics and reports read them. Plain
values, no parser: the planner must not depend on how the state was written.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from reconciler.core.state import Operation
from reconciler.errors import SpecProblem

DEFAULT_MAX_PARALLEL = 10
# The fabric of plans when the specs declare none: the simulator in the state dir.
EMBEDDED_FABRIC = "embedded"


class DesiredVM(NamedTuple):
    """One VM with defaults and policies applied.

    A NamedTuple, not a frozen dataclass: a 100k-VM plan builds 100k of them
    on every load, and a frozen dataclass sets each of its 14 fields through
    object.__setattr__ (3x the time of the tuple). Change one with `_replace`.
    """

    plan: str
    name: str
    active_site: str
    replication: tuple[str, str] | None  # (source, target); None means off
    allow_data_loss: bool  # standing consent to lose unreplicated writes
    group: str | None
    commit: str = "auto"  # auto | manual
    commit_after_seconds: float = 60.0  # auto: how long the VM runs at the target first
    commit_approved: str | None = None  # a failover job's id, or "any"
    recovery_point: str = "latest"  # latest | latestAppConsistent | ISO time | point id
    discard_lost_writes: str | None = None  # the failover job whose lost writes may go
    confirm_disable_replication: bool = False  # replication off is meant
    # Consent to one event (allowDataLoss: {from, until} or {revision}); with
    # either, allow_data_loss is False.
    data_loss_window: tuple[str, datetime] | None = None  # (from site, until), until aware
    data_loss_revision: str | None = None  # a git commit id, lower case, 7-40 hex digits
    # The fabric's own id of the VM this entry means (`asrItem`: the protected
    # item's name), when the fabric reports its name more than once.
    vm_id: str | None = None

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


@dataclass(frozen=True, slots=True)
class DrillCheck:
    """A probe of one VM's test copy: TCP connect to `port`, or HTTP GET of `path` on it."""

    vm: str
    port: int
    http_path: str | None = None  # None: a TCP probe
    timeout_seconds: float = 5.0

    @property
    def text(self) -> str:
        kind = "tcp" if self.http_path is None else f"http {self.http_path}"
        return f"{self.vm} {kind} :{self.port}"


@dataclass(frozen=True, slots=True)
class Drill:
    """`spec.drill`: test-fail the plan over, probe the copies, keep them, clean up."""

    id: str
    keep_minutes: float
    network: str | None = None
    checks: tuple[DrillCheck, ...] = ()


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
    doc: int = 0  # the document's index in its file, to locate problems
    self_heal: bool = False  # move VMs moved outside drctl back without a newer revision
    unordered_failover: bool = False  # fail a grouped plan over without the group order
    reprotect_after_unplanned: str = "wait"  # wait | auto
    # policy.deadlines: (operation, seconds) a job may run before it is Stuck.
    deadlines: tuple[tuple[Operation, float], ...] = ()
    max_failovers_per_revision: int | None = None  # policy.maxFailoversPerRevision
    suspend: bool = False  # spec.suspend: start nothing, report drift
    drill: Drill | None = None  # the drill the spec requests (done once per id)


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
    # What is valid but risky (standing consent to data loss, replication off
    # unconfirmed): `drctl validate` prints them, the spec stays in force.
    warnings: tuple[SpecProblem, ...] = ()

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
