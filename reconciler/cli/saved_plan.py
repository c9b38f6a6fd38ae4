"""A saved plan: `drctl plan --out FILE` writes it, `drctl apply --plan FILE` executes exactly it.

Like terraform's saved plan, for a reviewer to approve what will happen, not
what might: the file holds the revision of the specs, what the fabric
reported of each VM that was not converged (a fingerprint), and the
operations each such VM takes on the way the plan showed (a planned move:
stop, planned failover, commit, reverse replication; an unplanned one:
unplanned failover, recovery point, commit, reverse replication).
`drctl apply --plan FILE` refuses (exit 2, nothing started) when the
revision or any of those VMs changed since; while it runs, it acts on those
VMs only, and an operation the plan did not show (a planned move turned
unplanned because the source went dark) is held and said, never started.
Called by `cli.planning` (save) and `cli.applying` (load, check, scope).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler import errors
from reconciler.core import plan, state
from reconciler.core.state import Operation
from reconciler.engine import scope as scopes

FORMAT = "drctl-plan/v1"
OP = Operation
# What may follow each operation on the way to a VM's desired state.
_FOLLOWS: dict[Operation, frozenset[Operation]] = {
    OP.PLANNED_FAILOVER: frozenset({OP.COMMIT, OP.REVERSE_REPLICATE, OP.START_VM}),
    OP.UNPLANNED_FAILOVER: frozenset(
        {OP.APPLY_RECOVERY_POINT, OP.COMMIT, OP.REVERSE_REPLICATE, OP.START_VM}
    ),
    OP.APPLY_RECOVERY_POINT: frozenset({OP.COMMIT, OP.REVERSE_REPLICATE}),
    OP.COMMIT: frozenset({OP.REVERSE_REPLICATE}),
    OP.TEST_FAILOVER: frozenset({OP.TEST_FAILOVER_CLEANUP}),
}
_UNPLANNED = frozenset({OP.UNPLANNED_FAILOVER, OP.APPLY_RECOVERY_POINT})


@dataclass(frozen=True)
class Saved:
    """A plan as `drctl plan --out` saved it."""

    path: Path
    revision: str
    specs_dir: str
    fingerprints: Mapping[str, str]  # "plan/vm" -> what the fabric reported, hashed
    seen: Mapping[str, str]  # "plan/vm" -> the same, in words (for the refusal)
    operations: Mapping[str, frozenset[Operation]]  # "plan/vm" -> operations on its way

    def scope(self) -> scopes.Scope:
        """Its VMs only, each with the operations on its way."""
        ops = {_key(k): v for k, v in self.operations.items()}
        return scopes.Scope(
            vms=frozenset(ops),
            operations=ops,
            why_outside=f"which the saved plan {self.path} does not act on",
        )


def _key(text: str) -> tuple[str, str]:
    plan_name, _, vm = text.partition("/")
    return plan_name, vm


def save(path: Path, built: plan.Plan, revision: str, specs_dir: Path, summary: list[str]) -> None:
    """Write the plan to `path` (atomically: a reader never sees half a plan)."""
    vms = [vp for vp in built.vms if not vp.converged]
    document: dict[str, Any] = {
        "format": FORMAT,
        "revision": revision,
        "specsDir": str(specs_dir.absolute()),
        "summary": summary,
        "vms": {
            f"{vp.plan}/{vp.name}": {
                "seen": _seen(vp.observed),
                "fingerprint": _digest(_seen(vp.observed)),
                "phase": str(vp.phase),
                "operations": sorted(_operations(vp, built)),
            }
            for vp in vms
        },
        "actions": [
            {"plan": a.plan, "vm": a.vm, "operation": str(a.operation), "target": a.target_site}
            for a in built.actions
        ],
    }
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(json.dumps(document, indent=2) + "\n")
        tmp.replace(path)
    except OSError as exc:
        raise errors.UsageError(f"cannot write the plan to {path}: {exc.strerror or exc}") from exc


def load(path: Path) -> Saved:
    """The plan saved in `path`; a UsageError (exit 2) naming what is wrong with it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise errors.UsageError(f"cannot read the plan {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise errors.UsageError(f"{path} is not a plan drctl saved: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise errors.UsageError(
            f'{path} is not a plan drctl saved (no "format": "{FORMAT}"): make one with '
            "drctl plan SPECS_DIR --out FILE"
        )
    try:
        vms = data["vms"]
        return Saved(
            path,
            str(data["revision"]),
            str(data["specsDir"]),
            {k: str(v["fingerprint"]) for k, v in vms.items()},
            {k: str(v["seen"]) for k, v in vms.items()},
            {k: frozenset(Operation(op) for op in v["operations"]) for k, v in vms.items()},
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise errors.UsageError(f"{path} is a damaged plan ({exc!r}): make it again") from exc


def changes(saved: Saved, built: plan.Plan, revision: str) -> list[str]:
    """What changed since the plan was saved; [] when `built` is still what it showed."""
    found: list[str] = []
    if revision != saved.revision:
        found.append(
            f"the specs are at revision {revision} now; the plan was made at {saved.revision}"
        )
    now = {f"{vp.plan}/{vp.name}": vp for vp in built.vms}
    for key, fingerprint in saved.fingerprints.items():
        vp = now.get(key)
        if vp is None:
            found.append(f"{key} is in no plan of the specs now")
            continue
        seen = _seen(vp.observed)
        if _digest(seen) != fingerprint:
            found.append(f"{key}: the fabric reports {seen} now; the plan saw {saved.seen[key]}")
    newly = [
        f"{vp.plan}/{vp.name}"
        for vp in built.vms
        if not vp.converged and f"{vp.plan}/{vp.name}" not in saved.fingerprints
    ]
    if newly:
        found.append(f"{', '.join(newly[:5])} need action now and did not when it was made")
    return found


def _seen(o: state.ObservedVM | None) -> str:
    """What a plan's decision for a VM rests on, in words: where it runs, how it replicates,
    its protection state, the job running, power at each site (not the replication lag,
    which moves all the time)."""
    if o is None:
        return "not in the fabric"
    rep = "off" if o.replication is None else f"{o.replication.source}->{o.replication.target}"
    job = "no job" if o.job is None or not o.job.running else f"{o.job.operation} job {o.job.id}"
    running = ",".join(sorted(o.running)) or "none"
    unknown = f", power unknown at {','.join(sorted(o.power_unknown))}" if o.power_unknown else ""
    return (
        f"active at {o.active_site}, replication {rep}, {o.protection_state}, {job}, "
        f"running at {running}{unknown}"
    )


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _operations(vp: plan.VMPlan, built: plan.Plan) -> frozenset[Operation]:
    """The operations `vp` takes on the way the plan shows, this one and those after it."""
    moves = vp.observed is not None and vp.observed.active_site != vp.desired.active_site
    mine = [a for a in built.actions if a.plan == vp.plan and a.vm == vp.name]
    if vp.action is not None:
        mine.append(vp.action)
    ops = {a.operation for a in mine}
    unplanned = bool(ops & _UNPLANNED) or any(
        a.operation in _UNPLANNED and any(vp.name in g for g in a.plan_groups)
        for a in built.actions
        if a.plan == vp.plan
    )
    if moves:
        first = OP.UNPLANNED_FAILOVER if unplanned else OP.PLANNED_FAILOVER
        ops |= {OP.STOP_VM, first}
    for op in list(ops):
        ops |= _FOLLOWS.get(op, frozenset())
    return frozenset(ops)
