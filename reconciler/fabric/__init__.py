"""Fabrics drctl can drive, each behind the Protocol in `base`.

`open_provider` is the one place that chooses a fabric for a state dir; today
that is always the embedded simulator.
"""

from __future__ import annotations

from pathlib import Path

from reconciler.fabric import base
from reconciler.kits import clock


def open_provider(state_dir: Path, at: clock.Clock) -> base.Provider:
    from reconciler.fabric.sim import provider as sim  # noqa: PLC0415 (only the chosen fabric is imported)

    return sim.SimFabric(state_dir, clock=at)
