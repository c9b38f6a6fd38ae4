"""The status page of `drctl run` (`/` and `/status`): the daemon's last pass as one HTML page.

What an operator looks at on a bad day: each plan's placed and converged
counts, each VM's phase, reason, running job and what it waits for, the
revision in force (and a newer one kept out, with why), the leader, the
actions this daemon saw lately, and drills. It is read-only (no form, no
script, nothing that writes) and self-contained: its style is inline, named
by its hash in the Content-Security-Policy of `HEADERS`, and it loads nothing
else. It refreshes itself with a meta refresh rather than a script, so the
page is the same with JavaScript or without: plain tables. Every text that
comes from a spec or the fabric (names, reasons, errors) is escaped.

`render` reads a `Snapshot` the daemon publishes after each pass, and the
clock of none: the times shown are those of the pass. `ui.status_feed` makes
the page on a worker thread for the metrics endpoint.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import html
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from reconciler.core import plan
from reconciler.engine import event, status
from reconciler.ui import drill_report, report, status_table

REFRESH_SECONDS = 2
# A page of a few thousand rows is what a browser still draws at once; beyond,
# the VMs at rest are left out (counted, and all in /status.json).
MAX_VM_ROWS = 2000

_MOVING = frozenset(
    {
        plan.Phase.STOPPING,
        plan.Phase.STARTING,
        plan.Phase.FAILING_OVER,
        plan.Phase.COMMIT_PENDING,
        plan.Phase.REPROTECTING,
        plan.Phase.SYNCING,
        plan.Phase.DRILLING,
    }
)
_ATTENTION = frozenset(
    {plan.Phase.BLOCKED, plan.Phase.HELD, plan.Phase.WAITING_FOR_USER, plan.Phase.STUCK}
)

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1b1f24;background:#fff}
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.4em 0 .4em}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;vertical-align:top;padding:.25em .6em;border-bottom:1px solid #d8dee4}
th{background:#f3f5f7;font-weight:600;white-space:nowrap}td.n{text-align:right}
td.site{white-space:nowrap}code{font:12px ui-monospace,monospace}
.verdict{font-size:1.15em;font-weight:600;margin:.3em 0}
.ok .k,.verdict.ok{color:#116329}.moving .k,.verdict.moving{color:#0550ae}
.waiting .k{color:#7d4e00}.attention .k,.verdict.attention,li.attention{color:#a40e26}
.k{font-weight:600}.quiet{color:#57606a}ul{margin:.2em 0;padding-left:1.4em}
progress{width:6em;vertical-align:middle}
"""
_STYLE_HASH = base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()

# What the page may load: its own inline style, named by its hash; nothing
# else (no script at all, no image, no frame, no form target).
CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
HEADERS = (
    f"Content-Security-Policy: {CONTENT_SECURITY_POLICY}",
    "X-Content-Type-Options: nosniff",
    "Cache-Control: no-store",
    "Referrer-Policy: no-referrer",
    "X-Frame-Options: DENY",
)
CONTENT_TYPE = "text/html; charset=utf-8"


@dataclass(frozen=True)
class Snapshot:
    """What the daemon knew at the end of a pass; values only, shared with a worker thread."""

    daemon: status.DaemonStatus
    built: plan.Plan | None = None  # the plan of the revision in force; None before one is
    revision: str | None = None  # the revision `built` plans
    recent: tuple[event.Event, ...] = ()  # the actions this daemon saw lately, oldest first
    sites: tuple[status_table.SiteState, ...] | None = None  # each site's connection then


