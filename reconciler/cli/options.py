"""Options that several `drctl` commands share, apart from the parser that uses them.

`cli.main` and `cli.fabric` both add `--state-dir`; keeping it here spares
`cli.fabric` an import of `cli.main` (which imports it back lazily).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

DEFAULT_STATE_DIR = ".drctl"


def state_dir_arg(parser: argparse.ArgumentParser) -> None:
    """Add `--state-dir` (default $DRCTL_STATE_DIR, else .drctl)."""
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(os.environ.get("DRCTL_STATE_DIR") or DEFAULT_STATE_DIR),
        help="where drctl keeps its state (default: $DRCTL_STATE_DIR or .drctl)",
    )
