"""`drctl status`'s table: where each copy runs, what each VM waits for, the next step.

ui/report.py prints the table (`rows`) and writes the JSON (`vm_json`,
`sites_json`); `drctl status --watch` (ui/watch.py) redraws the same rows;
the status page (ui/status_page.py) says what a VM waits for with
`waits_text`. Each cell is read from the plan's values (phase, action, the
observed VM and its job), never worked out again. A site's connection state
is what its fabric reported at this look (`site_states`). Pure.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reconciler.core import plan, state
from reconciler.core.desired import DesiredState

CONNECTED = "connected"
DISCONNECTED = "disconnected"
UNKNOWN = "unknown"  # the fabric could not be observed: nothing is known of its sites

HEADER = (
    "PLAN",
    "VM",
    "DESIRED",
    "OBSERVED",
    "PHASE",
    "RUNNING",
    "JOB",
    "WAITING FOR",
    "NEXT STEP",
)

# What a reason asks a person to commit, as the planner writes it (`commit `x: y``),
# and the VM a Blocked move of its plan waits for (core/plan/fallback.py).
_COMMIT = re.compile(r"commit `([^`]+)`")
_WAITS_FOR_BLOCKED = re.compile(r"waits: (\S+) is Blocked")


@dataclass(frozen=True, slots=True)
class SiteState:
    fabric: str
    site: str
    state: str  # CONNECTED, DISCONNECTED or UNKNOWN


def site_states(
    observed: Mapping[str, state.Observed], desired: DesiredState
) -> tuple[SiteState, ...]:
    """Each site of each fabric looked at: connected, disconnected, or unknown (not observed)."""
    found: list[SiteState] = []
    for fabric, seen in sorted(observed.items()):
        if seen.unreachable is not None or seen.broken or not seen.sites:
            names = sorted({s for p in desired.plans if p.fabric == fabric for s in p.sites})
            found += [SiteState(fabric, name, UNKNOWN) for name in names]
            continue
        for name, site in sorted(seen.sites.items()):
            found.append(SiteState(fabric, name, CONNECTED if site.connected else DISCONNECTED))
    return tuple(found)


def site_lines(sites: Sequence[SiteState]) -> list[str]:
    """A line per fabric: `sites of embedded: ams connected, rtm disconnected`."""
    by_fabric: dict[str, list[str]] = {}
    for s in sites:
        by_fabric.setdefault(s.fabric, []).append(f"{s.site} {s.state}")
    return [f"sites of {fabric}: {', '.join(said)}" for fabric, said in by_fabric.items()]


def sites_json(sites: Sequence[SiteState] | None) -> list[dict[str, str]] | None:
    if sites is None:
        return None
    return [{"fabric": s.fabric, "site": s.site, "state": s.state} for s in sites]


def running_text(vp: plan.VMPlan) -> str:
    """Where a copy runs (`ams`), may run (`rtm?`: its power is unknown), `?` when the
    fabric was not observed, `-` when no copy runs."""
    o = vp.observed
    if not vp.fabric_observed:
        return "?"
    if o is None:
        return "-"
    return ",".join([*o.running, *(f"{site}?" for site in o.power_unknown)]) or "-"


def waits_text(vp: plan.VMPlan) -> str:
    """What a VM waits for, in words (`plan.waits_for`); empty when it is converged."""
    wait = plan.waits_for(vp)
    action = vp.action
    if wait is None:
        return ""
    if wait is plan.Wait.PERSON:
        return "a person: see the reason"
    if wait is plan.Wait.JOB:
        return "its job in the fabric to end"
    if wait is plan.Wait.FABRIC:
        return "the site or fabric to answer, or the sync to finish"
    if action is None:
        return "-"
    where = f" -> {action.target_site}" if action.target_site else ""
    if wait is plan.Wait.TURN:
        return f"its turn to start {action.operation}{where} (maxParallel, settle time)"
    said = f"{action.operation}{where} after {', '.join(action.waiting_for) or 'other steps'}"
    if action.retry_at is not None:
        said += f" (not before {action.retry_at.strftime('%H:%M:%S %Z')})"
    return said


def waiting_cell(vp: plan.VMPlan) -> str:
    """The WAITING FOR column: brief, as a table cell (the reason says the rest)."""
    wait = plan.waits_for(vp)
    action = vp.action
    if wait is None:
        return "-"
    if wait is plan.Wait.STEPS and action is not None:
        return ", ".join(action.waiting_for) or "other steps"
    return {
        plan.Wait.PERSON: "a person",
        plan.Wait.JOB: "its job",
        plan.Wait.TURN: "its turn",
        plan.Wait.FABRIC: "site/fabric",
    }.get(wait, "-")


def next_step(vp: plan.VMPlan) -> str:
    """The one thing an operator can do for this VM now, in a line; `-` when nothing is
    theirs to do (converged, or drctl is on it)."""
    phase = vp.phase
    job = vp.observed.job if vp.observed is not None else None
    asked = _COMMIT.search(vp.reason)
    if phase is plan.Phase.STUCK and job is not None:
        return f"look at job {job.id} in the fabric (followed, never cancelled)"
    if phase is plan.Phase.WAITING_FOR_USER and job is not None:
        return f"do the manual step job {job.id} waits for, in the fabric"
    if phase is plan.Phase.BLOCKED and "times for this revision" in vp.reason:
        return f"fix the cause in the fabric, then drctl retry --vm {vp.name}"
    if phase is plan.Phase.BLOCKED and (other := _WAITS_FOR_BLOCKED.search(vp.reason)):
        return f"unblock {other.group(1)} first (see its row)"
    if phase is plan.Phase.SUSPENDED:
        return "commit `suspend: false` on the plan to resume"
    if asked is not None and phase in _ASKING:
        return f"commit `{asked.group(1)}`"
    if phase in (plan.Phase.BLOCKED, plan.Phase.HELD):
        return "decide, then commit as the reason says"
    return "-"


# Phases whose reason may name the commit that moves the VM on.
_ASKING = frozenset(
    {plan.Phase.BLOCKED, plan.Phase.HELD, plan.Phase.COMMIT_PENDING, plan.Phase.WAITING_FOR_SITE}
)


def vm_json(vp: plan.VMPlan) -> dict[str, Any]:
    """What `drctl status --output json` adds to each VM, after the keys it always had."""
    action = vp.action
    wait = plan.waits_for(vp)
    return {
        "runningAt": _running_at(vp),
        "action": None
        if action is None
        else {
            "operation": str(action.operation),
            "targetSite": action.target_site,
            "ready": action.ready,
            "waitingFor": list(action.waiting_for),
            "retryAt": None if action.retry_at is None else action.retry_at.isoformat(),
        },
        "waitsFor": None if wait is None else str(wait),
        "waiting": waits_text(vp) or None,
        "nextStep": None if (step := next_step(vp)) == "-" else step,
    }


def _running_at(vp: plan.VMPlan) -> dict[str, list[str]] | None:
    """`{"known": [...], "maybe": [...]}` (power unknown there); None when not observed."""
    o = vp.observed
    if not vp.fabric_observed:
        return None
    if o is None:
        return {"known": [], "maybe": []}
    return {"known": list(o.running), "maybe": list(o.power_unknown)}


def observed_text(vp: plan.VMPlan) -> str:
    """What the fabric reports of `vp`, in brief: `drctl status`'s OBSERVED column."""
    o = vp.observed
    if not vp.fabric_observed:
        return "(unknown: fabric not observed)"
    if o is None:
        return "(not in fabric)"
    if o.power_unknown:
        # Briefly, where it runs and where it may (`rtm?`): Unknown is never "off".
        runs = ",".join([*o.running, *(f"{site}?" for site in o.power_unknown)])
        return f"{o.active_site} {o.replication_text} runs {runs}"
    return f"{o.active_site} {o.replication_text}"


def job_text(vp: plan.VMPlan) -> str:
    """`vp`'s running job and its progress (`PlannedFailover 40%`), or `-`."""
    o = vp.observed
    if o is None or o.job is None or not o.job.running:
        return "-"
    return f"{o.job.operation} {o.job.progress:.0%}"


def rows(vms: Iterable[plan.VMPlan], reason: bool = True) -> list[list[str]]:
    """The table, header first; REASON last (`reason`), as long as it needs."""
    head = [*HEADER, "REASON"] if reason else list(HEADER)
    table = [head]
    for vp in vms:
        cells = [
            vp.plan,
            vp.name,
            f"{vp.desired.active_site} {vp.desired.replication_text}",
            observed_text(vp),
            str(vp.phase),
            running_text(vp),
            job_text(vp),
            waiting_cell(vp),
            next_step(vp),
        ]
        table.append([*cells, vp.reason] if reason else cells)
    return table
