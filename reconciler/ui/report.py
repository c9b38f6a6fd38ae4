"""Renders plans, status and apply progress for people (tables, lines) and machines (JSON).

The JSON shapes are a contract (README): `status_json` and `plan_json` are
what scripts outside this repository read; new fields are added after the
existing ones, never in their place. Called by the CLI.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, TextIO, TypeVar

from reconciler.core import plan, state
from reconciler.core.desired import DesiredVM
from reconciler.engine import execute, status
from reconciler.kits import difference
from reconciler.ui import drill_report, status_table

# What `drctl plan` says changes for a VM: the fields the desired state sets,
# as the JSON names them, from what the fabric reports to the desired value.
CHANGE_FIELDS = ("activeSite", "replication")


def job_json(job: state.Job | None) -> dict[str, Any] | None:
    if job is None:
        return None
    return {
        "id": job.id,
        "operation": str(job.operation),
        "state": str(job.state),
        "progress": round(job.progress, 3),
        "targetSite": job.target_site,
        "startedAt": iso(job.started_at),
    }


def iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat(timespec="microseconds")


def _vm_json(vp: plan.VMPlan) -> dict[str, Any]:
    return {
        "plan": vp.plan,
        "name": vp.name,
        "desired": _desired_json(vp.desired),
        "observed": _observed_json(vp.observed),
        "converged": vp.converged,
        "placed": vp.placed,
        "protected": vp.protected,
        "phase": str(vp.phase),
        "reason": vp.reason,
    }


def _desired_json(d: DesiredVM) -> dict[str, Any]:
    return {"activeSite": d.active_site, "replication": d.replication_text}


def _observed_json(o: state.ObservedVM | None) -> dict[str, Any] | None:
    if o is None:
        return None
    return {
        "activeSite": o.active_site,
        "replication": o.replication_text,
        "protectionState": str(o.protection_state),
        "job": job_json(o.job if o.job is not None and o.job.running else None),
        "running": list(o.running),
        "replicationState": None if o.replication is None else str(o.replication.state),
        "replicationHealth": None if o.replication is None else str(o.replication.health),
        "lastSync": iso(o.replication.last_sync) if o.replication else None,
        **power_json(o),
    }


def power_json(o: state.ObservedVM) -> dict[str, Any]:
    """`"power"` by site (`state.ObservedVM.power_by_site`), and `"powerSeenAt"`, when
    the fabric last saw the power it cannot tell now, only when a site's is Unknown.
    `drctl fabric show` writes the same."""
    power: dict[str, Any] = {"power": {site: str(p) for site, p in o.power_by_site().items()}}
    if o.power_unknown:
        power["powerSeenAt"] = iso(o.power_seen_at)
    return power


def plan_changes(vp: plan.VMPlan) -> difference.Change:
    """Field -> (what the fabric reports, the desired value), for each field that differs.

    Empty for a converged VM, found by comparing the two tuples before any
    field is looked at; the old value is None when the VM is not in the fabric.
    Empty too when its fabric could not be observed: what it reports is
    unknown, and unknown is never shown as "not in the fabric".
    """
    if not vp.fabric_observed:
        return {}
    d, o = vp.desired, vp.observed
    seen = None if o is None else (o.active_site, o.replication_text)
    return difference.compare_fields(CHANGE_FIELDS, seen, (d.active_site, d.replication_text))


def _changes_json(vp: plan.VMPlan) -> dict[str, list[Any]]:
    return {name: [old, new] for name, (old, new) in plan_changes(vp).items()}


def _readiness_json(r: plan.Readiness) -> dict[str, Any]:
    return {
        "replicationHealth": r.replication_health,
        "lastSyncAgeSeconds": None
        if r.last_sync_age_seconds is None
        else round(r.last_sync_age_seconds, 3),
        "rpoAtRisk": r.rpo_at_risk,
    }


def status_json(
    built: plan.Plan,
    revision: str,
    daemon: status.DaemonStatus | None = None,
    sites: Sequence[status_table.SiteState] | None = None,
) -> dict[str, Any]:
    """`drctl status --output json`; `"sites"` null where they were not looked at (the page)."""
    return {
        "converged": built.converged,
        "revision": revision,
        "vms": [{**_vm_json(vp), **status_table.vm_json(vp)} for vp in built.vms],
        "unmanaged": list(built.unmanaged),
        "daemon": daemon.to_json() if daemon is not None else None,
        "drills": drill_report.status_json(built),
        "sites": status_table.sites_json(sites),
    }


def status_json_lines(
    built: plan.Plan,
    revision: str,
    daemon: status.DaemonStatus | None = None,
    sites: Sequence[status_table.SiteState] | None = None,
) -> Iterator[str]:
    """`status_json` as the text `drctl status --output json` prints: one VM a line.

    The same document as `json.dumps(status_json(...))` (and /status.json's),
    made as `plan_json_lines` makes the plan's: a line at a time, the parts
    many VMs share encoded once.
    """
    shared = _SharedParts()
    yield f'{{"converged": {_BOOL[built.converged]}, "revision": {_string(revision)},\n'
    yield from _list_lines("vms", (shared.status_vm(vp) for vp in built.vms))
    yield f' "unmanaged": {json.dumps(list(built.unmanaged))},\n'
    yield f' "daemon": {json.dumps(daemon.to_json() if daemon is not None else None)},\n'
    yield f' "drills": {json.dumps(drill_report.status_json(built))},\n'
    yield f' "sites": {json.dumps(status_table.sites_json(sites))}}}\n'


def _action_json(order: int, action: plan.Action) -> dict[str, Any]:
    return {
        "order": order,
        "plan": action.plan,
        "vm": action.vm,
        "operation": str(action.operation),
        "targetSite": action.target_site,
        "shutdownSource": action.shutdown_source,
        "ready": action.ready,
        "waitingFor": list(action.waiting_for),
    }


def plan_json(built: plan.Plan, revision: str, summary: Sequence[str] = ()) -> dict[str, Any]:
    return {
        "converged": built.converged,
        "revision": revision,
        "actions": [_action_json(i + 1, a) for i, a in enumerate(built.actions)],
        "vms": [
            {
                **_vm_json(vp),
                "readiness": _readiness_json(vp.readiness),
                "changes": _changes_json(vp),
            }
            for vp in built.vms
        ],
        "unmanaged": list(built.unmanaged),
        "failoverPaths": dict(built.failover_paths),
        "summary": list(summary),
    }


def plan_json_lines(built: plan.Plan, revision: str, summary: Sequence[str] = ()) -> Iterator[str]:
    """`plan_json` as the text `drctl plan --output json` prints: one action or VM a line.

    The same document as `json.dumps(plan_json(...))`, written a line at a time
    so that 100k VMs never exist at once as a tree of dicts or as one string,
    and with the parts many VMs share encoded once (`_SharedParts`).
    """
    shared = _SharedParts()
    yield f'{{"converged": {_BOOL[built.converged]}, "revision": {_string(revision)},\n'
    actions = (json.dumps(_action_json(i, a)) for i, a in enumerate(built.actions, 1))
    yield from _list_lines("actions", actions)
    yield from _list_lines("vms", (shared.plan_vm(vp) for vp in built.vms))
    yield f' "unmanaged": {json.dumps(list(built.unmanaged))},\n'
    yield f' "failoverPaths": {json.dumps(dict(built.failover_paths))},\n'
    yield f' "summary": {json.dumps(list(summary))}}}\n'


def _list_lines(key: str, items: Iterable[str]) -> Iterator[str]:
    """A list member of the top-level object, one item a line."""
    yield f' "{key}": ['
    separator = "\n  "
    for item in items:
        yield separator + item
        separator = ",\n  "
    yield "],\n" if separator == "\n  " else "\n ],\n"


_BOOL = {True: "true", False: "false"}
# What json.dumps writes for a str (ensure_ascii, the default), without its
# per-call overhead: the C function json.dumps itself calls.
_string = json.encoder.encode_basestring_ascii


class _SharedParts:
    """JSON text of a VM's desired, observed, readiness and changes parts, once per distinct value.

    At rest most VMs share these values (a 100k-VM plan has a handful of
    distinct ones), and encoding them is most of the cost of a VM's line.
    Each cache stops growing at `_SHARED_MAX` values: parts that every VM has
    its own (a reason naming the VM, a running job) are encoded each time.
    """

    def __init__(self) -> None:
        self._desired: dict[tuple[str, tuple[str, str] | None], str] = {}
        self._observed: dict[tuple[Any, ...] | None, str] = {}
        self._readiness: dict[plan.Readiness, str] = {}
        self._rest: dict[tuple[Any, ...], str] = {}
        self._added: dict[tuple[Any, ...], str] = {}

    def plan_vm(self, vp: plan.VMPlan) -> str:
        """One entry of `plan_json`'s vms, as JSON text."""
        desired, observed = self._desired_observed(vp)
        r = vp.readiness
        readiness = self._readiness.get(r)
        if readiness is None:
            readiness = _keep(self._readiness, r, json.dumps(_readiness_json(r)))
        # Everything after the name: the same text for most VMs. The changes
        # follow from desired and observed, so they are found only here, once
        # per distinct rest: a converged VM's (none) cost nothing.
        rest_key = (
            desired,
            observed,
            vp.placed,
            vp.protected,
            vp.phase,
            vp.reason,
            readiness,
            vp.fabric_observed,
        )
        rest = self._rest.get(rest_key)
        if rest is None:
            changes = json.dumps(_changes_json(vp))
            # The keys in the order of _vm_json, then readiness and changes (as plan_json).
            rest = _keep(
                self._rest,
                rest_key,
                f'{_vm_rest(vp, desired, observed)}, "readiness": {readiness}, '
                f'"changes": {changes}}}',
            )
        return f'{{"plan": {_string(vp.plan)}, "name": {_string(vp.name)}, {rest}'

    def status_vm(self, vp: plan.VMPlan) -> str:
        """One entry of `status_json`'s vms, as JSON text."""
        desired, observed = self._desired_observed(vp)
        rest_key = (desired, observed, vp.placed, vp.protected, vp.phase, vp.reason)
        rest = self._rest.get(rest_key)
        if rest is None:
            rest = _keep(self._rest, rest_key, _vm_rest(vp, desired, observed))
        # What `drctl status` adds (where it runs, what it waits for, its next
        # step), keyed by everything `status_table.vm_json` reads: the name
        # only where a Blocked VM's next step may name it (its action, which
        # names it too, makes the key of a VM with one its own).
        o = vp.observed
        added_key = (
            vp.placed,
            vp.protected,
            vp.phase,
            vp.reason,
            vp.action,
            vp.fabric_observed,
            None if o is None else (o.job, o.running, o.power_unknown),
            vp.name if vp.phase is plan.Phase.BLOCKED else None,
        )
        added = self._added.get(added_key)
        if added is None:
            added = _keep(self._added, added_key, json.dumps(status_table.vm_json(vp))[1:])
        return f'{{"plan": {_string(vp.plan)}, "name": {_string(vp.name)}, {rest}, {added}'

    def _desired_observed(self, vp: plan.VMPlan) -> tuple[str, str]:
        """The JSON text of the VM's desired and observed parts."""
        d, o = vp.desired, vp.observed
        desired_key = (d.active_site, d.replication)
        desired = self._desired.get(desired_key)
        if desired is None:
            desired = _keep(self._desired, desired_key, json.dumps(_desired_json(d)))
        observed_key = (
            None
            if o is None
            else (
                o.active_site,
                o.running,
                o.protection_state,
                o.replication,
                o.job,
                o.power_unknown,
                o.power_seen_at,
            )
        )
        observed = self._observed.get(observed_key)
        if observed is None:
            observed = _keep(self._observed, observed_key, json.dumps(_observed_json(o)))
        return desired, observed


def _vm_rest(vp: plan.VMPlan, desired: str, observed: str) -> str:
    """The members of `_vm_json` after the name, in its order, without the closing brace."""
    return (
        f'"desired": {desired}, "observed": {observed}, '
        f'"converged": {_BOOL[vp.converged]}, "placed": {_BOOL[vp.placed]}, '
        f'"protected": {_BOOL[vp.protected]}, "phase": {_string(vp.phase)}, '
        f'"reason": {_string(vp.reason)}'
    )


_SHARED_MAX = 4096
_K = TypeVar("_K")


def _keep(cache: dict[_K, str], key: _K, text: str) -> str:
    if len(cache) < _SHARED_MAX:
        cache[key] = text
    return text


def _table(rows: Sequence[Sequence[str]], out: TextIO) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [c.ljust(w) for c, w in zip(row[:-1], widths[:-1], strict=True)]
        print("  ".join([*cells, row[-1]]).rstrip(), file=out)


# The OBSERVED and JOB cells, for the status page too (ui/status_table.py).
observed_text = status_table.observed_text
job_text = status_table.job_text


def print_daemon(daemon: status.DaemonStatus | None, revision: str, out: TextIO) -> None:
    """What a running `drctl run` on this state dir acts on, when that is news."""
    if daemon is None:
        return
    in_force = daemon.revision_in_force
    if in_force is None:
        line = (
            f"daemon (pid {daemon.pid}): no revision in force (no valid one seen): acts on nothing"
        )
    else:
        line = f"daemon (pid {daemon.pid}): revision in force {in_force}"
        if in_force != revision:
            line += f"; not yet {revision}"
    print(line, file=out)
    for problem in daemon.spec_errors:
        print(f"  newest revision invalid, kept out: {problem}", file=out)
    if daemon.refused is not None:
        rev, reasons = daemon.refused
        for reason in reasons:
            print(f"  newest revision {rev} refused, kept out: {reason}", file=out)
    if daemon.untrusted is not None:
        rev = daemon.untrusted.revision
        for reason in daemon.untrusted.reasons:
            print(f"  newest revision {rev} not signed as required, kept out: {reason}", file=out)
    if daemon.replica is not None:
        _print_replica(daemon.replica, in_force, out)
    if daemon.revision_error is not None:
        print(f"  the spec revision cannot be read: {daemon.revision_error}", file=out)
    if daemon.state_problem is not None:
        print(f"  starts nothing: {daemon.state_problem}", file=out)
    for warning in daemon.state_warnings:
        print(f"  warning: {warning}", file=out)


def print_status(
    built: plan.Plan,
    revision: str,
    out: TextIO | None = None,
    daemon: status.DaemonStatus | None = None,
    sites: Sequence[status_table.SiteState] = (),
) -> None:
    out = out or sys.stdout  # looked up now: the caller may have redirected it
    print(f"revision {revision}", file=out)
    print_daemon(daemon, revision, out)
    _table(status_table.rows(built.vms), out)
    if built.unmanaged:
        print(
            f"unmanaged (in the fabric, in no spec; never touched): {', '.join(built.unmanaged)}",
            file=out,
        )
    for line in drill_report.status_lines(built):
        print(line, file=out)
    for line in status_table.site_lines(sites):
        print(line, file=out)
    done = sum(vp.converged for vp in built.vms)
    verdict = "converged" if built.converged else "not converged"
    print(f"{done}/{len(built.vms)} VMs converged: {verdict}", file=out)


def print_plan(
    built: plan.Plan, revision: str, out: TextIO | None = None, summary: Sequence[str] = ()
) -> None:
    out = out or sys.stdout  # looked up now: the caller may have redirected it
    if summary:
        # What a reviewer approves, first (ui/summary.py): a line per plan.
        print(f"plan of revision {revision}:", file=out)
        for line in summary:
            print(f"  {line}", file=out)
        print(file=out)
    print(f"revision {revision}", file=out)
    if built.actions:
        print("actions, in order:", file=out)
        for i, a in enumerate(built.actions, 1):
            where = f" -> {a.target_site}" if a.target_site else ""
            when = "ready" if a.ready else f"after {', '.join(a.waiting_for)}"
            print(f"  {i:>3}. {a.plan}/{a.vm}: {a.operation}{where} ({when})", file=out)
    else:
        print("no actions", file=out)
    if built.failover_paths:
        print("failover path of each plan that moves:", file=out)
        for name, path in built.failover_paths.items():
            print(f"  {name}: {path}", file=out)
    at_risk = [vp for vp in built.vms if vp.readiness.rpo_at_risk]
    if at_risk:
        print("RPO at risk (replication behind or unhealthy):", file=out)
        for vp in at_risk:
            age = vp.readiness.last_sync_age_seconds
            ago = "never" if age is None else f"{age:.0f}s ago"
            print(
                f"  {vp.plan}/{vp.name}: health {vp.readiness.replication_health}, last sync {ago}",
                file=out,
            )
    changing = [(vp, found) for vp in built.vms if not vp.converged if (found := plan_changes(vp))]
    if changing:
        print("what changes (what the fabric reports -> the desired state):", file=out)
        for vp, found in changing:
            print(f"  {vp.plan}/{vp.name}", file=out)
            for name, (old, new) in found.items():
                print(f"    {name}: {'(not in fabric)' if old is None else old} -> {new}", file=out)
    print(file=out)
    print_status(built, revision, out)


def event_operation(event: execute.Event) -> str:
    """The operation of an action, and its target site: `PlannedFailover -> rtm`."""
    where = f" -> {event.target_site}" if event.target_site else ""
    return f"{event.operation}{where}"


def event_outcome(event: execute.Event) -> str:
    """What became of an action, in a line (apply's progress, the status page)."""
    if event.kind is execute.EventKind.STARTED:
        return f"started ({event.job_id})"
    if event.kind is execute.EventKind.ADOPTED:
        return f"still running from an earlier drctl ({event.job_id}): following it"
    if event.kind is execute.EventKind.SUCCEEDED:
        loss = ""
        if event.data_loss_seconds:
            loss = f", {event.data_loss_seconds:.1f}s of writes lost"
        return f"succeeded in {event.seconds or 0:.1f}s{loss}"
    return f"{event.kind}: {event.error}"


def _print_replica(replica: dict[str, Any], in_force: str | None, out: TextIO) -> None:
    """A replica of `--lock etcd://...`: whom it follows, and the replicas acting on another
    revision than this one's (each watches a clone of its own)."""
    role = "leads" if replica.get("leading") else f"follows {replica.get('leader') or 'no one yet'}"
    print(f"  replica {replica.get('identity')} {role} on {replica.get('lock')}", file=out)
    for name, revision in sorted(dict(replica.get("revisionsInForce") or {}).items()):
        if name != replica.get("identity") and revision != in_force:
            print(f"  replica {name} has revision {revision} in force", file=out)
