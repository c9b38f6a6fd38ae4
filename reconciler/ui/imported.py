"""The specs `drctl import` writes: what a fabric reports now, as RecoveryPlan documents.

`import_specs(observed, request, existing, now)` turns one fabric's
observation into plans whose every VM is where it runs now, replicating the
way it does, with the plan's most common placement in `defaults` and per VM
only what differs (a plan of 500 VMs is a line per VM). With
`Request.recovery_plans` (ASR's) each recovery plan becomes a plan with its
Boot groups in boot order.

A VM whose state is not settled is left out, as a comment saying why: drctl
leaves an unmanaged VM alone. No spec is safe for it: mid-failover, the job
may end at either site, and a spec naming the other site would move it (a
revision made after the move moves it back; one that wants the target
retries a failed failover); failed over but not committed or reprotected, a
spec wanting the new site commits (deleting the recovery points) and
reverses replication, one wanting the old site fails it back. An
unprotected VM is written with `replication: off` and no
`confirmDisableReplication`, so drctl neither enables nor (if someone
protects it later) disables its replication.

What is written is then checked the way `drctl plan` will read it: loaded
with the specs already there, planned against the same observation; a VM
the plan would act on is left out too, with the planner's reason. Pure; called by
`cli.importing`.
"""

from __future__ import annotations

import collections
import dataclasses
import fnmatch
import json
import re
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path

from reconciler.core import plan, spec, state
from reconciler.core.state import FAILOVERS, Operation, ProtectionState
from reconciler.fabric import base

# Jobs that leave a VM's placement undecided until they end.
_UNSETTLING = FAILOVERS | {
    Operation.COMMIT,
    Operation.APPLY_RECOVERY_POINT,
    Operation.STOP_VM,
    Operation.START_VM,
}
_WORD = r"[A-Za-z][A-Za-z0-9._-]*"
_PLAIN = re.compile(rf"{_WORD}(->{_WORD})?")
# Plain words a YAML 1.1 reader takes for something else than a string.
_NOT_PLAIN = frozenset({"y", "yes", "n", "no", "on", "off", "true", "false", "null"})
_FILE_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_WIDTH = 92
GROUP_PREFIX = "boot"
DRCTL_PLAN_PREFIX = "drctl-"  # the recovery plans drctl itself keeps (fabric.asr.recovery_plan)


@dataclasses.dataclass(frozen=True)
class Request:
    """What to import from one fabric."""

    fabric: str
    declared: bool  # a Fabric document names it: the plans say `fabric: NAME`
    plan: str  # the plan of the VMs in no recovery plan
    vms: str | None = None  # a glob of the VM names to import
    recovery_plans: Sequence[base.FabricPlan] | None = None  # ASR's, for --from-recovery-plans
    managed: frozenset[str] = frozenset()  # VMs a plan of the specs already has
    command: str = "drctl import"


@dataclasses.dataclass(frozen=True)
class Entry:
    """A VM written as it is: active site and replication (`off` for none)."""

    name: str
    active: str
    replication: str


@dataclasses.dataclass(frozen=True)
class Aside:
    """A VM left out of the spec (unmanaged), and why."""

    name: str
    why: str


@dataclasses.dataclass(frozen=True)
class ImportedPlan:
    name: str
    sites: tuple[str, ...]
    entries: tuple[Entry, ...]
    aside: tuple[Aside, ...] = ()
    groups: tuple[tuple[str, ...], ...] = ()  # VM names of each boot group, in boot order
    source: str | None = None  # the recovery plan it comes from

    @property
    def file(self) -> str:
        """The file name it is written to: the plan's name, safe as a file name."""
        stem = _FILE_UNSAFE.sub("-", self.name).strip("-.") or "plan"
        return f"{stem}.yaml"


@dataclasses.dataclass(frozen=True)
class Imported:
    plans: tuple[ImportedPlan, ...]
    managed: tuple[str, ...]  # VMs of the fabric already in a plan of the specs: not written
    at: datetime
    request: Request

    def texts(self) -> dict[str, str]:
        """Each plan's file name and text."""
        return {p.file: render(p, self.request, self.at) for p in self.plans}

    def counts(self) -> tuple[int, int]:
        """(VMs written, VMs left out)."""
        return (
            sum(len(p.entries) for p in self.plans),
            sum(len(p.aside) for p in self.plans),
        )


