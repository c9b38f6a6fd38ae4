"""The handlers of `drctl fabric ...`: each opens a simulated fabric, does one thing, prints it.

Called through `cli.fabric`'s parser only; `--fabric NAME` picks a declared
simulated fabric (its data in `<state-dir>/fabrics/NAME`), the default the
embedded one in the state dir itself.
"""

from __future__ import annotations

import argparse
import json
import math
from datetime import datetime
from pathlib import Path
from typing import Any

from reconciler import errors
from reconciler.core.desired import EMBEDDED_FABRIC
from reconciler.core.state import Job, Observed, ObservedVM, Operation, ProtectionState
from reconciler.engine import journal
from reconciler.engine import state_dir as layout
from reconciler.engine.lease import flock
from reconciler.fabric import base, config
from reconciler.fabric.sim import inventory
from reconciler.fabric.sim import provider as sim
from reconciler.kits.clock import WallClock
from reconciler.ui import report

LAST_JOBS_SHOWN = 10


def _dir(args: argparse.Namespace) -> Path:
    return layout.fabric_dir(args.state_dir, args.fabric)


def _open(args: argparse.Namespace) -> sim.SimFabric:
    return sim.open_provider(
        config.FabricConfig(args.fabric, config.SIMULATOR, _dir(args)), WallClock()
    )


def _named(args: argparse.Namespace) -> str:
    return "" if args.fabric == EMBEDDED_FABRIC else f"fabric '{args.fabric}': "


def unreachable(args: argparse.Namespace) -> int:
    with _open(args) as fabric:
        changed = fabric.set_reachable(False)
    state = "is now unreachable" if changed else "was already unreachable"
    print(
        f"{_named(args) or 'the fabric '}{state}: drctl's calls fail until drctl fabric reachable"
    )
    return errors.EXIT_OK


def reachable(args: argparse.Namespace) -> int:
    with _open(args) as fabric:
        changed = fabric.set_reachable(True)
    print(f"{_named(args) or 'the fabric '}{'is reachable again' if changed else 'was reachable'}")
    return errors.EXIT_OK


def init(args: argparse.Namespace) -> int:
    inv = inventory.load_inventory(args.inventory)
    # Not under a running apply or daemon: they would follow jobs that vanish.
    with flock.hold(args.state_dir, "fabric init"):
        replaced = sim.init_fabric(_dir(args), inv)
        abandoned = 0
        if replaced and layout.journal_path(args.state_dir).exists():
            history = journal.Journal(args.state_dir)
            try:
                abandoned = history.abandon_open(
                    WallClock().now(),
                    "the simulated fabric was replaced by drctl fabric init",
                    args.fabric,
                )
            finally:
                history.close()
    what = (
        "replaced the simulated fabric (its VMs, jobs and faults are gone)"
        if replaced
        else "created a simulated fabric"
    )
    print(
        f"{_dir(args)}: {_named(args)}{what}: sites {', '.join(inv.sites)}, {len(inv.vms)} VMs "
        f"from {args.inventory}"
    )
    if abandoned:
        print(f"{abandoned} actions still open in the journal were closed as abandoned")
    return errors.EXIT_OK


def show(args: argparse.Namespace) -> int:
    with _open(args) as fabric:
        observed = fabric.observe()
        jobs = fabric.list_jobs()
    if args.output == "json":
        print(json.dumps(show_document(observed, jobs), indent=2))
    else:
        print(_show_text(observed, jobs))
    return errors.EXIT_OK


def site_down(args: argparse.Namespace) -> int:
    with _open(args) as fabric:
        changed = fabric.site_down(args.site)
    print(
        f"site {args.site} is now disconnected"
        if changed
        else f"site {args.site} was already disconnected"
    )
    return errors.EXIT_OK


def site_up(args: argparse.Namespace) -> int:
    with _open(args) as fabric:
        changed = fabric.site_up(args.site)
    print(
        f"site {args.site} is connected again"
        if changed
        else f"site {args.site} was already connected"
    )
    return errors.EXIT_OK


