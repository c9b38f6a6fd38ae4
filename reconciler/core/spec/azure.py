"""What `drctl validate` can tell of a Hyper-V-to-Azure fabric from the spec alone.

A plan whose fabric declares a site `azure: {}` (ASR, Hyper-V site to Azure)
asks for what the scenario lacks when a VM replicates from Azure (a VM active
in Azure replicates nowhere until it fails back) or consents to lose writes
failing over from Azure (from Azure there is only a planned failback). Both
are warnings, each once per plan at the first VM entry concerned: the spec
stays in force and the planner refuses the move with the same reason
(`core.plan.azure`). `replication: off` for a VM active in Azure is what
the scenario does, so the warning that off removes the return path is
dropped for it. Called by `spec.load_files` once the fabrics are resolved; pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from reconciler.core.desired import FabricSpec, PlanSpec
from reconciler.core.spec.resolve import Issue
from reconciler.core.spec.schema import DocPath

# Where a warning is kept before its line is known: (file, document, path).
Where = tuple[Path, int, DocPath]


def azure_site(fabric: FabricSpec) -> str | None:
    """The site of an asr Fabric declared `azure: {}`, if any."""
    sites = fabric.settings.get("sites") if fabric.kind == "asr" else None
    if not isinstance(sites, dict):
        return None
    return next((name for name, site in sites.items() if "azure" in site), None)


def check_plans(
    plans: Sequence[PlanSpec], fabrics: Sequence[FabricSpec]
) -> tuple[list[Issue], set[Where]]:
    """The warnings of plans on Hyper-V-to-Azure fabrics, and where the warning that
    `replication: off` removes the return path does not hold (a VM active in Azure)."""
    azure_of = {f.name: site for f in fabrics if (site := azure_site(f)) is not None}
    warnings: list[Issue] = []
    quiet: set[Where] = set()
    for plan in plans:
        site = azure_of.get(plan.fabric)
        if site is None or site not in plan.sites:
            continue
        other = plan.sites[0] if plan.sites[1] == site else plan.sites[1]
        file = Path(plan.file)
        vms = tuple(enumerate(plan.vms))
        replicating = [i for i, vm in vms if vm.replication and vm.replication[0] == site]
        if replicating:
            warnings.append(
                Issue(
                    file,
                    plan.doc,
                    ("spec", "vms", replicating[0], "name"),
                    f"{_vms(plan, replicating)} of plan '{plan.name}' ask replication "
                    f"{site}->{other}, but {site} is Azure (fabric '{plan.fabric}'): a VM "
                    f"active in Azure does not replicate back to {other} until it fails back; "
                    f"commit `replication: off` for VMs active in {site}, or `activeSite: "
                    f"{other}` with `replication: {other}->{site}` to fail them back",
                )
            )
        consenting = [i for i, vm in vms if vm.data_loss_window and vm.data_loss_window[0] == site]
        if consenting:
            warnings.append(
                Issue(
                    file,
                    plan.doc,
                    ("spec", "vms", consenting[0], "name"),
                    f"{_vms(plan, consenting)} of plan '{plan.name}' have allowDataLoss from "
                    f"{site}, which is Azure: from Azure there is no unplanned failover, only the "
                    f"planned failback to {other}, which loses nothing; this consent is never used",
                )
            )
        # Entries resolve in order: a VM's index in `plan.vms` is its entry's.
        off = [i for i, vm in vms if vm.replication is None and vm.active_site == site]
        quiet.update((file, plan.doc, ("spec", "vms", i, "replication")) for i in off)
        unconfirmed = [
            i for i, vm in vms if vm.replication is None and not vm.confirm_disable_replication
        ]
        if set(unconfirmed) <= set(off):
            quiet.add((file, plan.doc, ("spec", "defaults", "replication")))
    return warnings, quiet


def _vms(plan: PlanSpec, entries: list[int]) -> str:
    """The VMs of `entries` as a warning names them: the first five, then how many more."""
    names = [plan.vms[i].name for i in entries]
    if len(names) == 1:
        return f"VM {names[0]}"
    more = f" and {len(names) - 5} more" if len(names) > 5 else ""
    return f"VMs {', '.join(names[:5])}{more}"
