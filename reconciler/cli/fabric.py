"""The `drctl fabric ...` commands that create, show and break the embedded simulated fabric.

`cli.build_parser` calls `add_commands`; each handler opens the fabric of
`--state-dir` with the wall clock (`providers.sim`), does one thing and prints
what happened. The subcommands, their flags and the JSON of `fabric show` are
a contract used by tests outside this repository.
"""

from __future__ import annotations

import argparse
import json
import math
from datetime import datetime
from pathlib import Path
from typing import Any

from reconciler import errors
from reconciler.cli import main as cli
from reconciler.core.state import Job, Observed, ObservedVM, Operation
from reconciler.engine import journal
from reconciler.engine import state_dir as layout
from reconciler.engine.lease import flock
from reconciler.fabric.sim import inventory
from reconciler.fabric.sim import provider as sim
from reconciler.kits.clock import WallClock

LAST_JOBS_SHOWN = 10


def add_commands(commands: Any) -> None:
    """Register `drctl fabric` and its subcommands."""
    fabric = commands.add_parser("fabric", help="drive the embedded simulated two-site fabric")
    sub = fabric.add_subparsers(dest="fabric_command", required=True)

    init = sub.add_parser(
        "init",
        help="create the simulated fabric from an inventory file "
        "(replaces any fabric in the state dir)",
    )
    init.add_argument("inventory", type=Path, metavar="INVENTORY.yaml")
    init.set_defaults(handler=_init)

    show = sub.add_parser("show", help="show sites, VMs and jobs")
    show.add_argument("--output", choices=["text", "json"], default="text")
    show.set_defaults(handler=_show)

    for name, handler, text in (
        ("site-down", _site_down, "disconnect a site"),
        ("site-up", _site_up, "reconnect a site"),
    ):
        site = sub.add_parser(name, help=text)
        site.add_argument("site", metavar="SITE")
        site.set_defaults(handler=handler)

    fail = sub.add_parser("fail", help="make the next jobs of an operation on a VM fail")
    fail.add_argument("vm", metavar="VM")
    fail.add_argument(
        "operation", metavar="OPERATION", help=f"one of {', '.join(op.value for op in Operation)}"
    )
    fail.add_argument(
        "--times", type=int, default=1, metavar="N", help="how many jobs fail (default 1)"
    )
    fail.set_defaults(handler=_fail)

    lag = sub.add_parser("lag", help="keep replication of a VM SECONDS behind (0 clears it)")
    lag.add_argument("vm", metavar="VM")
    lag.add_argument("seconds", type=float, metavar="SECONDS")
    lag.set_defaults(handler=_lag)

    resync = sub.add_parser("resync-required", help="make replication of a VM need a resync")
    resync.add_argument("vm", metavar="VM")
    resync.set_defaults(handler=_resync_required)

    move = sub.add_parser("move", help="fail a VM over by hand, behind drctl's back (drift)")
    move.add_argument("vm", metavar="VM")
    move.add_argument("site", metavar="SITE")
    move.set_defaults(handler=_move)

    for parser in sub.choices.values():
        cli.state_dir_arg(parser)


def _open(args: argparse.Namespace) -> sim.SimFabric:
    return sim.SimFabric(args.state_dir)


def _init(args: argparse.Namespace) -> int:
    inv = inventory.load_inventory(args.inventory)
    # Not under a running apply or daemon: they would follow jobs that vanish.
    with flock.hold(args.state_dir, "fabric init"):
        replaced = sim.init_fabric(args.state_dir, inv)
        abandoned = 0
        if replaced and layout.journal_path(args.state_dir).exists():
            history = journal.Journal(args.state_dir)
            try:
                abandoned = history.abandon_open(
                    WallClock().now(), "the simulated fabric was replaced by drctl fabric init"
                )
            finally:
                history.close()
    what = (
        "replaced the simulated fabric (its VMs, jobs and faults are gone)"
        if replaced
        else "created a simulated fabric"
    )
    print(
        f"{args.state_dir}: {what}: sites {', '.join(inv.sites)}, {len(inv.vms)} VMs "
        f"from {args.inventory}"
    )
    if abandoned:
        print(f"{abandoned} actions still open in the journal were closed as abandoned")
    return errors.EXIT_OK


