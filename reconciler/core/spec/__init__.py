"""The desired state: RecoveryPlan documents in a directory of YAML files.

`load_specs(directory)` reads every `*.yaml`/`*.yml` file under a directory,
validates the documents and returns a `DesiredState` of frozen values with the
defaults and policies resolved per VM; or raises `SpecError` listing every
problem as `file:line: what to change`. The CLI, the planner's callers and
the daemon use it; it does no other I/O and reads no clock. `load_text` and
`combine` do the same from texts already in memory (the audit reads files
out of git history, not from the disk).

Parsing is on the hot path of every reconcile, so the fast path parses with
yaml-rs (Rust, YAML 1.2, rejects duplicate keys) and keeps no line numbers.
Only when something is wrong does `_Locator` parse the offending file a second
time with PyYAML's node API to turn a document path into a line.
"""

from __future__ import annotations

import graphlib
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Annotated, Any, Literal

import pydantic
import yaml
import yaml_rs
from pydantic.alias_generators import to_camel

from reconciler.core import desired
from reconciler.core.desired import DesiredState, DesiredVM, Group, PlanSpec
from reconciler.errors import SpecError, SpecProblem
from reconciler.kits import gcpause

API_VERSION = "drctl/v1"
KIND = "RecoveryPlan"
DEFAULT_MAX_PARALLEL = desired.DEFAULT_MAX_PARALLEL

DocPath = tuple[str | int, ...]

_SITE = r"[A-Za-z0-9][A-Za-z0-9._-]*"
SITE_NAME = rf"^{_SITE}$"
_REPLICATION = re.compile(rf"^\s*({_SITE})\s*->\s*({_SITE})\s*$")
_DOC_MARKER = re.compile(r"^---", re.MULTILINE)


# ---------------------------------------------------------------------------
# The document schema (pydantic). Field names are snake_case in Python and
# camelCase in YAML; unknown keys are errors everywhere.


class _Model(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, strict=False
    )


SiteName = Annotated[str, pydantic.StringConstraints(pattern=SITE_NAME)]
VMName = Annotated[str, pydantic.StringConstraints(min_length=1, pattern=r"^\S(.*\S)?$")]
# A bare `off` is the string "off" in YAML 1.2 and the boolean false in YAML 1.1:
# accept both, so the meaning never depends on which parser read the file.
RawReplication = pydantic.StrictStr | pydantic.StrictBool


class _Policy(_Model):
    allow_data_loss: pydantic.StrictBool | None = None
    max_parallel: Annotated[pydantic.StrictInt, pydantic.Field(ge=1)] | None = None
    settle_seconds: Annotated[float, pydantic.Field(ge=0, strict=True)] | None = None


class _Defaults(_Model):
    active_site: str | None = None
    replication: RawReplication | None = None


class _VM(_Model):
    name: VMName
    active_site: str | None = None
    replication: RawReplication | None = None
    policy: _Policy | None = None


class _Group(_Model):
    name: VMName
    after: list[str] = []
    vms: list[str]


class _PlanBody(_Model):
    sites: list[SiteName]
    defaults: _Defaults = _Defaults()
    policy: _Policy = _Policy()
    groups: list[_Group] = []
    vms: list[_VM]


class _Metadata(_Model):
    name: VMName


class _Document(_Model):
    api_version: Literal["drctl/v1"]
    kind: Literal["RecoveryPlan"]
    metadata: _Metadata
    spec: _PlanBody


# ---------------------------------------------------------------------------
# Loading.


@dataclass(frozen=True)
class _Issue:
    """A problem found before its line is known."""

    file: Path
    doc: int
    path: DocPath
    message: str
    line: int | None = None


def load_specs(directory: Path) -> DesiredState:
    """Load and validate every RecoveryPlan under `directory`."""
    files = spec_files(directory)
    issues: list[_Issue] = []
    plans: list[PlanSpec] = []
    texts: dict[Path, str] = {}
    with gcpause.gc_paused():
        for file in files:
            plans.extend(_load_file(file, issues, texts))
        issues.extend(_check_unique_across_plans(plans, files))
    if issues:
        raise SpecError(_locate_all(issues, texts))
    return DesiredState(plans=tuple(plans))


def load_text(name: str, text: str) -> list[PlanSpec]:
    """Validate one spec file's `text` as if it were the file `name`; no disk access.

    Problems are reported as `name:line: ...`, as `load_specs` reports them.
    Rules that span files (a plan or VM name in two files) are `combine`'s.
    """
    file = Path(name)
    issues: list[_Issue] = []
    with gcpause.gc_paused():
        plans = _load_text(file, text, issues)
        issues.extend(_check_unique_across_plans(plans, [file]))
    if issues:
        raise SpecError(_locate_all(issues, {file: text}))
    return plans


