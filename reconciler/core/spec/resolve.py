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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from reconciler.core.desired import (
    DEFAULT_MAX_PARALLEL,
    EMBEDDED_FABRIC,
    DesiredVM,
    Drill,
    DrillCheck,
    FabricSpec,
    Group,
    PlanSpec,
)
from reconciler.core.spec.schema import (
    TIME_EXAMPLE,
    DataLossScope,
    Defaults,
    DocPath,
    GroupEntry,
    PlanDocument,
    VMEntry,
    parse_replication,
    parse_revision,
    parse_time,
    recovery_point_problem,
    shown,
)
from reconciler.core.state import Operation


@dataclass(frozen=True)
class Issue:
    """A problem found before its line is known."""

    file: Path
    doc: int
    path: DocPath
    message: str
    line: int | None = None


_NOT_GIVEN = "not given"

# Consent to data loss as resolved: (standing, (from site, until), revision).
Consent = tuple[bool, tuple[str, datetime] | None, str | None]
_NO_CONSENT: Consent = (False, None, None)

STANDING_CONSENT = (
    "the next outage is pre-approved: drctl may lose unreplicated writes without "
    "asking; prefer allowDataLoss: {from: SITE, until: TIME} for one event"
)
REPLICATION_OFF = (
    "turning replication off removes the return path (on ASR it deletes the "
    "replicated item); add confirmDisableReplication: true beside it if that is meant"
)


@dataclass(frozen=True)
class _Inherited:
    """What a VM entry takes from its plan for each key it does not set."""

    site: str | None
    replication: Any  # (source, target), None for off, or _NOT_GIVEN
    consent: Consent
    commit: str
    commit_after: float
    commit_approved: str | None
    discard: str | None


