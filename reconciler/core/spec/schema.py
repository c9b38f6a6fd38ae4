"""The document schema of a spec file: pydantic models, and each error as a sentence.

Used by `spec` (the loader) and `spec.resolve`. Field names are snake_case in
Python and camelCase in YAML; unknown keys are errors everywhere, so a typo is
never ignored. A Fabric document never holds a secret: `secret_values` finds
keys that look like one and hold a literal value. `cli.fabric` checks a
`--fabric NAME` with `is_name` and says what is wrong with `invalid_name`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Annotated, Any, Literal

import pydantic
from pydantic.alias_generators import to_camel

API_VERSION = "drctl/v1"
KIND = "RecoveryPlan"
FABRIC_KIND = "Fabric"
# The kinds of fabric a Fabric document can declare: its one key besides `sites`.
FABRIC_KINDS = ("simulator",)

DocPath = tuple[str | int, ...]

# Site and fabric names: a fabric's name is a directory (<state-dir>/fabrics/<name>)
# and a job-id prefix (<name>/<job id>), so it holds no separator and is never
# `.` or `..`; sites follow the same rule, so one sentence explains both.
_SITE = r"[A-Za-z0-9][A-Za-z0-9._-]*"
SITE_NAME = rf"^{_SITE}$"
NAME_RULE = "use letters, digits, '.', '_' or '-', starting with a letter or digit"
_NAME = re.compile(_SITE)
_REPLICATION = re.compile(rf"^\s*({_SITE})\s*->\s*({_SITE})\s*$")


class Model(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, strict=False
    )


SiteName = Annotated[str, pydantic.StringConstraints(pattern=SITE_NAME)]
FabricName = Annotated[str, pydantic.StringConstraints(pattern=SITE_NAME)]
VMName = Annotated[str, pydantic.StringConstraints(min_length=1, pattern=r"^\S(.*\S)?$")]
# A bare `off` is the string "off" in YAML 1.2 and the boolean false in YAML 1.1:
# accept both, so the meaning never depends on which parser read the file.
RawReplication = pydantic.StrictStr | pydantic.StrictBool


class Policy(Model):
    allow_data_loss: pydantic.StrictBool | None = None
    max_parallel: Annotated[pydantic.StrictInt, pydantic.Field(ge=1)] | None = None
    settle_seconds: Annotated[float, pydantic.Field(ge=0, strict=True)] | None = None


class Defaults(Model):
    active_site: str | None = None
    replication: RawReplication | None = None


class VMEntry(Model):
    name: VMName
    active_site: str | None = None
    replication: RawReplication | None = None
    policy: Policy | None = None


class GroupEntry(Model):
    name: VMName
    after: list[str] = []
    vms: list[str]


class PlanBody(Model):
    fabric: FabricName | None = None
    sites: list[SiteName]
    defaults: Defaults = Defaults()
    policy: Policy = Policy()
    groups: list[GroupEntry] = []
    vms: list[VMEntry]


class Metadata(Model):
    name: VMName


class PlanDocument(Model):
    api_version: Literal["drctl/v1"]
    kind: Literal["RecoveryPlan"]
    metadata: Metadata
    spec: PlanBody


class SimulatorSettings(Model):
    """The embedded simulator needs no settings: its data lives in the state dir."""


class SimulatorSite(Model):
    """A simulated site has no settings."""


class FabricBody(Model):
    simulator: SimulatorSettings | None = None
    sites: dict[SiteName, SimulatorSite]


class FabricMetadata(Model):
    name: FabricName


class FabricDocument(Model):
    api_version: Literal["drctl/v1"]
    kind: Literal["Fabric"]
    metadata: FabricMetadata
    spec: FabricBody

    def kind_keys(self) -> list[str]:
        """The fabric kinds this document sets (exactly one is valid)."""
        return [k for k in FABRIC_KINDS if getattr(self.spec, k) is not None]


def is_name(text: str) -> bool:
    """Whether `text` is a valid site or fabric name (see NAME_RULE)."""
    return _NAME.fullmatch(text) is not None


def invalid_name(what: str, name: object) -> str:
    """The message for a site or fabric `name` that breaks NAME_RULE."""
    return f"{what} name {name!r} is not valid: {NAME_RULE}"


# A key names a secret when its last word does: `clientSecret`, `apiKeys`,
# `connectionString`, and `passwordValue` (a trailing `Value` adds nothing).
# Keys are judged by whole words, so `monkey` holds no key, and one that ends
# in another word (`passwordEnv`, `tokenFile`, `keyName`) says where the
# secret is, not what it is. The public half of a key pair is no secret.
_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+")
_SECRET = re.compile(
    r"(^|-)(password|passwd|passphrase|secret|token|credential|key|connection-string)s?"
    r"(-values?)?$"
)
_PUBLIC = re.compile(r"(^|-)(public|host)-keys?$")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def secret_values(node: Any, path: DocPath = ()) -> Iterator[tuple[DocPath, str]]:
    """Every (path, message) under `node` where a key holds a literal secret.

    The message never holds the value: it would reach logs and CI output.
    """
    if isinstance(node, list):
        for i, item in enumerate(node):
            yield from secret_values(item, (*path, i))
    elif isinstance(node, dict):
        # The keys of spec.sites are site names, never secrets (a site may be
        # called `key`); what a site holds is checked as everything else.
        names = path == ("spec", "sites")
        for key, value in node.items():
            here = (*path, key)
            problem = None if names or not isinstance(key, str) else _secret_problem(key, value)
            if problem is None:
                yield from secret_values(value, here)
            else:
                yield here, problem


def _secret_problem(key: str, value: Any) -> str | None:
    words = [w.lower() for w in _WORDS.findall(key)]
    literals = list(_literals(value))
    if len(words) > 1 and words[-1] == "env":
        # A reference must be one: a value that is no variable's name is most
        # likely the secret itself, pasted where its variable's name belongs.
        if all(isinstance(v, str) and _ENV_NAME.fullmatch(v) for v in literals):
            return None
        return (
            f"the value of '{key}' looks like a secret value, not the name of an "
            f"environment variable: write the variable's name (letters, digits and '_', "
            f"e.g. {key}: DRCTL_{'_'.join(words[:-1]).upper()}) and put the secret in it"
        )
    joined = "-".join(words)
    if literals and _SECRET.search(joined) and not _PUBLIC.search(joined):
        return _secret_message(key, words)
    return None


def _literals(value: Any) -> Iterator[str | int | float]:
    """The scalars of `value`, in lists too; a mapping's values are judged by their own keys."""
    if isinstance(value, list):
        for item in value:
            yield from _literals(item)
    elif isinstance(value, str | int | float) and not isinstance(value, bool) and str(value):
        yield value


