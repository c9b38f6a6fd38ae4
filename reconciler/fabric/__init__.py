"""Fabrics drctl can drive, each behind the Protocol in `base`, and the lazy registry.

`open_provider(config, clock)` imports a provider's module only when a plan
uses that kind, so `drctl validate` and a daemon on the simulator never pay
for the Azure SDK or pypsrp. Fabrics know nothing of each other.
"""

from __future__ import annotations

import importlib

from reconciler import errors
from reconciler.fabric import base
from reconciler.fabric.config import FabricConfig
from reconciler.kits import clock

# kind -> the module whose `open_provider(config, clock)` opens it
_KINDS = {
    "simulator": "reconciler.fabric.sim.provider",
    "asr": "reconciler.fabric.asr.provider",
    "hyperv": "reconciler.fabric.hyperv.provider",
}


def open_provider(config: FabricConfig, at: clock.Clock) -> base.Provider:
    """Open the provider of `config.kind`; the caller closes it (`with` or `close()`)."""
    module_name = _KINDS.get(config.kind)
    if module_name is None:
        raise errors.UsageError(
            f"fabric '{config.name}' is of kind '{config.kind}', which this drctl cannot "
            f"drive: the kinds are {', '.join(sorted(_KINDS))}"
        )
    module = importlib.import_module(module_name)
    provider: base.Provider = module.open_provider(config, at)
    return provider
