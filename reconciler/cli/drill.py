"""`drctl drill report PLAN`: the last drills of a plan, for an auditor. The parser and handler.

`cli.main.build_parser` calls `add_commands`. The report reads the journal
only (the state dir's, or the shared one in etcd of a `run --lock` replica):
each drill's record, the per-VM times of its test operations, its result and
the achieved test RTO, as JSON or Markdown.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from reconciler import errors
from reconciler.cli import options

DEFAULT_LAST = 10


def add_commands(commands: Any) -> None:  # argparse's private _SubParsersAction
    drill = commands.add_parser("drill", help="drills (spec.drill): reports for auditors")
    sub = drill.add_subparsers(dest="drill_command", required=True)
    report = sub.add_parser(
        "report", help="the last drills of a plan: per-VM times, results, achieved test RTO"
    )
    report.add_argument(
        "plan", metavar="PLAN", help="the plan (metadata.name) whose drills to show"
    )
    report.add_argument(
        "--output",
        choices=("json", "markdown"),
        default="markdown",
        help="markdown for an auditor (default), json for scripts",
    )
    report.add_argument(
        "--last", type=int, default=DEFAULT_LAST, metavar="N", help="how many drills (default 10)"
    )
    options.state_dir_arg(report)
    report.set_defaults(handler=_report)


def _report(args: argparse.Namespace) -> int:
    from reconciler.engine import journal
    from reconciler.engine import state_dir as layout
    from reconciler.ui import drill_report

    history = options.shared_journal(args.state_dir)
    if history is None and layout.journal_path(args.state_dir).exists():
        history = journal.Journal(args.state_dir, writer=False)
    records = [] if history is None else [r for r in history.drills() if r.plan == args.plan]
    records = records[-max(args.last, 0) :] if args.last > 0 else []
    entries = [] if history is None or not records else history.entries()
    if args.output == "json":
        print(json.dumps(drill_report.report_json(args.plan, records, entries), indent=2))
    else:
        sys.stdout.writelines(drill_report.report_markdown(args.plan, records, entries))
    return errors.EXIT_OK
