"""The desired state from spec texts: RecoveryPlan and Fabric documents, validated.

`load_files(texts)` validates every document of every file's text and
returns a `DesiredState` of frozen values (`core.desired`) with the defaults,
policies and fabrics resolved; or raises `SpecError` listing every problem as
`file:line: what to change`. `load_text` and `combine` do the same one file at
a time (the audit validates files out of git history and caches them);
`load_file` and `combine_files` split `load_files` at the file, so that the
daemon keeps each file's result while its content is unchanged
(`gitops.spec_cache`) and runs only the rules that span files on every load.
Pure: reading the files is `gitops.specdir`'s, which the CLI and the daemon
call; so is pausing the garbage collector around a large load.

Parsing is on the hot path of every reconcile, so the fast path parses with
yaml-rs (Rust, YAML 1.2, rejects duplicate keys) and keeps no line numbers;
`spec.parse` bounds it (size, characters, aliases, nesting). Only when
something is wrong does `spec.locate` parse the offending file a second time
with PyYAML's node API to turn a document path into a line.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic

from reconciler.core.desired import DEFAULT_MAX_PARALLEL, DesiredState, FabricSpec, PlanSpec
from reconciler.core.spec import azure, locate, parse, resolve, schema
from reconciler.core.spec.resolve import Issue
from reconciler.core.spec.schema import (
    API_VERSION,
    FABRIC_KIND,
    KIND,
    SITE_NAME,
    invalid_name,
    is_name,
    parse_replication,
)
from reconciler.errors import SpecError, SpecProblem

__all__ = [
    "API_VERSION",
    "DEFAULT_MAX_PARALLEL",
    "FABRIC_KIND",
    "KIND",
    "SITE_NAME",
    "FileSpecs",
    "Names",
    "combine",
    "combine_files",
    "invalid_name",
    "is_name",
    "load_file",
    "load_files",
    "load_text",
    "parse_replication",
]


def load_files(texts: Mapping[Path, str], unreadable: Sequence[SpecProblem] = ()) -> DesiredState:
    """Validate every document of `texts` (file -> text) as one directory of specs.

    `unreadable` are the problems of the paths that could not be read (a
    broken link, bytes that are not UTF-8), already located: each makes the
    directory invalid as any other problem.
    What is valid but risky comes back located in `DesiredState.warnings`.
    """
    return combine_files([load_file(file, text) for file, text in texts.items()], unreadable)


def load_file(file: Path, text: str) -> FileSpecs:
    """What the text of spec file `file` holds on its own, validated; never raises.

    Depends on nothing but `file` and `text`: `gitops.spec_cache` keeps it
    while the file's content is unchanged, and `combine_files` makes the
    directory of such files what `load_files` would have made of their texts.
    """
    loaded = FileSpecs(file, text)
    docs = parse.documents(file, text, loaded.issues)
    if docs is None:
        return loaded
    for index, doc in enumerate(docs):
        if doc is None:
            continue
        if isinstance(doc, dict) and doc.get("kind") == FABRIC_KIND:
            fabric = _load_fabric(file, index, doc, loaded.issues, loaded.warnings)
            if fabric is not None:
                loaded.fabrics.append(fabric)
            continue
        plan = _load_plan(file, index, doc, loaded.issues, loaded.warnings)
        if plan is not None:
            loaded.plans.append(plan)
    if loaded.warnings:
        loaded.docs = docs
    loaded.items = {id(plan): resolve.asr_items(plan) for plan in loaded.plans}
    return loaded


def combine_files(
    files: Sequence[FileSpecs],
    unreadable: Sequence[SpecProblem] = (),
    names: Names | None = None,
) -> DesiredState:
    """The directory of spec files `files` (from `load_file`, in the directory's order).

    The rules that span files run here, on what each file resolved to: a plan
    or VM name in two plans, fabric names, which fabric each plan runs on.
    Raises `SpecError` with every problem, in- and cross-file, located as
    `load_files` locates them. `names`, when given, counts the names of
    exactly `files`. Changes nothing of `files` but what it keeps in them.
    """
    issues = [issue for loaded in files for issue in loaded.issues]
    plans = [plan for loaded in files for plan in loaded.plans]
    fabrics = [fabric for loaded in files for fabric in loaded.fabrics]
    texts = {loaded.file: loaded.text for loaded in files}
    if names is None or not names.unique():
        issues.extend(resolve.check_unique_across_plans(plans))
    kept = _Kept(files)
    resolved, fabric_issues = resolve.resolve_fabrics(
        plans, fabrics, kept.with_fabric, kept.items_of
    )
    issues.extend(fabric_issues)
    if issues or unreadable:
        raise SpecError([*unreadable, *locate.locate_all(issues, texts)])
    across, quiet = azure.check_plans(resolved, fabrics)
    # Located only now, and only in the files that have any: a valid spec
    # without warnings costs nothing here.
    warnings = [
        warning
        for loaded in files
        if loaded.warnings
        for warning in locate.locate_warnings(
            [w for w in loaded.warnings if (w.file, w.doc, w.path) not in quiet],
            loaded.text,
            loaded.docs,
        )
    ]
    # Rare (a plan of a Hyper-V-to-Azure fabric asking what Azure lacks): the node tree.
    warnings.extend(locate.locate_all(across, texts) if across else [])
    return DesiredState(
        plans=tuple(resolved), fabrics=tuple(fabrics), warnings=tuple(sorted(warnings))
    )


class _Kept:
    """What `resolve_fabrics` asks of each plan, kept by the plan's file: a file unchanged
    since the last load gives the very same plan objects again, and its VMs are not walked."""

    def __init__(self, files: Sequence[FileSpecs]) -> None:
        self._owner = {id(plan): loaded for loaded in files for plan in loaded.plans}

    def with_fabric(self, plan: PlanSpec, name: str) -> PlanSpec:
        kept = self._owner[id(plan)].resolved
        key = (id(plan), name)
        found = kept.get(key)
        if found is None:
            found = kept[key] = dataclasses.replace(plan, fabric=name)
        return found

    def items_of(self, plan: PlanSpec) -> tuple[int, ...]:
        return self._owner[id(plan)].items[id(plan)]


class Names:
    """How often each plan name and VM name is declared in the files added and not removed.

    Kept up to date file by file (`gitops.spec_cache`), it tells `combine_files`
    without a walk of every VM that no name is declared twice, the usual case;
    otherwise the names are checked as `load_files` checks them, for the same messages.
    """

    def __init__(self) -> None:
        self._plans: dict[str, int] = {}
        self._vms: dict[str, int] = {}
        self._twice = 0  # names declared more than once

    def add(self, loaded: FileSpecs) -> None:
        for plan in loaded.plans:
            self._count(self._plans, plan.name, 1)
            for vm in plan.vms:
                self._count(self._vms, vm.name, 1)

    def remove(self, loaded: FileSpecs) -> None:
        for plan in loaded.plans:
            self._count(self._plans, plan.name, -1)
            for vm in plan.vms:
                self._count(self._vms, vm.name, -1)

    def unique(self) -> bool:
        """Whether every plan name and every VM name is declared once."""
        return self._twice == 0

    def _count(self, counts: dict[str, int], name: str, step: int) -> None:
        was = counts.get(name, 0)
        now = was + step
        if now:
            counts[name] = now
        else:
            del counts[name]
        self._twice += (now > 1) - (was > 1)


def load_text(name: str, text: str) -> list[PlanSpec]:
    """Validate one spec file's `text` as if it were the file `name`; no disk access.

    Problems are reported as `name:line: ...`, as `load_files` reports them.
    Rules that span files (a plan or VM name in two files) are `combine`'s.
    Warnings are `load_files`'s: the audit validates, it does not advise.
    """
    loaded = load_file(Path(name), text)
    plans, issues = loaded.plans, list(loaded.issues)
    issues.extend(resolve.check_unique_across_plans(plans))
    if issues:
        raise SpecError(locate.locate_all(issues, {loaded.file: text}))
    return plans


def combine(plans: Sequence[PlanSpec], texts: Mapping[str, str]) -> DesiredState:
    """The desired state of plans from `load_text`; `texts` (name -> text) locate problems.

    Raises `SpecError` when a plan name or a VM name is in two plans.
    """
    issues = resolve.check_unique_across_plans(plans)
    if issues:
        raise SpecError(locate.locate_all(issues, {Path(n): t for n, t in texts.items()}))
    return DesiredState(plans=tuple(plans))


@dataclass
class FileSpecs:
    """What one spec file's text resolved to on its own (`load_file`).

    `issues` are its own problems, not located yet; its documents are kept
    only to locate its warnings. `items` are the entries of each plan (by
    its id) that name an asrItem; `resolved` keeps each plan with the fabric
    `combine_files` resolved it to, by the plan's id and the fabric's name.
    """

    file: Path
    text: str
    plans: list[PlanSpec] = field(default_factory=list)
    fabrics: list[FabricSpec] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)
    docs: list[Any] = field(default_factory=list)
    items: dict[int, tuple[int, ...]] = field(default_factory=dict)
    resolved: dict[tuple[int, str], PlanSpec] = field(default_factory=dict)


def _load_plan(
    file: Path, index: int, doc: Any, issues: list[Issue], warnings: list[Issue]
) -> PlanSpec | None:
    if not isinstance(doc, dict):
        issues.append(
            Issue(
                file,
                index,
                (),
                f"a document must be a {KIND} or {FABRIC_KIND} mapping "
                f"(apiVersion, kind, metadata, spec), not a {type(doc).__name__}"
                + (
                    ": one document holds one plan; separate plans with ---"
                    if isinstance(doc, list)
                    else ""
                ),
            )
        )
        return None
    try:
        model = schema.PlanDocument.model_validate(doc)
    except pydantic.ValidationError as exc:
        issues.extend(
            Issue(file, index, tuple(e["loc"]), schema.explain(e))
            for e in schema.document_errors(exc)
        )
        return None
    resolver = resolve.PlanResolver(model, file, index)
    plan = resolver.resolve()
    issues.extend(resolver.issues)
    warnings.extend(resolver.warnings)
    return plan


def _load_fabric(
    file: Path, index: int, doc: dict[str, Any], issues: list[Issue], warnings: list[Issue]
) -> FabricSpec | None:
    # Secrets first: a literal password must be refused with how to reference
    # it, not reported as an unknown key.
    secrets = [Issue(file, index, path, message) for path, message in schema.secret_values(doc)]
    if secrets:
        issues.extend(secrets)
        return None
    try:
        model = schema.FabricDocument.model_validate(doc)
    except pydantic.ValidationError as exc:
        issues.extend(
            Issue(file, index, tuple(e["loc"]), schema.explain(e, fabric=True))
            for e in exc.errors()
        )
        return None
    kinds = model.kind_keys()
    if len(kinds) != 1:
        issues.append(
            Issue(
                file,
                index,
                ("spec",),
                f"a Fabric declares exactly one kind ({', '.join(schema.FABRIC_KINDS)}), "
                f"found {len(kinds)}" + (f": {', '.join(kinds)}" if kinds else ""),
            )
        )
        return None
    if len(model.spec.sites) != 2:
        issues.append(
            Issue(
                file,
                index,
                ("spec", "sites"),
                f"a Fabric declares exactly two sites, e.g. {{ams: {{}}, rtm: {{}}}}; "
                f"found {len(model.spec.sites)}",
            )
        )
        return None
    site_issues = _site_problems(kinds[0], model.spec.sites)
    if model.spec.hyperv is not None:
        site_issues.extend(_hyperv_problems(model.spec.hyperv))
        if model.spec.hyperv.transport.insecure_skip_verify:
            warnings.append(
                Issue(
                    file,
                    index,
                    ("spec", "hyperv", "transport", "insecureSkipVerify"),
                    "insecureSkipVerify: true turns WinRM certificate validation off: anyone "
                    "on the path can read the credential and drive the hosts; trust the hosts' "
                    "CA with caBundle instead",
                )
            )
    if site_issues:
        issues.extend(Issue(file, index, path, message) for path, message in site_issues)
        return None
    settings = getattr(model.spec, kinds[0]).model_dump(by_alias=True, exclude_none=True)
    if kinds[0] in {"asr", "hyperv"}:
        settings["sites"] = {
            name: site.model_dump(by_alias=True, exclude_none=True)
            for name, site in model.spec.sites.items()
        }
    return FabricSpec(
        name=model.metadata.name,
        kind=kinds[0],
        sites=tuple(model.spec.sites),
        settings=settings,
        file=str(file),
        doc=index,
    )


def _site_problems(
    kind: str, sites: dict[str, schema.FabricSite]
) -> list[tuple[tuple[str | int, ...], str]]:
    """What is wrong with the sites of a Fabric of `kind`: (path, message) each."""
    found: list[tuple[tuple[str | int, ...], str]] = []
    for name, site in sites.items():
        path: tuple[str | int, ...] = ("spec", "sites", name)
        if kind == "simulator":
            found.extend(
                (
                    (*path, key),
                    (
                        f"unknown key '{key}' in spec.sites.{name}: a simulated site has "
                        "no settings, write {}"
                    ),
                )
                for key in site.model_dump(by_alias=True, exclude_none=True)
            )
        elif kind == "hyperv":
            found.extend(_hyperv_site_problems(name, site))
        elif site.hosts is not None or site.replica_broker is not None:
            key = "hosts" if site.hosts is not None else "replicaBroker"
            found.append(
                (
                    (*path, key),
                    (
                        f"'{key}' in spec.sites.{name} is for a hyperv Fabric: an asr site "
                        "names its protectionContainer"
                    ),
                )
            )
        elif (site.protection_container is None) == (site.azure is None):
            found.append(
                (
                    path,
                    f"site '{name}' of an asr Fabric names exactly one of protectionContainer "
                    "(the friendly name ASR shows for its VMM cloud or Hyper-V site) and "
                    "azure: {} (the Azure side), e.g. {protectionContainer: cloud-" + name + "}",
                )
            )
    if kind == "asr" and sum(site.azure is not None for site in sites.values()) > 1:
        found.append(
            (
                ("spec", "sites"),
                (
                    "at most one site of an asr Fabric is azure: {}: the other is the VMM "
                    "cloud or Hyper-V site that replicates to Azure"
                ),
            )
        )
    return found


def _hyperv_site_problems(
    name: str, site: schema.FabricSite
) -> list[tuple[tuple[str | int, ...], str]]:
    path: tuple[str | int, ...] = ("spec", "sites", name)
    found: list[tuple[tuple[str | int, ...], str]] = []
    for key, value in (("protectionContainer", site.protection_container), ("azure", site.azure)):
        if value is not None:
            found.append(
                (
                    (*path, key),
                    f"'{key}' in spec.sites.{name} is for an asr Fabric: a hyperv site lists hosts",
                )
            )
    if not site.hosts:
        found.append(
            (
                path,
                (
                    f"site '{name}' of a hyperv Fabric lists the Hyper-V hosts (or cluster "
                    f"nodes) drctl connects to, e.g. {{hosts: [hv01.{name}.example]}}"
                ),
            )
        )
    elif len(set(site.hosts)) != len(site.hosts):
        found.append(((*path, "hosts"), f"site '{name}' lists a host twice"))
    return found


def _hyperv_problems(hyperv: schema.HyperVSettings) -> list[tuple[tuple[str | int, ...], str]]:
    """What is wrong with a hyperv Fabric's credential and transport beyond their keys."""
    found: list[tuple[tuple[str | int, ...], str]] = []
    cred = hyperv.credential
    path: tuple[str | int, ...] = ("spec", "hyperv", "credential")
    password = cred.username_env is not None or cred.password_env is not None
    forms = [password, cred.kerberos is not None, cred.certificate is not None]
    if sum(forms) != 1:
        found.append(
            (
                path,
                (
                    "spec.hyperv.credential takes exactly one form: {usernameEnv: VAR, "
                    "passwordEnv: VAR} (environment variables' names), {kerberos: {}} or "
                    "{certificate: {pemFile: PATH, keyFile: PATH}}"
                ),
            )
        )
    elif password and (cred.username_env is None or cred.password_env is None):
        missing = "usernameEnv" if cred.username_env is None else "passwordEnv"
        found.append(
            (
                path,
                f"spec.hyperv.credential names usernameEnv and passwordEnv: {missing} is missing",
            )
        )
    transport = hyperv.transport
    tpath: tuple[str | int, ...] = ("spec", "hyperv", "transport")
    if cred.certificate is not None and not transport.tls:
        found.append(
            ((*tpath, "tls"), "certificate authentication needs tls: true (WinRM over HTTPS)")
        )
    if transport.insecure_skip_verify and transport.ca_bundle is not None:
        found.append(
            (
                (*tpath, "insecureSkipVerify"),
                "caBundle and insecureSkipVerify: true contradict each other: keep caBundle",
            )
        )
    return found
