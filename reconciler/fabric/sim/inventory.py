"""The simulated fabric's inventory file: its two sites, its VMs and its timings.

`drctl fabric init INVENTORY.yaml` (`cli.simulator`) calls `load_inventory`, then
`sim.provider.init_fabric` builds the fabric from the result. The file is small
and read once, so PyYAML's `safe_load` is enough; it reads a bare `off` as
false, which is accepted for `replication` like the string "off". A VM may
give its `sizeGB`: a full copy of it (enabling replication, a resync, the
reverse replication after an unplanned failover) then takes its size at
`timings.replicationMBps` instead of `timings.initialReplication`.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import pydantic
import yaml
from pydantic.alias_generators import to_camel

from reconciler import errors
from reconciler.core import spec
from reconciler.fabric.sim import timing


@dataclass(frozen=True, slots=True)
class InventoryVM:
    name: str
    active_site: str
    replication: tuple[str, str] | None  # (source, target); None: off
    size_gb: float | None = None  # None: a full copy takes timings.initial_replication


@dataclass(frozen=True)
class Inventory:
    sites: tuple[str, str]
    vms: tuple[InventoryVM, ...]
    timings: timing.Timings


class _Model(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel)


Seconds = Annotated[float, pydantic.Field(ge=0, strict=True)]
_DEFAULTS = timing.Timings()


class _Timings(_Model):
    planned_failover: Seconds = _DEFAULTS.planned_failover
    unplanned_failover: Seconds = _DEFAULTS.unplanned_failover
    commit: Seconds = _DEFAULTS.commit
    reverse_replicate: Seconds = _DEFAULTS.reverse_replicate
    initial_replication: Seconds = _DEFAULTS.initial_replication
    stop_vm: Seconds = pydantic.Field(_DEFAULTS.stop_vm, alias="stopVM")
    test_failover: Seconds = _DEFAULTS.test_failover
    test_failover_cleanup: Seconds = _DEFAULTS.test_failover_cleanup
    replication_interval: Annotated[float, pydantic.Field(gt=0, strict=True)] = (
        _DEFAULTS.replication_interval
    )
    replication_mbps: Annotated[
        float, pydantic.Field(gt=0, strict=True, alias="replicationMBps")
    ] = _DEFAULTS.replication_mbps


class _VM(_Model):
    name: Annotated[str, pydantic.StringConstraints(pattern=r"^\S+$", strict=True)]
    active_site: Annotated[str, pydantic.Field(strict=True)]
    replication: pydantic.StrictStr | pydantic.StrictBool
    size_gb: Annotated[float, pydantic.Field(gt=0, strict=True)] | None = pydantic.Field(
        None, alias="sizeGB"
    )


class _Inventory(_Model):
    sites: list[Annotated[str, pydantic.StringConstraints(pattern=spec.SITE_NAME, strict=True)]]
    vms: list[_VM]
    timings: _Timings = _Timings()


_KNOWN_KEYS = {
    "": ["sites", "vms", "timings"],
    "vms": ["name", "activeSite", "replication", "sizeGB"],
    "timings": [field.alias or "" for field in _Timings.model_fields.values()],
}


def load_inventory(path: Path) -> Inventory:
    """Read and validate an inventory file; raise InventoryError listing every problem."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise errors.InventoryError(f"{path}: cannot read the inventory: {exc}") from exc
    except yaml.YAMLError as exc:
        raise errors.InventoryError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise errors.InventoryError(
            f"{path}: an inventory is a mapping with sites, vms and (optional) timings"
        )
    try:
        model = _Inventory.model_validate(raw)
    except pydantic.ValidationError as exc:
        found = dict.fromkeys(_explain(e) for e in exc.errors())  # unique, in order
        raise errors.InventoryError("\n".join(f"{path}: {p}" for p in found)) from exc
    problems: list[str] = []
    inventory = _resolve(model, problems)
    if inventory is None or problems:
        raise errors.InventoryError("\n".join(f"{path}: {p}" for p in problems))
    return inventory


def _explain(error: Any) -> str:
    loc = error["loc"]
    if "replication" in loc and loc[-1] != "replication":
        # A union reports one error per member (str, bool): say it once.
        loc = loc[: loc.index("replication") + 1]
        return (
            f"{'.'.join(str(p) for p in loc)}: replication must be '<from>-><to>' "
            f"(e.g. ams->rtm) or off, not {error['input']!r}"
        )
    where = ".".join(str(p) for p in loc) or "inventory"
    if error["type"] == "extra_forbidden":
        known = _KNOWN_KEYS[str(loc[0]) if len(loc) > 1 else ""]
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        fix = f"did you mean '{close[0]}'?" if close else f"known keys are {', '.join(known)}"
        return f"unknown key '{loc[-1]}' at {where}: {fix}"
    if error["type"] == "missing":
        return f"missing required key '{error['loc'][-1]}' at {where}"
    if error["type"] == "string_pattern_mismatch" and error["loc"][0] == "sites":
        return (
            f"site name {error['input']!r} at {where} is not valid: use letters, digits, "
            "'.', '_' or '-', starting with a letter or digit"
        )
    return f"{where}: {error['msg']} (found {error['input']!r})"


def _resolve(model: _Inventory, problems: list[str]) -> Inventory | None:
    sites = model.sites
    if len(sites) != 2 or sites[0] == sites[1]:
        # Every VM names its sites: checking them against a wrong list says nothing.
        problems.append(
            f"sites must name exactly two different sites, e.g. [ams, rtm]; found {sites}"
        )
        return None
    pair = (sites[0], sites[1])
    vms: list[InventoryVM] = []
    seen: set[str] = set()
    for i, vm in enumerate(model.vms):
        where = f"vms.{i} ({vm.name})"
        if vm.name in seen:
            problems.append(f"{where}: VM '{vm.name}' is listed twice: remove one")
            continue
        seen.add(vm.name)
        if vm.active_site not in pair:
            problems.append(
                f"{where}: activeSite '{vm.active_site}' is not one of the sites {list(pair)}"
            )
            continue
        replication = spec.parse_replication(vm.replication)
        other = pair[1] if vm.active_site == pair[0] else pair[0]
        if isinstance(replication, str):
            problems.append(f"{where}: {replication}")
        elif replication is not None and replication != (vm.active_site, other):
            problems.append(
                f"{where}: replication {replication[0]}->{replication[1]} must go "
                f"from the active site to the other: write {vm.active_site}->"
                f"{other}, or off"
            )
        else:
            vms.append(InventoryVM(vm.name, vm.active_site, replication, vm.size_gb))
    t = model.timings
    timings = timing.Timings(
        planned_failover=t.planned_failover,
        unplanned_failover=t.unplanned_failover,
        commit=t.commit,
        reverse_replicate=t.reverse_replicate,
        initial_replication=t.initial_replication,
        stop_vm=t.stop_vm,
        test_failover=t.test_failover,
        test_failover_cleanup=t.test_failover_cleanup,
        replication_interval=t.replication_interval,
        replication_mbps=t.replication_mbps,
    )
    return Inventory(pair, tuple(vms), timings)
