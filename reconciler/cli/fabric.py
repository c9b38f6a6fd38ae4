"""The `drctl fabric ...` commands that create, show and break a simulated fabric: the parser.

`cli.main.build_parser` calls `add_commands`. The handlers are in
`cli.simulator` and imported only when a `drctl fabric` command runs, so that
every other command (`drctl validate` first) pays nothing for the simulator,
SQLite or the journal. The subcommands, their flags and the JSON of `fabric
show` are a contract used by tests outside this repository.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reconciler.cli import options
from reconciler.core import spec
from reconciler.core.desired import EMBEDDED_FABRIC
from reconciler.core.state import Operation


def _later(name: str) -> Callable[[argparse.Namespace], int]:
    """The handler `name` of `cli.simulator`, imported when it runs."""

    def run(args: argparse.Namespace) -> int:
        from reconciler.cli import simulator

        handler: Callable[[argparse.Namespace], int] = getattr(simulator, name)
        return handler(args)

    return run


def fabric_name(text: str) -> str:
    """`--fabric NAME` as argparse's `type`: a name a Fabric document could have.

    The name becomes a directory under the state dir: `../x` must never get there.
    argparse turns the error into a usage error (exit 2) naming the option.
    """
    if not spec.is_name(text):
        raise argparse.ArgumentTypeError(spec.invalid_name("fabric", text))
    return text


def add_commands(commands: Any) -> None:
    """Register `drctl fabric` and its subcommands."""
    fabric = commands.add_parser("fabric", help="drive the embedded simulated two-site fabric")
    sub = fabric.add_subparsers(dest="fabric_command", required=True)

    init = sub.add_parser(
        "init",
        help="create the simulated fabric from an inventory file "
        "(replaces any fabric in the state dir)",
    )
    init.add_argument(
        "inventory",
        type=Path,
        metavar="INVENTORY.yaml",
        help="the sites and VMs to simulate (examples/inventory.yaml)",
    )
    init.set_defaults(handler=_later("init"))

    show = sub.add_parser("show", help="show sites, VMs and jobs")
    show.add_argument(
        "--output", choices=["text", "json"], default="text", help="text (default) or json"
    )
    show.set_defaults(handler=_later("show"))

    for name, handler, text in (
        ("site-down", _later("site_down"), "disconnect a site"),
        ("site-up", _later("site_up"), "reconnect a site"),
        (
            "partition",
            _later("partition"),
            (
                "cut drctl off from a site's management plane: its VMs keep running and "
                "taking writes, their power reads Unknown"
            ),
        ),
        ("heal", _later("heal"), "end `drctl fabric partition` of a site"),
    ):
        site = sub.add_parser(name, help=text)
        site.add_argument("site", metavar="SITE", help="a site of the fabric")
        site.set_defaults(handler=handler)

    fail = sub.add_parser("fail", help="make the next jobs of an operation on a VM fail")
    fail.add_argument("vm", metavar="VM", help="a VM of the fabric")
    fail.add_argument(
        "operation", metavar="OPERATION", help=f"one of {', '.join(op.value for op in Operation)}"
    )
    fail.add_argument(
        "--times", type=int, default=1, metavar="N", help="how many jobs fail (default 1)"
    )
    fail.add_argument(
        "--after-shutdown",
        action="store_true",
        help="PlannedFailover only: fail after shutting the source down, so that no copy "
        "of the VM runs (still active at the source, protected)",
    )
    fail.set_defaults(handler=_later("fail"))

    suspend = sub.add_parser(
        "suspend-next",
        help="make the next job of an operation on a VM suspend half-way, waiting for a "
        "person (drctl fabric resume JOB continues it)",
    )
    suspend.add_argument("vm", metavar="VM", help="a VM of the fabric")
    suspend.add_argument(
        "operation", metavar="OPERATION", help=f"one of {', '.join(op.value for op in Operation)}"
    )
    suspend.set_defaults(handler=_later("suspend_next"))

    resume = sub.add_parser("resume", help="resume a suspended job, as the person it waits for")
    resume.add_argument("job", metavar="JOB", help="a job id, e.g. job-000042")
    resume.set_defaults(handler=_later("resume"))

    lag = sub.add_parser(
        "lag",
        help="keep replication of a VM SECONDS behind (0 clears it): health Warning past "
        "one replication interval, Critical past five, while it replicates",
    )
    lag.add_argument("vm", metavar="VM", help="a VM of the fabric")
    lag.add_argument("seconds", type=float, metavar="SECONDS", help="how far behind its replica is")
    lag.set_defaults(handler=_later("lag"))

    resync = sub.add_parser("resync-required", help="make replication of a VM need a resync")
    resync.add_argument("vm", metavar="VM", help="a VM of the fabric")
    resync.add_argument(
        "--manual",
        action="store_true",
        help="the fabric does not resync it by itself: replication stays ResyncRequired "
        "until a Resync operation",
    )
    resync.set_defaults(handler=_later("resync_required"))

    _add_report_faults(sub)

    move = sub.add_parser("move", help="fail a VM over by hand, behind drctl's back (drift)")
    move.add_argument("vm", metavar="VM", help="a VM of the fabric")
    move.add_argument("site", metavar="SITE", help="the site it is moved to")
    move.set_defaults(handler=_later("move"))

    # An operator in the portal: real jobs, checked like drctl's, that drctl did not start.
    failover = sub.add_parser(
        "failover",
        help="fail a VM over to SITE by hand, as an operator in the portal would (a job "
        "drctl did not start): planned (source shut down first, nothing lost) by default",
    )
    failover.add_argument("vm", metavar="VM", help="a VM of the fabric")
    failover.add_argument("site", metavar="SITE", help="the site to fail over to")
    failover.add_argument(
        "--unplanned",
        action="store_true",
        help="an unplanned failover: the source is not shut down and the writes not yet "
        "replicated are lost; it ends CommitPending",
    )
    failover.set_defaults(handler=_later("failover"))
    for name, handler, text in (
        ("start", _later("start"), "start the copy of a VM at SITE by hand (operator)"),
        ("stop", _later("stop"), "stop the copy of a VM at SITE by hand (operator)"),
    ):
        power = sub.add_parser(name, help=text)
        power.add_argument("vm", metavar="VM", help="a VM of the fabric")
        power.add_argument("site", metavar="SITE", help="the site of the copy")
        power.set_defaults(handler=handler)

    for name, handler, text in (
        (
            "unreachable",
            _later("unreachable"),
            (
                "cut drctl off from the fabric: every call fails as a network partition "
                "would, while its jobs go on"
            ),
        ),
        ("reachable", _later("reachable"), "end `drctl fabric unreachable`"),
    ):
        sub.add_parser(name, help=text).set_defaults(handler=handler)

    for parser in sub.choices.values():
        options.state_dir_arg(parser)
        parser.add_argument(
            "--fabric",
            type=fabric_name,
            default=EMBEDDED_FABRIC,
            metavar="NAME",
            help="a simulated Fabric the specs declare (default: the embedded one, "
            "which plans use when the specs declare no Fabric)",
        )


def _add_report_faults(sub: Any) -> None:
    """The verbs that change what the fabric reports about a VM, not what the VM does."""
    raw_state = sub.add_parser(
        "raw-state",
        help="make a VM report a raw protection state drctl does not know: drctl blocks "
        "the VM with the text until --clear",
    )
    raw_state.add_argument("vm", metavar="VM", help="a VM of the fabric")
    raw_state.add_argument(
        "text",
        metavar="TEXT",
        nargs="?",
        help="the fabric's text for the state (ASR's protectionState), e.g. "
        "FailoverInProgressUnknownState",
    )
    raw_state.add_argument(
        "--description", metavar="D", help="the fabric's description of it (optional)"
    )
    raw_state.add_argument(
        "--clear", action="store_true", help="report the VM's own protection state again"
    )
    raw_state.set_defaults(handler=_later("raw_state"))

    rename = sub.add_parser(
        "rename",
        help="rename a VM in the fabric, as an operator would: it reports NAME, its id "
        "unchanged; a name two VMs report is a duplicate drctl acts on for neither; "
        "renaming it to its inventory name ends it",
    )
    rename.add_argument("vm", metavar="VM", help="the VM's name in the inventory")
    rename.add_argument("name", metavar="NAME", help="its new name")
    rename.set_defaults(handler=_later("rename"))