def partition(args: argparse.Namespace) -> int:
    with _open(args) as fabric:
        changed = fabric.partition(args.site)
    state = "is now cut off" if changed else "was already cut off"
    print(
        f"{_named(args)}the management plane of site {args.site} {state}: its VMs keep "
        f"running, their power reads Unknown until drctl fabric heal {args.site}"
    )
    return errors.EXIT_OK


def heal(args: argparse.Namespace) -> int:
    with _open(args) as fabric:
        changed = fabric.heal(args.site)
    print(
        f"{_named(args)}the management plane of site {args.site} "
        f"{'answers again' if changed else 'was not cut off'}"
    )
    return errors.EXIT_OK


def fail(args: argparse.Namespace) -> int:
    operation = _parse_operation(args.operation)
    with _open(args) as fabric:
        fabric.inject_failure(args.vm, operation, args.times, after_shutdown=args.after_shutdown)
    jobs = "job" if args.times == 1 else f"{args.times} jobs"
    how = " after shutting the source down (no copy runs then)" if args.after_shutdown else ""
    print(f"the next {jobs} of {operation} on {args.vm} will fail{how}")
    return errors.EXIT_OK


def suspend_next(args: argparse.Namespace) -> int:
    operation = _parse_operation(args.operation)
    with _open(args) as fabric:
        fabric.suspend_next(args.vm, operation)
    print(
        f"the next job of {operation} on {args.vm} will suspend half-way, waiting for a "
        f"person: drctl fabric resume JOB{_flag(args)} continues it"
    )
    return errors.EXIT_OK


def resume(args: argparse.Namespace) -> int:
    with _open(args) as fabric:
        job = fabric.resume(args.job)
    print(f"{job.id} ({job.operation} of {job.vm}) runs again")
    return errors.EXIT_OK


def failover(args: argparse.Namespace) -> int:
    op = Operation.UNPLANNED_FAILOVER if args.unplanned else Operation.PLANNED_FAILOVER
    what = (
        "the source keeps running and the writes not yet replicated are lost"
        if args.unplanned
        else "the source is shut down first, nothing is lost"
    )
    return _by_hand(args, base.Request(args.vm, op, args.site), f"to {args.site}; {what}")


def start(args: argparse.Namespace) -> int:
    request = base.Request(args.vm, Operation.START_VM, args.site)
    return _by_hand(args, request, f"at {args.site}")


def stop(args: argparse.Namespace) -> int:
    request = base.Request(args.vm, Operation.STOP_VM, args.site)
    return _by_hand(args, request, f"at {args.site}")


def _by_hand(args: argparse.Namespace, request: base.Request, what: str) -> int:
    with _open(args) as fabric:
        job_id = fabric.start_by_hand(request)
    print(
        f"{job_id} started: {request.operation} of {request.vm} {what} (by hand, as an "
        f"operator in the portal: drctl did not start it); drctl fabric show{_flag(args)} "
        "follows it"
    )
    return errors.EXIT_OK


def _flag(args: argparse.Namespace) -> str:
    """`--fabric NAME` as a follow-up command needs it, or nothing for the embedded fabric."""
    return "" if args.fabric == EMBEDDED_FABRIC else f" --fabric {args.fabric}"


def lag(args: argparse.Namespace) -> int:
    if not math.isfinite(args.seconds):
        raise errors.UsageError(f"lag must be a number of seconds, not {args.seconds}")
    with _open(args) as fabric:
        health = fabric.lag(args.vm, args.seconds)
    if args.seconds:
        print(
            f"replication of {args.vm} now stays {args.seconds:g} s behind (health {health}); "
            f"drctl fabric lag {args.vm} 0 clears it"
        )
    else:
        print(f"replication of {args.vm} no longer lags (health {health})")
    return errors.EXIT_OK


