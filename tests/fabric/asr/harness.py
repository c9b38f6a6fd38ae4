"""The ASR provider against its test server, as the provider contract and the ASR tests use it.

`open_fabric` builds a test vault holding an inventory (`vault.Vault`), serves it
on 127.0.0.1 over HTTPS (`server.ArmServer`), and opens the real provider on it:
the official SDK client with `credential: cli` (the real AzureCliCredential,
which runs the stand-in `az`) and TLS verified against the server's throwaway CA.
`fabrics.asr` wraps it as a contract `Factory`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fabric.asr import identity
from fabric.asr import vault as v
from fabric.asr.controls import VaultControls
from fabric.asr.server import ArmServer

from reconciler.core.state import Job
from reconciler.fabric.asr import bucket, client, settings
from reconciler.fabric.asr.provider import AsrFabric
from reconciler.fabric.sim.inventory import Inventory
from reconciler.kits.clock import Clock, VirtualClock


@dataclass
class AsrUnderTest:
    vault: v.Vault
    server: ArmServer
    controls: VaultControls
    settings: settings.AsrSettings
    clock: Clock
    opened: list[AsrFabric] = field(default_factory=list)

    def open(self, *, verify: str | None = "server", data_dir: Path | None = None) -> AsrFabric:
        """A new provider on the vault; `verify`: the CA file ("server": the server's;
        None: whatever REQUESTS_CA_BUNDLE says); `data_dir`: where it records the
        recovery plans it writes (None: in memory)."""
        buckets = bucket.Buckets(self.settings.rates, self.clock)
        ca = str(self.server.ca_path) if verify == "server" else verify
        arm = client.ArmClient(self.settings, buckets, connection_verify=ca)
        self.opened.append(AsrFabric(self.settings, self.clock, arm, buckets, data_dir=data_dir))
        return self.opened[-1]

    def close(self) -> None:
        for provider in self.opened:
            provider.close()
        self.server.close()


def finish(provider: AsrFabric, clock: VirtualClock, job_id: str) -> Job:
    """Poll `job_id` to its end on the virtual `clock`, a second at a time (two minutes at most)."""
    for _ in range(120):
        job = provider.get_job(job_id)
        if not job.running:
            return job
        clock.advance(1)
    raise AssertionError(f"job {job_id} still runs")


def open_fabric(
    directory: Path,
    clock: Clock,
    inventory: Inventory,
    *,
    retry_after: float = 0,
    page_size: int = 100,
    credential: str = "cli",
    azure: str | None = None,
) -> AsrUnderTest:
    """`azure`: the site of `inventory` that is Azure (Hyper-V to Azure, declared `azure: {}`);
    None: VMM cloud to VMM cloud."""
    directory.mkdir(parents=True, exist_ok=True)
    vault = v.Vault(inventory, clock, page_size=page_size, azure=azure)
    server = ArmServer(vault, directory, retry_after=retry_after, authority=identity.install())
    declared = settings.AsrSettings(
        fabric="contoso",
        subscription_id=vault.subscription,
        resource_group=vault.group,
        vault=vault.vault,
        endpoint=server.endpoint,
        credential=credential,
        sites={
            s.name: None if s.name == azure else s.container_friendly for s in vault.sites.values()
        },
    )
    return AsrUnderTest(vault, server, VaultControls(vault, server), declared, clock)