def combine(plans: Sequence[PlanSpec], texts: Mapping[str, str]) -> DesiredState:
    """The desired state of plans from `load_text`; `texts` (name -> text) locate problems.

    Raises `SpecError` when a plan name or a VM name is in two plans.
    """
    issues = _check_unique_across_plans(list(plans), [])
    if issues:
        raise SpecError(_locate_all(issues, {Path(n): t for n, t in texts.items()}))
    return DesiredState(plans=tuple(plans))


def spec_files(directory: Path) -> list[Path]:
    """Every YAML file under `directory`, in a stable order; hidden paths skipped."""
    if not directory.is_dir():
        raise SpecError([SpecProblem(str(directory), 0, "not a directory of spec files")])
    found = [
        p for p in directory.rglob("*") if is_spec_path(p.relative_to(directory)) and p.is_file()
    ]
    return sorted(found)


def is_spec_path(relative: PurePath) -> bool:
    """Whether a path relative to the spec directory names a spec file (not hidden)."""
    return relative.suffix in {".yaml", ".yml"} and not any(
        part.startswith(".") for part in relative.parts
    )


def _load_file(file: Path, issues: list[_Issue], texts: dict[Path, str]) -> list[PlanSpec]:
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        issues.append(_Issue(file, 0, (), f"cannot read the file: {exc}", line=1))
        return []
    # Kept so that lines are found in the text that was validated, not in a
    # second read that may see a newer version of the file.
    texts[file] = text
    return _load_text(file, text, issues)


def _load_text(file: Path, text: str, issues: list[_Issue]) -> list[PlanSpec]:
    try:
        parsed = yaml_rs.loads(text, parse_datetime=False)
    except yaml_rs.YAMLDecodeError as exc:
        issues.extend(_syntax_issues(file, text, exc))
        return []
    plans = []
    for index, doc in enumerate(_documents(parsed, text)):
        if doc is None:
            continue
        plan = _load_document(file, index, doc, issues)
        if plan is not None:
            plans.append(plan)
    return plans


def _documents(parsed: Any, text: str) -> list[Any]:
    # yaml-rs returns a list both for several documents and for one document
    # whose top level is a sequence; only a document marker tells them apart.
    if isinstance(parsed, list) and _DOC_MARKER.search(text):
        return parsed
    return [parsed]


def _load_document(file: Path, index: int, doc: Any, issues: list[_Issue]) -> PlanSpec | None:
    if not isinstance(doc, dict):
        issues.append(
            _Issue(
                file,
                index,
                (),
                f"a document must be a {KIND} mapping "
                f"(apiVersion, kind, metadata, spec), not a {type(doc).__name__}",
            )
        )
        return None
    try:
        model = _Document.model_validate(doc)
    except pydantic.ValidationError as exc:
        issues.extend(_Issue(file, index, tuple(e["loc"]), _explain(e)) for e in exc.errors())
        return None
    resolver = _Resolver(model, file, index)
    plan = resolver.resolve()
    issues.extend(resolver.issues)
    return plan


def _explain(error: Any) -> str:
    """Turn one pydantic error into a sentence that says what to change."""
    loc = error["loc"]
    where = _dotted(loc) or "document"
    key = str(loc[-1]) if loc else ""
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"unknown key '{key}' in {_parent(loc)}: remove it or fix its spelling"
    if kind == "missing":
        return f"missing required key '{key}' in {_parent(loc)}"
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        return f"{where} must be {expected}, not {error['input']!r}"
    if kind == "string_pattern_mismatch" and _in_sites(loc):
        return (
            f"site name {error['input']!r} is not valid: use letters, digits, "
            "'.', '_' or '-', starting with a letter or digit"
        )
    if kind == "string_pattern_mismatch":
        return f"{where} must not be empty or start or end with a space"
    if kind == "string_type":
        return f"{where} must be a string, not {error['input']!r}: quote it"
    if kind in {"list_type", "model_type", "dict_type"}:
        wanted = "a list" if kind == "list_type" else "a mapping"
        return f"{where} must be {wanted}, not {error['input']!r}"
    return f"{where}: {error['msg']}"


def _parent(loc: Sequence[str | int]) -> str:
    return _dotted(loc[:-1]) or "the document"


def _dotted(loc: Sequence[str | int]) -> str:
    """A document path as a reader writes it: spec.vms[2].policy."""
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")


def _in_sites(loc: Sequence[str | int]) -> bool:
    return len(loc) >= 2 and loc[-2] == "sites"


def parse_replication(raw: str | bool) -> tuple[str, str] | str | None:
    """`a->b` as a pair, off as None; anything else as the message to show."""
    if raw is False or (isinstance(raw, str) and raw.strip() == "off"):
        return None
    if isinstance(raw, str) and (match := _REPLICATION.match(raw)):
        return match.group(1), match.group(2)
    return f"replication must be '<from>-><to>' (e.g. ams->rtm) or off, not {raw!r}"


_NOT_GIVEN = "not given"