def render(snap: Snapshot, refresh: int = REFRESH_SECONDS, max_vm_rows: int = MAX_VM_ROWS) -> bytes:
    """The whole page, as UTF-8; at most `max_vm_rows` VMs, those not converged first."""
    built = snap.built
    if built is None:
        title, verdict, kind = "no revision in force", "no revision in force: acts on nothing", ""
    else:
        done = sum(vp.converged for vp in built.vms)
        title = f"{done}/{len(built.vms)} VMs converged"
        verdict, kind = _verdict(built, done)
    parts = [
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f'<meta http-equiv="refresh" content="{int(refresh)}">',
        f"<title>drctl: {_e(title)}</title><style>{_STYLE}</style></head><body>",
        "<header><h1>drctl status</h1>",
        f'<p class="verdict {kind or "attention"}" id="verdict">{_e(verdict)}</p>',
        f'<p class="quiet">{_about(snap, refresh)}</p></header>',
        *_daemon_section(snap),
    ]
    if built is not None:
        parts += [*_plans_section(built), *_vms_section(built, max_vm_rows)]
    parts += [*_recent_section(snap.recent)]
    if built is not None:
        parts += [*_drills_section(built), *_unmanaged_section(built)]
    parts.append(
        '<footer><p class="quiet">Read-only: nothing on this page changes anything; what runs '
        "where is changed by a commit to the specs. The same document for scripts: "
        '<a href="/status.json">/status.json</a> (that of <code>drctl status --output json'
        '</code>); metrics: <a href="/metrics">/metrics</a>.</p></footer></body></html>\n'
    )
    return "".join(parts).encode()


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _verdict(built: plan.Plan, done: int) -> tuple[str, str]:
    total = len(built.vms)
    if built.converged:
        return f"converged: {done} of {total} VMs placed and protected", "ok"
    person = sum(plan.waits_for(vp) is plan.Wait.PERSON for vp in built.vms)
    moving = sum(vp.phase in _MOVING for vp in built.vms)
    said = [f"not converged: {done} of {total} VMs"]
    if moving:
        said.append(f"{moving} moving")
    if person:
        said.append(f"{person} waiting for a person")
    return ", ".join(said), "attention" if person else "moving"


def _about(snap: Snapshot, refresh: int) -> str:
    d = snap.daemon
    said = []
    if snap.revision is not None:
        said.append(f"revision in force <code>{_e(snap.revision)}</code>")
    said += [
        f"last pass {_time(d.updated_at)}",
        f"drctl pid {d.pid}",
        f"refreshes every {int(refresh)} s",
    ]
    return " · ".join(said)


def _time(at: datetime) -> str:
    return f'<time datetime="{_e(at.isoformat())}">{_e(at.strftime("%H:%M:%S %Z"))}</time>'


def _daemon_section(snap: Snapshot) -> Iterator[str]:
    """The revision in force and what it keeps out, in `drctl status`'s words; the leader."""
    d = snap.daemon
    out = io.StringIO()
    report.print_daemon(d, d.revision_seen or snap.revision or "", out)
    yield '<h2>Daemon</h2><ul id="daemon">'
    yield f"<li>{_e(_leader(d))}</li>"
    for line in out.getvalue().splitlines():
        kept_out = "kept out" in line or "cannot be read" in line or "starts nothing" in line
        cls = ' class="attention"' if kept_out else ""
        yield f"<li{cls}>{_e(line.strip())}</li>"
    yield "</ul>"


def _leader(d: status.DaemonStatus) -> str:
    r = d.replica
    if r is None:
        return "leader: this daemon, the only one on its state dir (it holds the state dir's lock)"
    me = r.get("identity")
    holder = r.get("leader")
    if r.get("leading"):
        return f"leader: {me} (this replica) on {r.get('lock')}"
    return f"leader: {holder or 'none yet'}; this replica ({me}) follows, on {r.get('lock')}"


def _table(ident: str, head: Iterable[str], rows: Iterable[str]) -> Iterator[str]:
    yield f'<table id="{ident}"><thead><tr>'
    yield "".join(f"<th>{_e(h)}</th>" for h in head)
    yield "</tr></thead><tbody>"
    yield from rows
    yield "</tbody></table>"


def _plans_section(built: plan.Plan) -> Iterator[str]:
    by_plan: dict[str, list[plan.VMPlan]] = collections.defaultdict(list)
    for vp in built.vms:
        by_plan[vp.plan].append(vp)
    yield "<h2>Plans</h2>"
    rows = []
    for name, vms in by_plan.items():
        placed = sum(vp.placed for vp in vms)
        converged = sum(vp.converged for vp in vms)
        person = sum(plan.waits_for(vp) is plan.Wait.PERSON for vp in vms)
        moving = sum(vp.phase in _MOVING for vp in vms)
        kind = "ok" if built.plan_converged(name) else "attention" if person else "moving"
        path = built.failover_paths.get(name, "")
        rows.append(
            f'<tr class="{kind}"><td class="k">{_e(name)}</td><td class="n">{len(vms)}</td>'
            f'<td class="n">{placed}</td><td class="n">{converged}</td>'
            f'<td class="n">{moving}</td><td class="n">{person}</td><td>{_e(path)}</td></tr>'
        )
    head = ("PLAN", "VMS", "PLACED", "CONVERGED", "MOVING", "WAITING FOR A PERSON", "FAILOVER PATH")
    yield from _table("plans", head, rows)


