"""Resolution: from validated documents to the desired values, and the rules across fields.

`PlanResolver` applies a plan's defaults and policies to each VM and checks
what spans fields (sites, replication direction, groups and their order).
`check_unique_across_plans` and `resolve_fabrics` check what spans documents
and files: a plan or VM name in two plans, a plan's fabric and its sites.
Called by `spec`; pure.
"""

from __future__ import annotations

import dataclasses
import graphlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.core.desired import (
    DEFAULT_MAX_PARALLEL,
    EMBEDDED_FABRIC,
    DesiredVM,
    FabricSpec,
    Group,
    PlanSpec,
)
from reconciler.core.spec.schema import (
    Defaults,
    DocPath,
    GroupEntry,
    PlanDocument,
    VMEntry,
    parse_replication,
)


@dataclass(frozen=True)
class Issue:
    """A problem found before its line is known."""

    file: Path
    doc: int
    path: DocPath
    message: str
    line: int | None = None


_NOT_GIVEN = "not given"


class PlanResolver:
    """Applies defaults and policies to one document; checks rules that span fields."""

    def __init__(self, model: PlanDocument, file: Path, doc: int) -> None:
        self.model = model
        self.file = file
        self.doc = doc
        self.issues: list[Issue] = []
        self.sites: tuple[str, str] = ("", "")

    def problem(self, path: DocPath, message: str) -> None:
        self.issues.append(Issue(self.file, self.doc, ("spec", *path), message))

    def resolve(self) -> PlanSpec | None:
        body = self.model.spec
        name = self.model.metadata.name
        if len(body.sites) != 2 or body.sites[0] == body.sites[1]:
            self.problem(
                ("sites",),
                f"sites must name exactly two different sites, e.g. [ams, rtm]; found {body.sites}",
            )
            return None
        self.sites = (body.sites[0], body.sites[1])
        default_site, default_replication = self._defaults(body.defaults)
        plan_data_loss = bool(body.policy.allow_data_loss)
        names = {vm.name for vm in body.vms}
        group_of = self._groups(body.groups, names) if body.groups else {}
        # What an entry that gives only its name resolves to (most entries of
        # a large plan): worked out once, not once per entry.
        inherited: tuple[str, tuple[str, str] | None] | None = None  # (site, replication)
        if default_site is not None:
            inherited = (default_site, default_replication)
            if default_replication == _NOT_GIVEN:
                inherited = (default_site, (default_site, self._other_site(default_site)))
        vms: list[DesiredVM] = []
        # Entry by name, kept only when some name repeats: reported per entry.
        seen: dict[str, int] | None = {} if len(names) < len(body.vms) else None
        for i, vm in enumerate(body.vms):
            if seen is not None:
                if vm.name in seen:
                    self.problem(
                        ("vms", i, "name"),
                        f"VM '{vm.name}' is listed twice in plan "
                        f"'{name}' (also entry {seen[vm.name] + 1}): remove one",
                    )
                    continue
                seen[vm.name] = i
            if (
                inherited is not None
                and vm.active_site is None
                and vm.replication is None
                and vm.policy is None
            ):
                vms.append(
                    DesiredVM(
                        name,
                        vm.name,
                        inherited[0],
                        inherited[1],
                        plan_data_loss,
                        group_of.get(vm.name),
                    )
                )
                continue
            site = vm.active_site if vm.active_site is not None else default_site
            if site is None:
                self.problem(
                    ("vms", i),
                    f"VM '{vm.name}' has no activeSite: set activeSite "
                    "on the VM or spec.defaults.activeSite",
                )
                continue
            if vm.active_site is not None and not self._site_ok(("vms", i, "activeSite"), site):
                continue
            replication = self._vm_replication(i, vm, site, default_replication)
            if isinstance(replication, str):  # _NOT_GIVEN: a problem was recorded
                continue
            allow = plan_data_loss
            if vm.policy is not None and vm.policy.allow_data_loss is not None:
                allow = vm.policy.allow_data_loss
            vms.append(DesiredVM(name, vm.name, site, replication, allow, group_of.get(vm.name)))
        if self.issues:
            return None
        return PlanSpec(
            name=name,
            file=str(self.file),
            sites=self.sites,
            allow_data_loss=plan_data_loss,
            max_parallel=body.policy.max_parallel or DEFAULT_MAX_PARALLEL,
            groups=tuple(Group(g.name, tuple(g.after), tuple(g.vms)) for g in body.groups),
            vms=tuple(vms),
            settle_seconds=body.policy.settle_seconds or 0.0,
            fabric=body.fabric or "",
            doc=self.doc,
        )

    def _other_site(self, site: str) -> str:
        return self.sites[1] if site == self.sites[0] else self.sites[0]

    def _site_ok(self, path: DocPath, site: str, what: str = "activeSite") -> bool:
        if site in self.sites:
            return True
        self.problem(path, f"{what} '{site}' is not one of the plan's sites {list(self.sites)}")
        return False

    def _defaults(self, defaults: Defaults) -> tuple[str | None, Any]:
        site = defaults.active_site
        if site is not None:
            self._site_ok(("defaults", "activeSite"), site)
        if defaults.replication is None:
            return site, _NOT_GIVEN
        path: DocPath = ("defaults", "replication")
        replication = parse_replication(defaults.replication)
        if isinstance(replication, str):
            self.problem(path, replication)
            return site, _NOT_GIVEN
        if replication is not None and site is not None:
            self._replication_ok(path, replication, site, "the default")
        return site, replication

    def _vm_replication(
        self, i: int, vm: VMEntry, site: str, default: Any
    ) -> tuple[str, str] | str | None:
        """The VM's replication pair, None for off, or _NOT_GIVEN after a problem."""
        if vm.replication is not None:
            path: DocPath = ("vms", i, "replication")
            replication = parse_replication(vm.replication)
            if isinstance(replication, str):
                self.problem(path, replication)
                return _NOT_GIVEN
        elif default == _NOT_GIVEN:
            return (site, self._other_site(site))
        else:
            # An inherited default only conflicts when the VM moved its activeSite.
            path = ("vms", i)
            replication = default
            if vm.active_site is None:
                return replication  # type: ignore[no-any-return]
        if replication is not None and not self._replication_ok(
            path, replication, site, f"VM '{vm.name}'"
        ):
            return _NOT_GIVEN
        return replication

    def _replication_ok(
        self, path: DocPath, replication: tuple[str, str], active_site: str, who: str
    ) -> bool:
        source, target = replication
        for site in (source, target):
            if not self._site_ok(path, site, "replication site"):
                return False
        if source == target:
            self.problem(path, f"replication {source}->{target} must go from one site to the other")
            return False
        if source != active_site:
            other = self.sites[1] if active_site == self.sites[0] else self.sites[0]
            self.problem(
                path,
                f"replication {source}->{target} must start at the active site: "
                f"{who} runs at '{active_site}', so write {active_site}->{other} "
                "or change activeSite",
            )
            return False
        return True

    def _groups(self, groups: list[GroupEntry], known_vms: set[str]) -> dict[str, str]:
        """Check group references and `after` cycles; return each VM's group."""
        index: dict[str, int] = {}
        for gi, group in enumerate(groups):
            if group.name in index:
                self.problem(
                    ("groups", gi, "name"), f"group '{group.name}' is defined twice: rename one"
                )
            index.setdefault(group.name, gi)
        group_of: dict[str, str] = {}
        for gi, group in enumerate(groups):
            for vi, vm in enumerate(group.vms):
                if vm not in known_vms:
                    self.problem(
                        ("groups", gi, "vms", vi),
                        f"group '{group.name}' names VM "
                        f"'{vm}', which is not in spec.vms: add the VM or remove it "
                        "from the group",
                    )
                elif vm in group_of:
                    self.problem(
                        ("groups", gi, "vms", vi),
                        f"VM '{vm}' is in groups "
                        f"'{group_of[vm]}' and '{group.name}': a VM belongs to one group",
                    )
                else:
                    group_of[vm] = group.name
            for ai, after in enumerate(group.after):
                if after not in index:
                    self.problem(
                        ("groups", gi, "after", ai),
                        f"group '{group.name}' comes "
                        f"after unknown group '{after}': known groups are "
                        f"{sorted(index)}",
                    )
        graph = {g.name: [a for a in g.after if a in index] for g in groups}
        try:
            graphlib.TopologicalSorter(graph).prepare()
        except graphlib.CycleError as exc:
            cycle: list[str] = list(reversed(exc.args[1]))
            self.problem(
                ("groups", index[cycle[0]], "after"),
                "groups form a cycle in "
                f"'after': {' -> '.join(cycle)}; remove one of these 'after' entries",
            )
        return group_of