def import_specs(
    observed: state.Observed,
    request: Request,
    existing: Mapping[Path, str],
    now: datetime,
    root: Path = Path(),
) -> Imported:
    """The plans of `observed` that `request` asks for, checked against `existing` specs
    (as if written into `root`, the directory of `existing`'s paths).

    Raises `SpecError` when the result and `existing` do not load together
    (a plan name already taken, say): nothing is then written.
    """
    chosen = {
        name: vm
        for name, vm in sorted(observed.vms.items())
        if request.vms is None or fnmatch.fnmatchcase(name, request.vms)
    }
    doubles = {
        name: same
        for name, same in sorted(observed.duplicates.items())
        if request.vms is None or fnmatch.fnmatchcase(name, request.vms)
    }
    managed = tuple(sorted(n for n in [*chosen, *doubles] if n in request.managed))
    for name in managed:
        chosen.pop(name, None)
        doubles.pop(name, None)
    members = _plan_members(request, [*chosen, *doubles])
    site_names = tuple(observed.sites)
    plans = []
    for name, (source, groups, vms) in members.items():
        written: list[Entry] = []
        aside: list[Aside] = []
        for vm_name in vms:
            if vm_name in doubles:
                aside.append(Aside(vm_name, _duplicate(vm_name, doubles[vm_name])))
                continue
            found = _read_vm(chosen[vm_name])
            if isinstance(found, Entry):
                written.append(found)
            else:
                aside.append(found)
        plans.append(_with_sites(name, written, aside, groups, source, site_names))
    imported = Imported(tuple(plans), managed, observed.at or now, request)
    return _checked(imported, observed, existing, now, root)


def _plan_members(
    request: Request, names: Sequence[str]
) -> dict[str, tuple[str | None, tuple[tuple[str, ...], ...], list[str]]]:
    """Each plan's (recovery plan it comes from, groups, VMs), the VMs in no recovery plan
    in `request.plan`; a VM belongs to the first recovery plan (by name) that has it."""
    wanted = set(names)
    members: dict[str, tuple[str | None, tuple[tuple[str, ...], ...], list[str]]] = {}
    placed: set[str] = set()
    for fabric_plan in request.recovery_plans or ():
        groups = tuple(
            tuple(vm for vm in group if vm in wanted and vm not in placed)
            for group in fabric_plan.groups
        )
        groups = tuple(g for g in groups if g)
        if not groups:
            continue
        name = fabric_plan.name.removeprefix(DRCTL_PLAN_PREFIX) or fabric_plan.name
        vms = [vm for g in groups for vm in g]
        placed.update(vms)
        members[name] = (fabric_plan.name, groups, vms)
    rest = [n for n in names if n not in placed]
    if rest:
        if request.plan in members:
            members[request.plan][2].extend(rest)
        else:
            members[request.plan] = (None, (), rest)
    return members


def _read_vm(o: state.ObservedVM) -> Entry | Aside:
    """The VM as a spec entry when its state is settled, else why it is left out."""
    if not _writable(o.name):
        return Aside(
            o.name,
            "its name cannot be a VM name in a spec (spaces at an end, or a "
            "character that does not print): rename it in the fabric",
        )
    job = o.job
    if job is not None and job.running and job.operation in _UNSETTLING:
        where = f" to {job.target_site}" if job.target_site else ""
        what = "mid-failover" if job.operation in FAILOVERS else "busy"
        return Aside(
            o.name,
            f"{what}: {job.operation}{where} runs (job {job.id}, {job.state}); it may end at "
            "either site, and a spec naming the other one would move it",
        )
    if o.protection_state is ProtectionState.UNKNOWN:
        return Aside(
            o.name,
            f"the fabric reports protection state {o.raw_state!r}, which drctl does not know",
        )
    if o.protection_state is ProtectionState.COMMIT_PENDING:
        return Aside(
            o.name,
            f"mid-failover: failed over to {o.active_site} (job {o.last_failover_job}), not "
            "committed; a spec wanting it there would commit it (deleting its recovery "
            "points), one wanting it back would fail it back: decide in the fabric first",
        )
    if o.protection_state is ProtectionState.COMMITTED:
        return Aside(
            o.name,
            f"mid-failover: its failover to {o.active_site} (job {o.last_failover_job}) is "
            "committed and replication is not reversed yet; a spec wanting it there would "
            "reverse replication over the old copy",
        )
    elsewhere = [s for s in o.maybe_running if s != o.active_site]
    if elsewhere:
        return Aside(
            o.name,
            f"copies run (or may run) at {o.active_site} and {', '.join(elsewhere)}: stop the "
            "one that must not run, in the fabric, after saving what it holds",
        )
    rep = o.replication
    if rep is None:
        return Entry(o.name, o.active_site, "off")
    if rep.source != o.active_site:
        return Aside(
            o.name,
            f"replication flows {rep.direction} while it is active at {o.active_site}: check "
            "replication in the fabric",
        )
    return Entry(o.name, o.active_site, rep.direction)


