"""What the Hyper-V provider is opened with: the hosts of each site, the credential, the transport.

`hyperv.provider.open_provider` builds a `HyperVSettings` from the Fabric
declaration (`FabricConfig.settings`, as `core.spec` validated it: keys as the
YAML spells them); the runners read it. Pure: the declaration names
environment variables, and `secrets` reads them only when a runner is built.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler import errors
from reconciler.fabric.config import FabricConfig

DEFAULT_PORT = 5986
DEFAULT_TIMEOUT = 300.0


@dataclass(frozen=True)
class Site:
    name: str
    hosts: tuple[str, ...]
    replica_broker: str | None = None


@dataclass(frozen=True)
class Credential:
    """One of: a username and password in environment variables, Kerberos, a certificate."""

    username_env: str | None = None
    password_env: str | None = None
    kerberos: bool = False
    pem_file: str | None = None
    key_file: str | None = None

    @property
    def kind(self) -> str:
        if self.kerberos:
            return "kerberos"
        if self.pem_file is not None:
            return "certificate"
        return "password"


@dataclass(frozen=True)
class Transport:
    port: int = DEFAULT_PORT
    tls: bool = True
    ca_bundle: str | None = None
    insecure_skip_verify: bool = False
    auth: str | None = None  # negotiate (default with a password), kerberos, ntlm, credssp
    timeout_seconds: float = DEFAULT_TIMEOUT
    local: str | None = None  # pwsh or powershell.exe: run scripts on this machine


@dataclass(frozen=True)
class HyperVSettings:
    fabric: str
    sites: Mapping[str, Site]
    credential: Credential = Credential()
    transport: Transport = field(default_factory=Transport)

    def site_of(self, host: str) -> str | None:
        """The site a host (or its replica broker) belongs to, by name, case-blind as DNS is."""
        wanted = host.lower()
        for site in self.sites.values():
            names = {h.lower() for h in site.hosts}
            if site.replica_broker:
                names.add(site.replica_broker.lower())
            if wanted in names:
                return site.name
        return None


def from_config(config: FabricConfig) -> HyperVSettings:
    raw: Mapping[str, Any] = config.settings
    cred: Mapping[str, Any] = raw.get("credential") or {}
    cert: Mapping[str, Any] = cred.get("certificate") or {}
    transport: Mapping[str, Any] = raw.get("transport") or {}
    local: Mapping[str, Any] | None = transport.get("local")
    sites: Mapping[str, Mapping[str, Any]] = raw.get("sites") or {}
    if not sites:
        raise errors.TerminalError(f"fabric '{config.name}' declares no Hyper-V hosts")
    return HyperVSettings(
        fabric=config.name,
        sites={
            name: Site(name, tuple(s.get("hosts") or ()), s.get("replicaBroker"))
            for name, s in sites.items()
        },
        credential=Credential(
            username_env=cred.get("usernameEnv"),
            password_env=cred.get("passwordEnv"),
            kerberos="kerberos" in cred,
            pem_file=cert.get("pemFile"),
            key_file=cert.get("keyFile"),
        ),
        transport=Transport(
            port=int(transport.get("port", DEFAULT_PORT)),
            tls=bool(transport.get("tls", True)),
            ca_bundle=transport.get("caBundle"),
            insecure_skip_verify=bool(transport.get("insecureSkipVerify", False)),
            auth=transport.get("auth"),
            timeout_seconds=float(transport.get("timeoutSeconds", DEFAULT_TIMEOUT)),
            local=None if local is None else str(local.get("executable", "pwsh")),
        ),
    )


def secrets(settings: HyperVSettings, environ: Mapping[str, str]) -> tuple[str, str] | None:
    """(username, password) from the environment variables the declaration names; None
    for Kerberos or a certificate. A variable that is not set is an error naming it."""
    cred = settings.credential
    if cred.kind != "password" or cred.username_env is None or cred.password_env is None:
        return None
    missing = [n for n in (cred.username_env, cred.password_env) if not environ.get(n)]
    if missing:
        raise errors.TerminalError(
            f"fabric '{settings.fabric}': environment variable {', '.join(missing)} is not set: "
            "it holds the WinRM credential the declaration names (spec.hyperv.credential)"
        )
    return environ[cred.username_env], environ[cred.password_env]