def check_unique_across_plans(plans: Sequence[PlanSpec]) -> list[Issue]:
    """A plan name and a VM name each belong to one plan in the whole directory."""
    issues: list[Issue] = []
    plan_at: dict[str, PlanSpec] = {}
    vm_at: dict[str, PlanSpec] = {}
    for plan in plans:
        if plan.name in plan_at:
            first = plan_at[plan.name]
            issues.append(
                Issue(
                    Path(plan.file),
                    plan.doc,
                    ("metadata", "name"),
                    f"plan '{plan.name}' is also defined in {first.file}: "
                    "plan names must be unique, rename one",
                )
            )
            continue
        plan_at[plan.name] = plan
        fresh = dict.fromkeys((vm.name for vm in plan.vms), plan)
        if len(fresh) == len(plan.vms) and fresh.keys().isdisjoint(vm_at):
            vm_at.update(fresh)  # the usual case: no name clashes, checked as sets
            continue
        # A plan resolves only when every entry is valid, so the index of a
        # resolved VM is the index of its entry in the file.
        for i, vm in enumerate(plan.vms):
            if vm.name in vm_at:
                other = vm_at[vm.name]
                issues.append(
                    Issue(
                        Path(plan.file),
                        plan.doc,
                        ("spec", "vms", i, "name"),
                        f"VM '{vm.name}' is already in plan '{other.name}' "
                        f"({other.file}): a VM belongs to one plan, remove one",
                    )
                )
            else:
                vm_at[vm.name] = plan
    return issues


