"""The Hyper-V provider against the emulator, as the provider contract and the Hyper-V tests use it.

`open_fabric` builds the emulated hosts (one per site, `hv01.<site>.example`)
holding an inventory's replicated VMs, a real journal in the directory for
the provider's steps (`engine.step_log`, with drctl's hard rules), and opens
the real provider with the emulator as its runner. `fabrics.hyperv` wraps it
as a contract `Factory`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fabric.hyperv.controls import HostControls
from fabric.hyperv.emulator import Emulator, State

from reconciler.engine import journal, step_log
from reconciler.fabric.config import FabricConfig
from reconciler.fabric.hyperv import provider as hv
from reconciler.fabric.hyperv import settings
from reconciler.fabric.sim.inventory import Inventory
from reconciler.kits.clock import Clock

FABRIC = "hv"


def host_of(site: str) -> str:
    return f"hv01.{site}.example"


def declared(sites: tuple[str, ...]) -> FabricConfig:
    """The Fabric declaration of these hosts, as `core.spec` hands it to the provider."""
    return FabricConfig(
        FABRIC,
        "hyperv",
        Path(),
        sites,
        {
            "credential": {"kerberos": {}},
            "transport": {"port": 5986, "tls": True},
            "sites": {s: {"hosts": [host_of(s)]} for s in sites},
        },
    )


def state_of(inventory: Inventory) -> State:
    return State(
        hosts={host_of(s): s for s in inventory.sites},
        initial_seconds=inventory.timings.initial_replication,
        resync_seconds=inventory.timings.initial_replication,
    )


def populate(emulator: Emulator, inventory: Inventory) -> None:
    for vm in inventory.vms:
        if vm.replication is not None:
            source, target = vm.replication
            emulator.add_vm(vm.name, host_of(source), host_of(target))
    for recs in emulator.state.records.values():
        for rec in recs.values():
            rec.frequency = inventory.timings.replication_interval


@dataclass
class HyperVUnderTest:
    emulator: Emulator
    controls: HostControls
    journal: journal.Journal
    clock: Clock
    opened: list[hv.HyperVFabric] = field(default_factory=list)

    def open(self) -> hv.HyperVFabric:
        config = declared(tuple(sorted(set(self.emulator.state.hosts.values()))))
        provider = hv.HyperVFabric(settings.from_config(config), self.clock, self.emulator)
        provider.use_step_log(step_log.JournalStepLog(self.journal, FABRIC, "hyperv"))
        self.opened.append(provider)
        return provider

    def close(self) -> None:
        for provider in self.opened:
            provider.close()
        self.journal.close()


def open_fabric(directory: Path, clock: Clock, inventory: Inventory) -> HyperVUnderTest:
    directory.mkdir(parents=True, exist_ok=True)
    emulator = Emulator(state_of(inventory), lambda: clock.now().timestamp())
    populate(emulator, inventory)
    return HyperVUnderTest(emulator, HostControls(emulator), journal.Journal(directory), clock)