def _secret_message(key: str, words: Sequence[str]) -> str:
    return (
        f"'{key}' holds a literal secret: a Fabric document never holds one (specs live in "
        f"git); reference it instead, e.g. {key}Env: DRCTL_{'_'.join(words).upper()} (an "
        f"environment variable's name) or {key}File: /etc/drctl/{'-'.join(words)} (a "
        "file's path)"
    )


def explain(error: Any, fabric: bool = False) -> str:
    """Turn one pydantic error into a sentence that says what to change."""
    loc = error["loc"]
    where = _dotted(loc) or "document"
    key = str(loc[-1]) if loc else ""
    kind = error["type"]
    if kind == "extra_forbidden" and fabric and len(loc) == 2 and loc[0] == "spec":
        return (
            f"unknown fabric kind '{key}' in spec: a Fabric declares exactly one of "
            f"{', '.join(FABRIC_KINDS)} (and its sites)"
        )
    if kind == "extra_forbidden":
        return f"unknown key '{key}' in {_parent(loc)}: remove it or fix its spelling"
    if kind == "missing":
        return f"missing required key '{key}' in {_parent(loc)}"
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        return f"{where} must be {expected}, not {error['input']!r}"
    if kind == "string_pattern_mismatch" and _in_sites(loc):
        return invalid_name("site", error["input"])
    if kind == "string_pattern_mismatch" and _names_fabric(loc, fabric):
        return invalid_name("fabric", error["input"])
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
    # A Fabric's sites are the keys of a mapping: pydantic locates a bad key
    # as spec.sites.<key>.[key].
    if loc and loc[-1] == "[key]":
        return len(loc) >= 3 and loc[-3] == "sites"
    return len(loc) >= 2 and loc[-2] == "sites"


def _names_fabric(loc: Sequence[str | int], fabric: bool) -> bool:
    """Whether `loc` is a fabric's name: a Fabric's metadata.name, a plan's spec.fabric."""
    return tuple(loc) == (("metadata", "name") if fabric else ("spec", "fabric"))


def parse_replication(raw: str | bool) -> tuple[str, str] | str | None:
    """`a->b` as a pair, off as None; anything else as the message to show."""
    if raw is False or (isinstance(raw, str) and raw.strip() == "off"):
        return None
    if isinstance(raw, str) and (match := _REPLICATION.match(raw)):
        return match.group(1), match.group(2)
    return f"replication must be '<from>-><to>' (e.g. ams->rtm) or off, not {raw!r}"