def _vms_section(built: plan.Plan, max_rows: int) -> Iterator[str]:
    shown: Iterable[plan.VMPlan] = built.vms
    left_out = 0
    if len(built.vms) > max_rows:
        unsettled = [vp for vp in built.vms if not vp.converged][:max_rows]
        left_out = len(built.vms) - len(unsettled)
        shown = unsettled
    yield "<h2>VMs</h2>"
    head = ("PLAN", "VM", "DESIRED", "OBSERVED", "PHASE", "JOB", "WAITS FOR", "REASON")
    yield from _table("vms", head, (_vm_row(vp) for vp in shown))
    if left_out:
        yield (
            f'<p class="quiet">{left_out} VMs not shown (converged ones are left out first, '
            f'and any past the first {max_rows}): <a href="/status.json">/status.json</a> '
            "has every VM.</p>"
        )


def _vm_row(vp: plan.VMPlan) -> str:
    phase = vp.phase
    kind = (
        "ok"
        if vp.converged
        else "attention"
        if phase in _ATTENTION
        else "moving"
        if phase in _MOVING
        else "waiting"
    )
    desired = f"{vp.desired.active_site} {vp.desired.replication_text}"
    return (
        f'<tr class="vm {kind}"><td>{_e(vp.plan)}</td><td>{_e(vp.name)}</td>'
        f'<td class="site">{_e(desired)}</td><td class="site">{_e(report.observed_text(vp))}</td>'
        f'<td class="phase k">{_e(phase)}</td><td class="job">{_job_cell(vp)}</td>'
        f'<td class="waits">{_e(status_table.waits_text(vp))}</td>'
        f'<td class="reason">{_e(vp.reason)}</td></tr>'
    )


def _job_cell(vp: plan.VMPlan) -> str:
    o = vp.observed
    if o is None or o.job is None or not o.job.running:
        return "-"
    percent = round(o.job.progress * 100)
    return (
        f'<progress max="100" value="{percent}">{percent}%</progress> '
        f"{_e(report.job_text(vp))} <code>{_e(o.job.id)}</code>"
    )


def _recent_section(recent: tuple[event.Event, ...]) -> Iterator[str]:
    yield "<h2>Recent actions</h2>"
    if not recent:
        yield '<p class="quiet" id="actions">None since this daemon started.</p>'
        return
    rows = (
        f'<tr class="{_EVENT_KIND.get(ev.kind, "waiting")}"><td>{_time(ev.at)}</td>'
        f"<td>{_e(ev.plan)}/{_e(ev.vm)}</td><td>{_e(report.event_operation(ev))}</td>"
        f'<td class="k">{_e(report.event_outcome(ev))}</td></tr>'
        for ev in reversed(recent)
    )
    yield from _table("actions", ("TIME", "VM", "OPERATION", "WHAT BECAME OF IT"), rows)


_EVENT_KIND = {
    event.EventKind.STARTED: "moving",
    event.EventKind.ADOPTED: "moving",
    event.EventKind.SUCCEEDED: "ok",
    event.EventKind.FAILED: "attention",
    event.EventKind.REFUSED: "attention",
}


def _drills_section(built: plan.Plan) -> Iterator[str]:
    lines = list(drill_report.status_lines(built))
    yield "<h2>Drills</h2>"
    if not lines:
        yield '<p class="quiet" id="drills">No drill under way or recorded.</p>'
        return
    yield '<ul id="drills">'
    yield from (f"<li>{_e(line)}</li>" for line in lines)
    yield "</ul>"


def _unmanaged_section(built: plan.Plan) -> Iterator[str]:
    if built.unmanaged:
        yield (
            "<h2>Unmanaged</h2><p>In the fabric, in no spec; never touched: "
            f"{_e(', '.join(built.unmanaged))}</p>"
        )
