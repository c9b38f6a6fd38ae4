"""The shipped systemd unit leaves the daemon the files it needs beside its metrics port."""

from __future__ import annotations

import configparser
from pathlib import Path

from reconciler.engine import endpoint

UNIT = Path(__file__).parent.parent / "deploy" / "systemd" / "drctl.service"


def test_the_unit_raises_the_open_file_limit_well_past_the_metrics_ports_bound() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read_string(UNIT.read_text())
    limit = int(unit["Service"]["LimitNOFILE"])
    # systemd's default soft limit is 1,024: with it, 1,016 idle connections once
    # took the daemon down. The port holds at most 64 whatever the limit.
    assert limit > 1024
    assert endpoint.default_max_connections(limit) == endpoint.MAX_CONNECTIONS
