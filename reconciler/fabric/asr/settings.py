"""What the ASR provider is opened with: the vault, the endpoint, the credential, the sites.

`asr.provider.open_provider` builds an `AsrSettings` from the Fabric
declaration (`FabricConfig.settings`, as `core.spec` validated it: keys as the
YAML spells them); `asr.client` and `asr.reading` read it. Pure. Nothing here
is secret: `credential` names an azure-identity class, never a key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from reconciler import errors
from reconciler.fabric.config import FabricConfig

DEFAULT_ENDPOINT = "https://management.azure.com"

# Azure Resource Manager's token buckets per subscription and principal (2024):
# reads 250 burst refilled at 25/s, writes 200 burst at 10/s. The client-side
# bucket uses the same rates unless the declaration says otherwise.
READS_BURST, READS_PER_SECOND = 250.0, 25.0
WRITES_BURST, WRITES_PER_SECOND = 200.0, 10.0

# What each credential name is, for the errors that name it.
CREDENTIALS = {
    "default": (
        "DefaultAzureCredential (environment, workload identity, managed identity, az login)"
    ),
    "cli": "AzureCliCredential (the az on PATH: check `az account show`, or run `az login`)",
    "environment": (
        "EnvironmentCredential (AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET or "
        "AZURE_CLIENT_CERTIFICATE_PATH)"
    ),
    "managedIdentity": "ManagedIdentityCredential (the identity of this machine or pod)",
    "workloadIdentity": (
        "WorkloadIdentityCredential (AZURE_FEDERATED_TOKEN_FILE, AZURE_CLIENT_ID, AZURE_TENANT_ID)"
    ),
}


@dataclass(frozen=True)
class ItemRef:
    """Where a protected item is in the vault: the ARM names (not the friendly ones) of its path."""

    fabric: str
    container: str
    name: str


@dataclass(frozen=True)
class Rates:
    """The client-side token buckets, in requests (burst) and requests per second."""

    reads_burst: float = READS_BURST
    reads_per_second: float = READS_PER_SECOND
    writes_burst: float = WRITES_BURST
    writes_per_second: float = WRITES_PER_SECOND


@dataclass(frozen=True)
class AsrSettings:
    fabric: str  # the Fabric's name in drctl
    subscription_id: str
    resource_group: str
    vault: str
    endpoint: str = DEFAULT_ENDPOINT
    credential: str = "default"
    # site -> the friendly name of its protection container; None: the Azure side
    sites: Mapping[str, str | None] = field(default_factory=dict)
    rates: Rates = Rates()

    @property
    def credential_text(self) -> str:
        return f"credential '{self.credential}', {CREDENTIALS.get(self.credential, '?')}"

    def site_of_container(self, container: str | None) -> str | None:
        """The site whose protection container has the friendly name `container`."""
        for site, name in self.sites.items():
            if name is not None and name == container:
                return site
        return None

    @property
    def azure_site(self) -> str | None:
        return next((site for site, name in self.sites.items() if name is None), None)


def from_config(config: FabricConfig) -> AsrSettings:
    """The settings of a declared asr Fabric; TerminalError when they are not (a bug)."""
    raw = config.settings
    try:
        sites_raw = raw["sites"]
        assert isinstance(sites_raw, Mapping)  # noqa: S101 (validated by core.spec)
        sites = {
            str(name): (None if "azure" in site else str(site["protectionContainer"]))
            for name, site in sites_raw.items()
        }
        return AsrSettings(
            fabric=config.name,
            subscription_id=str(raw["subscriptionId"]),
            resource_group=str(raw["resourceGroup"]),
            vault=str(raw["vault"]),
            endpoint=str(raw.get("endpoint", DEFAULT_ENDPOINT)).rstrip("/"),
            credential=str(raw.get("credential", "default")),
            sites=sites,
            rates=_rates(raw.get("rates")),
        )
    except (KeyError, TypeError, AssertionError) as exc:
        raise errors.TerminalError(
            f"fabric '{config.name}': its asr settings are incomplete ({exc}): "
            "declare subscriptionId, resourceGroup, vault and each site's protectionContainer"
        ) from exc


def _rates(raw: object) -> Rates:
    """The declared bucket rates (spec.asr.rates), ARM's own for those left out."""
    if not isinstance(raw, Mapping):
        return Rates()
    default = Rates()
    return Rates(
        float(raw.get("readsBurst", default.reads_burst)),
        float(raw.get("readsPerSecond", default.reads_per_second)),
        float(raw.get("writesBurst", default.writes_burst)),
        float(raw.get("writesPerSecond", default.writes_per_second)),
    )
