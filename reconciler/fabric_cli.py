"""The `drctl fabric ...` commands that drive the embedded simulated fabric."""

from __future__ import annotations

import argparse
from typing import Any


def add_commands(commands: Any) -> None:
    """Register `drctl fabric` and its subcommands (filled in by the simulator issue)."""
    fabric = commands.add_parser("fabric", help="drive the embedded simulated two-site fabric")
    fabric.add_subparsers(dest="fabric_command", required=True)
    _ = argparse
