"""ASR's Hyper-V-to-Azure scenario: what the planner never asks of a VM active in Azure.

A VM active in Azure (a site the fabric reports `Site.azure`) replicates
nowhere, and its one way back is a planned failover (ASR's Failback) after
the commit in Azure; then a commit at the Hyper-V site and a reprotect
towards Azure (`core.lifecycle`). So a spec that asks replication from Azure
is refused before anything moves, with what to commit instead, and a VM that
must leave Azure fails back planned, or waits for its Hyper-V site: there is
no unplanned failover out of Azure to consent to. Called by
`decide.PlanContext`; pure.
"""

from __future__ import annotations

from reconciler.core import state
from reconciler.core.desired import DesiredVM
from reconciler.core.plan import context, hold
from reconciler.core.plan.model import Phase, VMPlan
from reconciler.core.state import Operation


def azure_sites(observed: state.Observed) -> frozenset[str]:
    """The sites the fabric reports as the Azure side (none outside Hyper-V to Azure)."""
    return frozenset(name for name, site in observed.sites.items() if site.azure)


def replication_from_azure(
    ctx: context.PlanContext, vm: DesiredVM, o: state.ObservedVM | None
) -> VMPlan:
    """Blocked: the spec asks `vm` to replicate from Azure, which ASR never does."""
    assert vm.replication is not None  # noqa: S101 (the caller's test)
    source, target = vm.replication
    if vm.active_site == source:
        instead = (
            f"commit `replication: off` for it while it runs in {source}, or "
            f"`activeSite: {target}` with `replication: {target}->{source}` to fail it back"
        )
    else:
        instead = f"commit `replication: {vm.active_site}->{source}` (or off)"
    return ctx.result(
        vm,
        o,
        Phase.BLOCKED,
        f"the spec asks replication {source}->{target}, but {source} is Azure and a VM "
        f"active in Azure does not replicate back to {target} until it fails back "
        f"(Hyper-V to Azure): {instead}; nothing of {vm.name} moves until then",
    )


def decide_failback(
    ctx: context.PlanContext, vm: DesiredVM, o: state.ObservedVM, source: str, target: str
) -> VMPlan:
    """The way out of Azure for a VM committed there: a planned failover to `target`."""
    move = f"failing back from Azure ({source}) to {target}"
    if not ctx.observed.site_connected(target):
        consented = ctx.consent(vm, source)[0]
        return ctx.result(
            vm,
            o,
            Phase.WAITING_FOR_SITE,
            f"{move}: the failback is a planned failover and needs {target} connected; from "
            "Azure there is no unplanned failover"
            + (", so allowDataLoss does not apply" if consented else "")
            + f": waiting for {target} to return",
        )
    # The failback overwrites the copy at the Hyper-V site, as a reprotect would.
    held = hold.lost_writes(ctx, vm, o, target)
    if held is not None:
        return held
    return ctx.act(
        vm,
        o,
        Phase.FAILING_OVER,
        f"{move}: planned failover (ASR's Failback: it ships what changed in Azure, "
        f"then boots the VM at {target}; no data loss)",
        Operation.PLANNED_FAILOVER,
        target,
        waiting_for=ctx.waiting_predecessors(vm, "target"),
        stage=ctx.stage(vm),
    )