class _Resolver:
    """Applies defaults and policies to one document; checks rules that span fields."""

    def __init__(self, model: _Document, file: Path, doc: int) -> None:
        self.model = model
        self.file = file
        self.doc = doc
        self.issues: list[_Issue] = []
        self.sites: tuple[str, str] = ("", "")

    def problem(self, path: DocPath, message: str) -> None:
        self.issues.append(_Issue(self.file, self.doc, ("spec", *path), message))

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
        )

    def _other_site(self, site: str) -> str:
        return self.sites[1] if site == self.sites[0] else self.sites[0]

    def _site_ok(self, path: DocPath, site: str, what: str = "activeSite") -> bool:
        if site in self.sites:
            return True
        self.problem(path, f"{what} '{site}' is not one of the plan's sites {list(self.sites)}")
        return False

    def _defaults(self, defaults: _Defaults) -> tuple[str | None, Any]:
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
        self, i: int, vm: _VM, site: str, default: Any
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

    def _groups(self, groups: list[_Group], known_vms: set[str]) -> dict[str, str]:
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


def _check_unique_across_plans(plans: list[PlanSpec], files: list[Path]) -> list[_Issue]:
    """A plan name and a VM name each belong to one plan in the whole directory."""
    issues: list[_Issue] = []
    plan_at: dict[str, PlanSpec] = {}
    vm_at: dict[str, PlanSpec] = {}
    for plan in plans:
        if plan.name in plan_at:
            first = plan_at[plan.name]
            issues.append(
                _Issue(
                    Path(plan.file),
                    _doc_of(plan, plans),
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
                    _Issue(
                        Path(plan.file),
                        _doc_of(plan, plans),
                        ("spec", "vms", i, "name"),
                        f"VM '{vm.name}' is already in plan '{other.name}' "
                        f"({other.file}): a VM belongs to one plan, remove one",
                    )
                )
            else:
                vm_at[vm.name] = plan
    return issues


def _doc_of(plan: PlanSpec, plans: list[PlanSpec]) -> int:
    """Index of the document that holds `plan` within its file."""
    same_file = [p for p in plans if p.file == plan.file]
    return same_file.index(plan)


# ---------------------------------------------------------------------------
# The slow path: from document paths to lines, and syntax errors.


def _syntax_issues(file: Path, text: str, exc: Exception) -> list[_Issue]:
    """Explain a file yaml-rs refused, with the line where PyYAML sees the problem."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        nodes = list(yaml.compose_all(text, Loader=loader))
    except yaml.MarkedYAMLError as marked:
        mark = marked.problem_mark or marked.context_mark
        line = mark.line + 1 if mark else 1
        what = marked.problem or marked.context or "invalid YAML"
        return [_Issue(file, 0, (), f"YAML syntax error: {what}", line=line)]
    duplicates = [
        _Issue(
            file,
            0,
            (),
            f"duplicate key '{key.value}' (first at line "
            f"{first.start_mark.line + 1}): a key may appear once per mapping, remove one",
            line=key.start_mark.line + 1,
        )
        for node in nodes
        for key, first in _duplicate_keys(node)
    ]
    if duplicates:
        return duplicates
    found = re.search(r"line (\d+)", str(exc))
    line = int(found.group(1)) if found else 1
    first_line = str(exc).splitlines()[-1] if str(exc) else "invalid YAML"
    return [_Issue(file, 0, (), f"YAML syntax error: {first_line}", line=line)]


def _duplicate_keys(node: yaml.Node) -> Iterator[tuple[yaml.Node, yaml.Node]]:
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, yaml.Node] = {}
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                if key.value in seen:
                    yield key, seen[key.value]
                else:
                    seen[key.value] = key
            yield from _duplicate_keys(value)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            yield from _duplicate_keys(item)


def _locate_all(issues: list[_Issue], texts: Mapping[Path, str]) -> list[SpecProblem]:
    trees: dict[Path, list[yaml.Node]] = {}
    problems = []
    for issue in issues:
        line = issue.line
        if line is None:
            if issue.file not in trees:
                trees[issue.file] = _compose(texts.get(issue.file, ""))
            line = _line_of(trees[issue.file], issue.doc, issue.path)
        problems.append(SpecProblem(str(issue.file), line, issue.message))
    return problems


def _compose(text: str) -> list[yaml.Node]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return list(yaml.compose_all(text, Loader=loader))
    except yaml.YAMLError:
        return []


def _line_of(docs: list[yaml.Node], doc: int, path: DocPath) -> int:
    """1-based line of the deepest node along `path` in document `doc`."""
    if doc >= len(docs):
        return 1
    node = docs[doc]
    line = node.start_mark.line + 1
    for step in path:
        child = _child(node, step)
        if child is None:
            break
        key_node, node = child
        line = (key_node or node).start_mark.line + 1
    return line


def _child(node: yaml.Node, step: str | int) -> tuple[yaml.Node | None, yaml.Node] | None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == step:
                return key, value
    elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value):
        return None, node.value[step]
    return None
