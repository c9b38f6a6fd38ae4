"""Options that several `drctl` commands share, apart from the parser that uses them.

`cli.main` and `cli.fabric` both add `--state-dir`; keeping it here spares
`cli.fabric` an import of `cli.main` (which imports it back lazily). The
executor's flags (`apply`, `run`) and `--output` live here too, for
`cli.main`, `cli.planning` and `cli.applying`.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reconciler.engine import execute, journal_backend

DEFAULT_STATE_DIR = ".drctl"
# A command's handler: the parsed arguments in, the exit code out.
Handler = Callable[[argparse.Namespace], int]


def state_dir_arg(parser: argparse.ArgumentParser) -> None:
    """Add `--state-dir` (default $DRCTL_STATE_DIR, else .drctl)."""
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(os.environ.get("DRCTL_STATE_DIR") or DEFAULT_STATE_DIR),
        help="where drctl keeps its state (default: $DRCTL_STATE_DIR or .drctl)",
    )


def shared_journal(state_dir: Path) -> journal_backend.Backend | None:
    """The journal in etcd of the replica whose state dir this is (`run --lock`), else None."""
    from reconciler.engine import etcd_gateway, journal_etcd, status

    said = status.read_status(state_dir)
    lock = None if said is None or said.replica is None else said.replica.get("lock")
    if not isinstance(lock, str):
        return None
    target = etcd_gateway.parse_target(lock)
    return journal_etcd.EtcdJournal(etcd_gateway.Gateway(target.endpoints), target)


def executor_args(parser: argparse.ArgumentParser, poll_interval: float) -> None:
    """How `apply` and `run` poll jobs and retry failures."""
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=poll_interval,
        metavar="SECONDS",
        help=f"how often to poll the fabric while jobs run (default {poll_interval:g})",
    )
    parser.add_argument(
        "--retry-backoff",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="wait after a failed job, doubled per failure (default 2)",
    )
    parser.add_argument(
        "--max-attempts",
        type=int,
        default=3,
        help="failed attempts per VM, operation and revision before Blocked",
    )
    parser.add_argument(
        "--max-parallel",
        type=positive,
        metavar="N",
        help="operations in flight across every plan and fabric (default: each plan's own "
        "policy.maxParallel only)",
    )
    max_failovers_arg(parser)


def max_failovers_arg(parser: argparse.ArgumentParser, lead: str = "") -> None:
    """The blast radius across every plan (`run`, `apply`; `plan` shows what they would do)."""
    parser.add_argument(
        "--max-failovers-per-revision",
        type=positive,
        metavar="N",
        help=f"{lead}a revision that would fail over more VMs than N, across every plan, moves "
        "none of them (default: no limit beyond each plan's policy.maxFailoversPerRevision)",
    )


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
    return value


def settings_of(args: argparse.Namespace) -> execute.Settings:
    """How `apply` and `run` execute, from the flags `executor_args` added."""
    from reconciler.engine import execute

    return execute.Settings(
        poll_interval=args.poll_interval,
        backoff_base=args.retry_backoff,
        max_attempts=args.max_attempts,
        max_parallel=args.max_parallel,
        max_failovers_per_revision=args.max_failovers_per_revision,
    )


def output_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--output",
        choices=["text", "json"],
        default="text",
        help="text for people (default), json for scripts (a contract: README)",
    )
