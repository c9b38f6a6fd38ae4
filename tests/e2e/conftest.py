"""Fixtures of the end-to-end tests; the machinery is in harness.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e.harness import Site


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    s = Site(tmp_path)
    try:
        yield s
    finally:
        if s.daemon is not None:
            s.daemon.kill()
            s.daemon.wait()
