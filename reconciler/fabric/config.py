"""What a provider is opened with: one fabric's declaration and where it keeps local data.

The engine builds a `FabricConfig` from a Fabric document (`core.desired.FabricSpec`)
or, when the specs declare none, for the embedded simulator in the state dir;
`fabric.open_provider` hands it to the provider of its kind.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.core.desired import EMBEDDED_FABRIC, FabricSpec

SIMULATOR = "simulator"


@dataclass(frozen=True)
class FabricConfig:
    name: str
    kind: str
    data_dir: Path  # where the provider may keep local data (the simulator's database)
    sites: tuple[str, ...] = ()  # as declared; empty for the embedded simulator
    settings: Mapping[str, object] = field(default_factory=dict)

    @property
    def embedded(self) -> bool:
        return self.name == EMBEDDED_FABRIC


def embedded(state_dir: Path) -> FabricConfig:
    """The simulator in the state dir itself, which plans use when no Fabric is declared."""
    return FabricConfig(EMBEDDED_FABRIC, SIMULATOR, state_dir)


def from_spec(spec: FabricSpec, data_dir: Path) -> FabricConfig:
    return FabricConfig(spec.name, spec.kind, data_dir, spec.sites, spec.settings)