def resolve_fabrics(
    plans: Sequence[PlanSpec], fabrics: Sequence[FabricSpec]
) -> tuple[list[PlanSpec], list[Issue]]:
    """Each plan with the fabric it runs on, and what is wrong with the fabrics named.

    A plan names its fabric with `spec.fabric`; it may leave it out when the
    specs declare exactly one Fabric (that one) or none (the embedded simulator).
    """
    issues: list[Issue] = []
    by_name: dict[str, FabricSpec] = {}
    for fabric in fabrics:
        where = (Path(fabric.file), fabric.doc, ("metadata", "name"))
        if fabric.name == EMBEDDED_FABRIC:
            issues.append(
                Issue(
                    *where,
                    f"'{EMBEDDED_FABRIC}' is the name of the simulator in the state "
                    "dir that plans use when no Fabric is declared: choose another name",
                )
            )
        elif fabric.name in by_name:
            issues.append(
                Issue(
                    *where,
                    f"fabric '{fabric.name}' is also defined in "
                    f"{by_name[fabric.name].file}: fabric names must be unique, rename one",
                )
            )
        else:
            by_name[fabric.name] = fabric
    declared = sorted(by_name)
    resolved: list[PlanSpec] = []
    for plan in plans:
        file = Path(plan.file)
        name = plan.fabric
        if not name:
            if len(fabrics) > 1:
                issues.append(
                    Issue(
                        file,
                        plan.doc,
                        ("spec",),
                        f"plan '{plan.name}' does not say which "
                        f"fabric it runs on and the specs declare {len(declared)} "
                        f"({', '.join(declared)}): add spec.fabric",
                    )
                )
                continue
            name = fabrics[0].name if fabrics else EMBEDDED_FABRIC
        found = by_name.get(name)
        if found is None and (name != EMBEDDED_FABRIC or fabrics):
            known = (
                f"the specs declare {', '.join(declared)}"
                if declared
                else (
                    "the specs declare no Fabric: remove spec.fabric to use the embedded "
                    "simulator, or add a Fabric document"
                )
            )
            issues.append(
                Issue(
                    file,
                    plan.doc,
                    ("spec", "fabric"),
                    f"plan '{plan.name}' runs on fabric '{name}', which no Fabric document "
                    f"declares: {known}",
                )
            )
            continue
        if found is not None:
            for i, site in enumerate(plan.sites):
                if site not in found.sites:
                    issues.append(
                        Issue(
                            file,
                            plan.doc,
                            ("spec", "sites", i),
                            f"site '{site}' of plan '{plan.name}' is not a site of fabric "
                            f"'{found.name}' ({', '.join(found.sites)}): declare it in "
                            f"{found.file} or use one of those",
                        )
                    )
        resolved.append(plan if plan.fabric == name else dataclasses.replace(plan, fabric=name))
    return resolved, issues