def resync_required(args: argparse.Namespace) -> int:
    with _open(args) as fabric:
        seconds = fabric.resync_required(args.vm, manual=args.manual)
    if seconds is None:
        print(
            f"replication of {args.vm} needs a resync; the fabric does not resync it by "
            "itself: it stays ResyncRequired until a Resync operation"
        )
    else:
        print(
            f"replication of {args.vm} needs a resync; the fabric resyncs it by itself in "
            f"{seconds:g} s"
        )
    return errors.EXIT_OK


def move(args: argparse.Namespace) -> int:
    with _open(args) as fabric:
        fabric.move(args.vm, args.site)
    print(
        f"{args.vm} now runs at {args.site} only, replicating from {args.site} "
        "(failed over by hand, behind drctl's back)"
    )
    return errors.EXIT_OK


def raw_state(args: argparse.Namespace) -> int:
    if args.clear and (args.text is not None or args.description is not None):
        raise errors.UsageError("--clear takes no TEXT and no --description: give one or the other")
    if not args.clear and args.text is None:
        raise errors.UsageError(
            "give the TEXT the VM reports as its protection state, or --clear to end it"
        )
    with _open(args) as fabric:
        fabric.set_raw_state(args.vm, None if args.clear else args.text, args.description)
    if args.clear:
        print(f"{args.vm} reports its own protection state again")
    else:
        described = f" ({args.description})" if args.description else ""
        print(
            f"{args.vm} now reports protection state '{args.text}'{described}, which drctl "
            f"does not know: it is Blocked until drctl fabric raw-state {args.vm} --clear"
            f"{_flag(args)}"
        )
    return errors.EXIT_OK


def rename(args: argparse.Namespace) -> int:
    with _open(args) as fabric:
        ids = fabric.rename(args.vm, args.name)
    if args.name == args.vm:
        print(f"{args.vm} reports its inventory name again")
    else:
        print(f"{args.vm} is now named {args.name} in the fabric, its id unchanged")
    if len(ids) > 1:
        print(
            f"{len(ids)} VMs are named {args.name} (ids {', '.join(ids)}): drctl acts on "
            "neither until all but one are renamed"
        )
    return errors.EXIT_OK


def _parse_operation(text: str) -> Operation:
    """An operation by its ASR name, in any letter case."""
    for op in Operation:
        if op.value.lower() == text.lower():
            return op
    raise errors.UsageError(
        f"unknown operation '{text}': use one of {', '.join(op.value for op in Operation)}"
    )


# ---------------------------------------------------------------------------
# `fabric show` output.


def _timestamp(at: datetime | None) -> str | None:
    """Every timestamp the fabric prints: ISO 8601, UTC, microseconds, `+00:00`."""
    return None if at is None else at.isoformat(timespec="microseconds")


def show_document(observed: Observed, jobs: list[Job]) -> dict[str, Any]:
    """The JSON of `drctl fabric show --output json` (a contract: camelCase keys).

    `"vms"` lists every VM the fabric reports, those that share a name last;
    `"duplicates"` maps each name two or more VMs report to their ids.
    """
    return {
        "sites": [{"name": s.name, "connected": s.connected} for s in observed.sites.values()],
        "vms": [_vm_document(vm) for vm in _every_vm(observed)],
        "jobs": [_job_document(job) for job in jobs],
        "duplicates": {
            name: [vm.vm_id for vm in same] for name, same in observed.duplicates.items()
        },
    }


def _every_vm(observed: Observed) -> list[ObservedVM]:
    return [*observed.vms.values(), *(vm for same in observed.duplicates.values() for vm in same)]