class PlanResolver:
    """Applies defaults and policies to one document; checks rules that span fields."""

    def __init__(self, model: PlanDocument, file: Path, doc: int) -> None:
        self.model = model
        self.file = file
        self.doc = doc
        self.issues: list[Issue] = []
        # Valid but risky: the spec stays in force, `drctl validate` says why.
        self.warnings: list[Issue] = []
        self.sites: tuple[str, str] = ("", "")
        # Entries that inherit `replication: off` without confirming it: one
        # warning at the default, not one per entry.
        self.unconfirmed_off = 0

    def problem(self, path: DocPath, message: str) -> None:
        self.issues.append(Issue(self.file, self.doc, ("spec", *path), message))

    def warn(self, path: DocPath, message: str) -> None:
        self.warnings.append(Issue(self.file, self.doc, ("spec", *path), message))

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
        plan = self._inherited()
        names = {vm.name for vm in body.vms}
        group_of = self._groups(body.groups, names) if body.groups else {}
        # What an entry that gives only its name resolves to (most entries of
        # a large plan): worked out once, not once per entry.
        fast: tuple[str, tuple[str, str] | None] | None = None  # (site, replication)
        if plan.site is not None:
            fast = (plan.site, plan.replication)
            if plan.replication == _NOT_GIVEN:
                fast = (plan.site, (plan.site, self._other_site(plan.site)))
        off_by_default = fast is not None and fast[1] is None
        # The plan's values as locals: the loop below runs once per VM.
        allow, window, revision = plan.consent
        commit, after = plan.commit, plan.commit_after
        approved, discard = plan.commit_approved, plan.discard
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
            # An entry that sets no key but its name (whichever keys the schema
            # grows) takes everything from the plan.
            if fast is not None and len(vm.model_fields_set) == 1:
                if off_by_default:
                    self.unconfirmed_off += 1
                vms.append(
                    DesiredVM(
                        name,
                        vm.name,
                        fast[0],
                        fast[1],
                        allow,
                        group_of.get(vm.name),
                        commit,
                        after,
                        approved,
                        "latest",
                        discard,
                        False,
                        window,
                        revision,
                    )
                )
                continue
            resolved = self._vm(i, vm, plan, group_of.get(vm.name))
            if resolved is not None:
                vms.append(resolved)
        if self.unconfirmed_off:
            self._warn_off_by_default(self.unconfirmed_off)
        if self.issues:
            return None
        return PlanSpec(
            name=name,
            file=str(self.file),
            sites=self.sites,
            allow_data_loss=plan.consent[0],
            max_parallel=body.policy.max_parallel or DEFAULT_MAX_PARALLEL,
            groups=tuple(Group(g.name, tuple(g.after), tuple(g.vms)) for g in body.groups),
            vms=tuple(vms),
            settle_seconds=body.policy.settle_seconds or 0.0,
            fabric=body.fabric or "",
            doc=self.doc,
            self_heal=bool(body.policy.self_heal),
            unordered_failover=bool(body.policy.unordered_failover),
            reprotect_after_unplanned=body.policy.reprotect_after_unplanned or "wait",
            deadlines=tuple(
                (Operation(op), seconds)
                for op, seconds in (body.policy.deadlines.items() if body.policy.deadlines else ())
            ),
            max_failovers_per_revision=body.policy.max_failovers_per_revision,
            suspend=bool(body.suspend),
            drill=self._drill(names),
        )

    def _drill(self, names: set[str]) -> Drill | None:
        """`spec.drill` as the planner reads it; each check names a VM of the plan."""
        body = self.model.spec.drill
        if body is None:
            return None
        checks = []
        for i, check in enumerate(body.checks):
            if check.vm not in names:
                self.problem(
                    ("drill", "checks", i, "vm"),
                    f"VM '{check.vm}' is not in this plan: check a VM listed in spec.vms",
                )
            if (check.tcp is None) == (check.http is None):
                self.problem(
                    ("drill", "checks", i),
                    "a check is either `tcp: PORT` or `http: {port: PORT, path: /...}`: "
                    "give exactly one",
                )
                continue
            if check.http is not None:
                port, path = check.http.port, check.http.path
            else:
                port, path = check.tcp or 0, None
            checks.append(DrillCheck(check.vm, port, path, check.timeout_seconds))
        return Drill(body.id, body.keep_minutes, body.network, tuple(checks))

    def _inherited(self) -> _Inherited:
        """What a VM takes from the plan's defaults, policy and spec-level keys."""
        body = self.model.spec
        site, replication = self._defaults(body.defaults)
        policy = body.policy
        consent = _NO_CONSENT
        if policy.allow_data_loss is not None:
            consent = self._consent(("policy", "allowDataLoss"), policy.allow_data_loss)
        return _Inherited(
            site=site,
            replication=replication,
            consent=consent,
            commit=policy.commit or "auto",
            commit_after=60.0
            if policy.commit_after_seconds is None
            else policy.commit_after_seconds,
            commit_approved=body.commit_approved,
            discard=self._discard(("discardLostWrites",), body.discard_lost_writes),
        )

    def _vm(self, i: int, vm: VMEntry, plan: _Inherited, group: str | None) -> DesiredVM | None:
        """One entry that sets more than its name; None after a problem."""
        site = vm.active_site if vm.active_site is not None else plan.site
        if site is None:
            self.problem(
                ("vms", i),
                f"VM '{vm.name}' has no activeSite: set activeSite "
                "on the VM or spec.defaults.activeSite",
            )
            return None
        if vm.active_site is not None and not self._site_ok(("vms", i, "activeSite"), site):
            return None
        replication = self._vm_replication(i, vm, site, plan.replication)
        if isinstance(replication, str):  # _NOT_GIVEN: a problem was recorded
            return None
        confirmed = bool(vm.confirm_disable_replication)
        if replication is not None and confirmed:
            self.problem(
                ("vms", i, "confirmDisableReplication"),
                "confirmDisableReplication: true confirms replication: off, but VM "
                f"'{vm.name}' replicates {replication[0]}->{replication[1]}: remove it",
            )
            return None
        if replication is None and not confirmed:
            if vm.replication is not None:
                self.warn(("vms", i, "replication"), REPLICATION_OFF)
            else:
                self.unconfirmed_off += 1
        consent, commit, after = plan.consent, plan.commit, plan.commit_after
        if vm.policy is not None:
            if vm.policy.allow_data_loss is not None:
                path: DocPath = ("vms", i, "policy", "allowDataLoss")
                consent = self._consent(path, vm.policy.allow_data_loss)
            commit = vm.policy.commit or plan.commit
            if vm.policy.commit_after_seconds is not None:
                after = vm.policy.commit_after_seconds
        point = vm.recovery_point or "latest"
        if (why := recovery_point_problem(point)) is not None:
            self.problem(("vms", i, "recoveryPoint"), why)
        discard = plan.discard
        if vm.discard_lost_writes is not None:
            discard = self._discard(("vms", i, "discardLostWrites"), vm.discard_lost_writes)
        return DesiredVM(
            self.model.metadata.name,
            vm.name,
            site,
            replication,
            consent[0],
            group,
            commit,
            after,
            vm.commit_approved or plan.commit_approved,
            point,
            discard,
            confirmed,
            consent[1],
            consent[2],
            vm.asr_item,
        )

    def _consent(self, path: DocPath, given: bool | DataLossScope) -> Consent:
        """Consent to data loss as written at `path`; no consent after a problem."""
        if isinstance(given, bool):
            if given:
                self.warn(path, STANDING_CONSENT)
            return (given, None, None)
        if given.revision is not None:
            if given.site is not None or given.until is not None:
                self.problem(
                    path,
                    "allowDataLoss gives either from and until (one outage) or revision "
                    "(one revision of the spec), not both: keep one",
                )
                return _NO_CONSENT
            revision = parse_revision(given.revision)
            if revision is None:
                self.problem(
                    (*path, "revision"),
                    f"allowDataLoss.revision {shown(given.revision)} is not a git commit id: "
                    "write 7 to 40 hex digits (git log --format=%h prints one)",
                )
                return _NO_CONSENT
            return (False, None, revision)
        if given.site is None or given.until is None:
            if given.site is None and given.until is None:
                wanted = "{from: SITE, until: TIME} or {revision: SHA}"
            elif given.site is None:
                wanted = f"from: SITE beside until (the site it fails over from, {self._either()})"
            else:
                wanted = f"until: TIME beside from (when the consent ends, e.g. {TIME_EXAMPLE})"
            self.problem(path, f"allowDataLoss as a mapping needs {wanted}")
            return _NO_CONSENT
        if not self._site_ok((*path, "from"), given.site, "allowDataLoss.from"):
            return _NO_CONSENT
        until = parse_time(given.until, "allowDataLoss.until")
        if isinstance(until, str):
            self.problem((*path, "until"), until)
            return _NO_CONSENT
        return (False, (given.site, until), None)

    def _discard(self, path: DocPath, job: str | None) -> str | None:
        if job == "any":
            self.problem(
                path,
                "discardLostWrites must name the failover job whose lost writes may be "
                "discarded (drctl status shows its id), not 'any': writes are given up "
                "one failover at a time",
            )
        return job

    def _warn_off_by_default(self, count: int) -> None:
        vms = "1 VM" if count == 1 else f"{count} VMs"
        self.warn(
            ("defaults", "replication"),
            f"replication: off applies to {vms} without confirmDisableReplication: true: "
            "turning replication off removes the return path (on ASR it deletes the "
            "replicated item); add confirmDisableReplication: true to each of those VM "
            "entries if that is meant",
        )

    def _either(self) -> str:
        return f"{self.sites[0]} or {self.sites[1]}"

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
        # Two views: isdisjoint walks the smaller (with a dict it walks the dict, every time).
        if len(fresh) == len(plan.vms) and fresh.keys().isdisjoint(vm_at.keys()):
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