def _writable(name: str) -> bool:
    return 0 < len(name) <= spec.schema.MAX_NAME and name == name.strip() and name.isprintable()


def _duplicate(name: str, same: Sequence[state.ObservedVM]) -> str:
    ids = ", ".join(vm.vm_id or "?" for vm in same)
    return (
        f"{len(same)} VMs of the fabric report the name {name} (ids {ids}): add the one you "
        "mean with `asrItem: <id>`, or rename the others in the fabric"
    )


def _with_sites(
    name: str,
    written: list[Entry],
    aside: list[Aside],
    groups: tuple[tuple[str, ...], ...],
    source: str | None,
    fabric_sites: Sequence[str],
) -> ImportedPlan:
    """The plan on the two sites most of its VMs use; a VM on others is left out."""
    used: collections.Counter[str] = collections.Counter()
    for e in written:
        used.update(_sites_of(e))
    pair = [site for site, _ in used.most_common(2)]
    for site in fabric_sites:
        if len(pair) < 2 and site not in pair:
            pair.append(site)
    kept = []
    for e in written:
        if _sites_of(e) <= set(pair):
            kept.append(e)
        else:
            aside.append(
                Aside(
                    e.name,
                    f"it runs at {e.active} and replicates {e.replication}, not between this "
                    f"plan's sites {' and '.join(pair)}: import it into a plan of its own "
                    "(--vms, --plan)",
                )
            )
    order = {site: i for i, site in enumerate(fabric_sites)}
    sites = tuple(sorted(pair, key=lambda s: (order.get(s, len(order)), s)))
    return ImportedPlan(name, sites, tuple(kept), tuple(aside), groups, source)


def _sites_of(e: Entry) -> set[str]:
    found = {e.active}
    if e.replication != "off":
        found.update(e.replication.split("->"))
    return found


def _checked(
    imported: Imported,
    observed: state.Observed,
    existing: Mapping[Path, str],
    now: datetime,
    root: Path,
) -> Imported:
    """`imported` with every VM the plan would act on left out, saying what it would do.

    Each round leaves out at least one VM, so it ends; what is left out can
    change what the others wait for, so the plan is made again until no VM
    of the imported plans has an action.
    """
    while True:
        texts = {root / name: text for name, text in imported.texts().items()}
        desired = spec.load_files({**existing, **texts})
        built = plan.build_plans(desired, {imported.request.fabric: observed}, now)
        ours = {p.name for p in imported.plans}
        acting = {vp.name: vp.reason for vp in built.vms if vp.plan in ours and vp.action}
        if not acting:
            return imported
        plans = tuple(
            dataclasses.replace(
                p,
                entries=tuple(e for e in p.entries if e.name not in acting),
                aside=p.aside
                + tuple(
                    Aside(e.name, f"drctl would act on it now: {acting[e.name]}")
                    for e in p.entries
                    if e.name in acting
                ),
            )
            for p in imported.plans
        )
        imported = dataclasses.replace(imported, plans=plans)


# --- the text ------------------------------------------------------------------------------