def _vm_document(vm: ObservedVM) -> dict[str, Any]:
    rep = vm.replication
    return {
        "name": vm.name,
        "activeSite": vm.active_site,
        "replication": vm.replication_text,
        "protectionState": str(vm.protection_state),
        "running": list(vm.running),
        "replicationState": "Off" if rep is None else str(rep.state),
        "health": None if rep is None else str(rep.health),
        "lastSync": None if rep is None else _timestamp(rep.last_sync),
        "allowedOperations": sorted(str(op) for op in vm.allowed_operations),
        "job": None if vm.job is None else vm.job.id,
        "testFailover": str(vm.test_failover),
        **report.power_json(vm),
        # Kept between an unplanned failover and its commit, newest first.
        "recoveryPoints": [
            {"id": p.id, "time": _timestamp(p.time), "type": str(p.type)}
            for p in vm.recovery_points
        ],
        "appliedPoint": vm.applied_point,
        # What the fabric itself says, beside drctl's reading above.
        "vmId": vm.vm_id,
        "rawState": vm.raw_state,
        "rawStateDescription": vm.raw_state_description,
        "failoverHealth": vm.failover_health,
        "healthErrors": list(vm.health_errors),
    }


def _job_document(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "vm": job.vm,
        "operation": str(job.operation),
        "state": str(job.state),
        "startedAt": _timestamp(job.started_at),
        "finishedAt": _timestamp(job.finished_at),
        "error": job.error,
        "dataLossSeconds": job.data_loss_seconds,
        "stateDescription": job.state_description,
    }


def _show_text(observed: Observed, jobs: list[Job]) -> str:
    sites = _table(
        ["SITE", "CONNECTED"],
        [[s.name, "yes" if s.connected else "NO"] for s in observed.sites.values()],
    )
    vms = _table(
        ["VM", "ACTIVE", "REPLICATION", "PROTECTION", "RUNNING", "HEALTH", "LAST SYNC", "JOB"],
        [
            [
                vm.name,
                vm.active_site,
                vm.replication_text,
                _protection_cell(vm),
                ",".join([*vm.running, *(f"{s}?" for s in vm.power_unknown)]) or "-",
                "-"
                if vm.replication is None
                else f"{vm.replication.state}/{vm.replication.health}",
                "-" if vm.replication is None else _short(vm.replication.last_sync),
                "-" if vm.job is None else _job_cell(vm.job),
            ]
            for vm in _every_vm(observed)
        ],
    )
    for name, same in observed.duplicates.items():
        ids = ", ".join(vm.vm_id or "(no id)" for vm in same)
        vms += f"\n{len(same)} VMs are named {name} (ids {ids}): drctl acts on neither"
    shown = jobs[-LAST_JOBS_SHOWN:]
    title = f"JOBS (last {len(shown)} of {len(jobs)})" if len(jobs) > len(shown) else "JOBS"
    job_table = (
        _table(
            ["ID", "VM", "OPERATION", "STATE", "STARTED", "FINISHED", "LOSS", "ERROR"],
            [
                [
                    j.id,
                    j.vm,
                    str(j.operation),
                    str(j.state),
                    _short(j.started_at),
                    _short(j.finished_at),
                    "-" if j.data_loss_seconds is None else f"{j.data_loss_seconds:.1f}s",
                    j.error or "",
                ]
                for j in shown
            ],
        )
        if shown
        else "no jobs yet"
    )
    return f"{sites}\n\n{vms}\n\n{title}\n{job_table}"


def _protection_cell(vm: ObservedVM) -> str:
    """The state, with the fabric's own text when drctl does not know it."""
    if vm.protection_state is ProtectionState.UNKNOWN:
        return f"{vm.protection_state}({vm.raw_state})"
    return str(vm.protection_state)


def _job_cell(job: Job) -> str:
    waiting = " SUSPENDED" if job.suspended else ""
    return f"{job.id} {job.operation} {job.progress:.0%}{waiting}"


def _short(at: datetime | None) -> str:
    return "-" if at is None else at.strftime("%H:%M:%S.%f")[:-3]


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=False)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
        for line in [header, *rows]
    ]
    return "\n".join(lines)
