"""Fixtures of the simulator's tests: each test module names its `START` and `INVENTORY`.

`clock` is a virtual clock at the module's START; `fabric` is a new
simulated fabric of the module's INVENTORY on that clock, closed after the test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from builders import sim_fabric

from reconciler.fabric.sim import provider as sim
from reconciler.kits.clock import VirtualClock


@pytest.fixture
def clock(request: pytest.FixtureRequest) -> VirtualClock:
    return VirtualClock(request.module.START)


@pytest.fixture
def fabric(
    request: pytest.FixtureRequest, tmp_path: Path, clock: VirtualClock
) -> Iterator[sim.SimFabric]:
    fabric = sim_fabric(tmp_path, request.module.INVENTORY, clock)
    yield fabric
    fabric.close()