def render(p: ImportedPlan, request: Request, at: datetime) -> str:
    """One plan as a spec file: comments, then the document, in the spec's flow style."""
    head = [
        (
            f"Imported by `{request.command}` at {at.isoformat(timespec='seconds')}: where "
            f"each VM of fabric '{request.fabric}' runs and which way it replicates then, so "
            "that `drctl plan` proposes nothing. Review it, commit it, then start drctl with "
            "`drctl run --adopt-safely`."
        ),
    ]
    if p.source is not None:
        head.append(f"From the recovery plan '{p.source}': its Boot groups, in boot order.")
    if p.aside:
        some = f"{len(p.aside)} VM{'s are' if len(p.aside) > 1 else ' is'}"
        head.append(
            f"{some} left out (unmanaged: drctl leaves it alone): see the comments at the end "
            "of spec.vms."
        )
    lines = [f"# {line}" for text in head for line in _wrap(text, _WIDTH - 2)]
    defaults = _defaults(p.entries)
    lines += [
        f"apiVersion: {spec.API_VERSION}",
        f"kind: {spec.KIND}",
        f"metadata: {{name: {_scalar(p.name)}}}",
        "spec:",
    ]
    if request.declared:
        lines.append(f"  fabric: {_scalar(request.fabric)}")
    lines.append(f"  sites: [{', '.join(_scalar(s) for s in p.sites)}]")
    if defaults is not None:
        active, replication = _scalar(defaults[0]), _replication(defaults[1])
        lines.append(f"  defaults: {{activeSite: {active}, replication: {replication}}}")
    lines += _groups(p)
    lines += _vms(p, defaults)
    return "\n".join(lines) + "\n"


def _defaults(entries: Sequence[Entry]) -> tuple[str, str] | None:
    """The most common placement with replication on (ties: the first in name order)."""
    counted = collections.Counter(
        (e.active, e.replication) for e in entries if e.replication != "off"
    )
    if not counted:
        return None
    return counted.most_common(1)[0][0]


def _groups(p: ImportedPlan) -> list[str]:
    kept = {e.name for e in p.entries}
    groups = [tuple(vm for vm in g if vm in kept) for g in p.groups]
    lines: list[str] = []
    previous = None
    number = 0
    for group in groups:
        if not group:
            continue
        number += 1
        name = f"{GROUP_PREFIX}{number}"
        after = "" if previous is None else f", after: [{previous}]"
        lines.append(f"    - {{name: {name}{after}, vms: [{', '.join(map(_scalar, group))}]}}")
        previous = name
    return ["  groups:", *lines] if lines else []


def _vms(p: ImportedPlan, defaults: tuple[str, str] | None) -> list[str]:
    lines = ["  vms:"] if p.entries else ["  vms: []"]
    for e in p.entries:
        if e.replication == "off":
            lines += [f"    # {line}" for line in _wrap(_unprotected(e, p.sites), _WIDTH - 6)]
        lines.append(f"    - {_entry(e, defaults)}")
    for a in p.aside:
        group = next((i for i, g in enumerate(p.groups, 1) if a.name in g), None)
        where = "" if group is None else f" (Boot group {group} of the recovery plan)"
        text = (
            f"{a.name} is left out, so that drctl leaves it alone: {a.why}. Add it{where} "
            f"once it is settled (`drctl import --vms {a.name}` shows it then)."
        )
        lines += [f"    # {line}" for line in _wrap(text, _WIDTH - 6)]
        lines.append(f"    # - name: {_scalar(a.name)}")
    return lines


def _unprotected(e: Entry, sites: Sequence[str]) -> str:
    other = next((s for s in sites if s != e.active), "<other site>")
    return (
        f"unprotected: {e.name} runs at {e.active} with no replication. `replication: off` "
        "keeps it so: drctl enables nothing, and never disables a replication someone sets "
        "up later (that needs `confirmDisableReplication: true`; drctl validate warns "
        f"that it is missing). Commit `replication: {e.active}->{other}` to protect it."
    )


def _entry(e: Entry, defaults: tuple[str, str] | None) -> str:
    name = _scalar(e.name)
    if defaults is not None and (e.active, e.replication) == defaults:
        return f"name: {name}"
    fields = [f"name: {name}"]
    if defaults is None or e.active != defaults[0]:
        fields.append(f"activeSite: {_scalar(e.active)}")
    fields.append(f"replication: {_replication(e.replication)}")
    return "{" + ", ".join(fields) + "}"


def _scalar(text: str) -> str:
    """`text` as a YAML scalar every reader reads as this string: plain when it can be."""
    if _PLAIN.fullmatch(text) and text.lower() not in _NOT_PLAIN:
        return text
    return json.dumps(text, ensure_ascii=False)


def _replication(text: str) -> str:
    """Plain `off`: drctl reads it as replication off whichever way a YAML reader takes it."""
    return text if text == "off" else _scalar(text)


def _wrap(text: str, width: int) -> Iterable[str]:
    return textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False)
