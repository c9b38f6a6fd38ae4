"""Options that several `drctl` commands share, apart from the parser that uses them.

`cli.main` and `cli.fabric` both add `--state-dir`; keeping it here spares
`cli.fabric` an import of `cli.main` (which imports it back lazily).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reconciler.engine import journal_backend

DEFAULT_STATE_DIR = ".drctl"


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