# How `resolve_fabrics` makes a plan that runs on the fabric named (by default a copy).
WithFabric = Callable[[PlanSpec, str], PlanSpec]
# Which entries of a plan name an `asrItem` (by default looked for in its VMs).
ItemsOf = Callable[[PlanSpec], Sequence[int]]


def _copy_with_fabric(plan: PlanSpec, name: str) -> PlanSpec:
    return dataclasses.replace(plan, fabric=name)


def asr_items(plan: PlanSpec) -> tuple[int, ...]:
    """The entries of `plan` that name an `asrItem` (a resolved VM's index is its entry's)."""
    return tuple(i for i, vm in enumerate(plan.vms) if vm.vm_id is not None)


def resolve_fabrics(
    plans: Sequence[PlanSpec],
    fabrics: Sequence[FabricSpec],
    with_fabric: WithFabric = _copy_with_fabric,
    items_of: ItemsOf = asr_items,
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
        issues.extend(_asr_items_problems(plan, found, items_of(plan)))
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
        resolved.append(plan if plan.fabric == name else with_fabric(plan, name))
    return resolved, issues


def _asr_items_problems(
    plan: PlanSpec, fabric: FabricSpec | None, items: Sequence[int]
) -> list[Issue]:
    """`asrItem` on the VMs of a plan that runs on no ASR fabric: it would pick nothing."""
    if not items or (fabric is not None and fabric.kind == "asr"):
        return []
    runs_on = (
        "the embedded simulator (the specs declare no Fabric)"
        if fabric is None
        else f"fabric '{fabric.name}', a {fabric.kind}"
    )
    return [
        Issue(
            Path(plan.file),
            plan.doc,
            ("spec", "vms", i, "asrItem"),
            "asrItem names a protected item of an Azure Site Recovery vault, but plan "
            f"'{plan.name}' runs on {runs_on}, whose VMs are known by name only: remove asrItem",
        )
        for i in items
    ]
