"""The document schema of a spec file: pydantic models, and each error as a sentence.

Used by `spec` (the loader) and `spec.resolve`. Field names are snake_case in
Python and camelCase in YAML; unknown keys are errors everywhere, so a typo is
never ignored. A Fabric document never holds a secret: `secret_values` finds
keys that look like one and hold a literal value.
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

_SITE = r"[A-Za-z0-9][A-Za-z0-9._-]*"
SITE_NAME = rf"^{_SITE}$"
_REPLICATION = re.compile(rf"^\s*({_SITE})\s*->\s*({_SITE})\s*$")


class Model(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, strict=False
    )


SiteName = Annotated[str, pydantic.StringConstraints(pattern=SITE_NAME)]
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
    fabric: VMName | None = None
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


class FabricDocument(Model):
    api_version: Literal["drctl/v1"]
    kind: Literal["Fabric"]
    metadata: Metadata
    spec: FabricBody

    def kind_keys(self) -> list[str]:
        """The fabric kinds this document sets (exactly one is valid)."""
        return [k for k in FABRIC_KINDS if getattr(self.spec, k) is not None]


# A key that names a secret, unless its name says it holds a reference to one
# (an environment variable's name, a file's path).
_SECRET_WORDS = re.compile(r"(password|passwd|secret|token|key)$", re.IGNORECASE)
_REFERENCE = re.compile(r"(env|file|path|ref|name|id)$", re.IGNORECASE)


def secret_values(node: Any, path: DocPath = ()) -> Iterator[tuple[DocPath, str]]:
    """Every (path, key) under `node` whose key names a secret and holds a literal value."""
    if isinstance(node, dict):
        for key, value in node.items():
            here = (*path, key)
            if (
                isinstance(key, str)
                and _SECRET_WORDS.search(key)
                and not _REFERENCE.search(key)
                and isinstance(value, str | int | float)
                and not isinstance(value, bool)
                and str(value) != ""
            ):
                yield here, key
            else:
                yield from secret_values(value, here)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from secret_values(item, (*path, i))


def secret_message(key: str) -> str:
    return (
        f"'{key}' holds a literal secret: a Fabric document never holds one (specs live in "
        f"git); reference it instead, e.g. {key}Env: DRCTL_{key.upper()} (an environment "
        f"variable's name) or {key}File: /etc/drctl/{key.lower()} (a file's path)"
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