def _show(args: argparse.Namespace) -> int:
    with _open(args) as fabric:
        observed = fabric.observe()
        jobs = fabric.list_jobs()
    if args.output == "json":
        print(json.dumps(show_document(observed, jobs), indent=2))
    else:
        print(_show_text(observed, jobs))
    return errors.EXIT_OK


def _site_down(args: argparse.Namespace) -> int:
    with _open(args) as fabric:
        changed = fabric.site_down(args.site)
    print(
        f"site {args.site} is now disconnected"
        if changed
        else f"site {args.site} was already disconnected"
    )
    return errors.EXIT_OK


def _site_up(args: argparse.Namespace) -> int:
    with _open(args) as fabric:
        changed = fabric.site_up(args.site)
    print(
        f"site {args.site} is connected again"
        if changed
        else f"site {args.site} was already connected"
    )
    return errors.EXIT_OK


def _fail(args: argparse.Namespace) -> int:
    operation = parse_operation(args.operation)
    with _open(args) as fabric:
        fabric.inject_failure(args.vm, operation, args.times)
    jobs = "job" if args.times == 1 else f"{args.times} jobs"
    print(f"the next {jobs} of {operation} on {args.vm} will fail")
    return errors.EXIT_OK


def _lag(args: argparse.Namespace) -> int:
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


def _resync_required(args: argparse.Namespace) -> int:
    with _open(args) as fabric:
        seconds = fabric.resync_required(args.vm)
    print(
        f"replication of {args.vm} needs a resync; the fabric resyncs it by itself in {seconds:g} s"
    )
    return errors.EXIT_OK


def _move(args: argparse.Namespace) -> int:
    with _open(args) as fabric:
        fabric.move(args.vm, args.site)
    print(
        f"{args.vm} now runs at {args.site} only, replicating from {args.site} "
        "(failed over by hand, behind drctl's back)"
    )
    return errors.EXIT_OK


def parse_operation(text: str) -> Operation:
    """An operation by its ASR name, in any letter case."""
    for op in Operation:
        if op.value.lower() == text.lower():
            return op
    raise errors.UsageError(
        f"unknown operation '{text}': use one of {', '.join(op.value for op in Operation)}"
    )


# ---------------------------------------------------------------------------
# `fabric show` output.


def timestamp(at: datetime | None) -> str | None:
    """Every timestamp the fabric prints: ISO 8601, UTC, microseconds, `+00:00`."""
    return None if at is None else at.isoformat(timespec="microseconds")


def show_document(observed: Observed, jobs: list[Job]) -> dict[str, Any]:
    """The JSON of `drctl fabric show --output json` (a contract: camelCase keys)."""
    return {
        "sites": [{"name": s.name, "connected": s.connected} for s in observed.sites.values()],
        "vms": [_vm_document(vm) for vm in observed.vms.values()],
        "jobs": [_job_document(job) for job in jobs],
    }


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
        "lastSync": None if rep is None else timestamp(rep.last_sync),
        "allowedOperations": sorted(str(op) for op in vm.allowed_operations),
        "job": None if vm.job is None else vm.job.id,
        "testFailover": str(vm.test_failover),
    }


def _job_document(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "vm": job.vm,
        "operation": str(job.operation),
        "state": str(job.state),
        "startedAt": timestamp(job.started_at),
        "finishedAt": timestamp(job.finished_at),
        "error": job.error,
        "dataLossSeconds": job.data_loss_seconds,
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
                str(vm.protection_state),
                ",".join(vm.running) or "-",
                "-"
                if vm.replication is None
                else f"{vm.replication.state}/{vm.replication.health}",
                "-" if vm.replication is None else _short(vm.replication.last_sync),
                "-" if vm.job is None else f"{vm.job.id} {vm.job.operation} {vm.job.progress:.0%}",
            ]
            for vm in observed.vms.values()
        ],
    )
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


def _short(at: datetime | None) -> str:
    return "-" if at is None else at.strftime("%H:%M:%S.%f")[:-3]


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=False)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
        for line in [header, *rows]
    ]
    return "\n".join(lines)
