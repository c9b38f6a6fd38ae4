"""The `asr:` Fabric declaration: what it holds, every mistake at its file:line, no secret in git."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from reconciler.errors import SpecError
from reconciler.fabric import config
from reconciler.fabric.asr import settings
from reconciler.gitops import specdir

SUBSCRIPTION = "7f3c2a9e-5b1d-4c8e-9a6f-2d4b8e1c0a53"


def declaration(
    asr: str = f"{{subscriptionId: {SUBSCRIPTION}, resourceGroup: rg-dr, vault: vault-dr}}",
    sites: str = "{ams: {protectionContainer: cloud-ams}, rtm: {protectionContainer: cloud-rtm}}",
) -> str:
    return textwrap.dedent(f"""\
        apiVersion: drctl/v1
        kind: Fabric
        metadata: {{name: contoso}}
        spec:
          asr: {asr}
          sites: {sites}
        """)


def located(directory: Path) -> list[tuple[int, str]]:
    with pytest.raises(SpecError) as caught:
        specdir.load_specs(directory)
    return [(p.line, p.message) for p in caught.value.problems]


def test_the_issue_declaration_loads_with_its_defaults(tmp_path: Path) -> None:
    (tmp_path / "contoso.yaml").write_text(
        textwrap.dedent(f"""\
            apiVersion: drctl/v1
            kind: Fabric
            metadata: {{name: contoso}}
            spec:
              asr:
                subscriptionId: {SUBSCRIPTION}
                resourceGroup: rg-dr
                vault: vault-dr
                endpoint: https://management.azure.com   # optional: the ARM endpoint
                credential: default
              sites:
                ams: {{protectionContainer: cloud-ams}}   # the VMM cloud's friendly name
                rtm: {{protectionContainer: cloud-rtm}}
            """)
    )
    (tmp_path / "finance.yaml").write_text(
        textwrap.dedent("""\
            apiVersion: drctl/v1
            kind: RecoveryPlan
            metadata: {name: finance}
            spec:
              sites: [ams, rtm]
              defaults: {activeSite: ams, replication: ams->rtm}
              vms: [{name: sql01}]
            """)
    )
    desired = specdir.load_specs(tmp_path)
    (fabric,) = desired.fabrics
    assert (fabric.name, fabric.kind, fabric.sites) == ("contoso", "asr", ("ams", "rtm"))
    assert [p.fabric for p in desired.plans] == ["contoso"]
    opened = settings.from_config(config.from_spec(fabric, tmp_path))
    assert opened == settings.AsrSettings(
        fabric="contoso",
        subscription_id=SUBSCRIPTION,
        resource_group="rg-dr",
        vault="vault-dr",
        endpoint="https://management.azure.com",
        credential="default",
        sites={"ams": "cloud-ams", "rtm": "cloud-rtm"},
    )


def test_hyperv_to_azure_declares_the_azure_side_and_the_credential(tmp_path: Path) -> None:
    asr = f"{{subscriptionId: {SUBSCRIPTION}, resourceGroup: rg, vault: v, credential: cli}}"
    sites = "{ams: {protectionContainer: hv-site-ams}, azure-we: {azure: {}}}"
    (tmp_path / "f.yaml").write_text(declaration(asr, sites))
    (fabric,) = specdir.load_specs(tmp_path).fabrics
    opened = settings.from_config(config.from_spec(fabric, tmp_path))
    assert (opened.credential, dict(opened.sites), opened.azure_site) == (
        "cli",
        {"ams": "hv-site-ams", "azure-we": None},
        "azure-we",
    )


@pytest.mark.parametrize(
    ("asr", "line", "message"),
    [
        (
            f"{{subscriptionId: {SUBSCRIPTION}, vault: v}}",
            5,
            "missing required key 'resourceGroup' in spec.asr",
        ),
        (
            "{subscriptionId: contoso-prod, resourceGroup: rg, vault: v}",
            5,
            (
                "spec.asr.subscriptionId: must be the subscription's id, a UUID like "
                "7f3c2a9e-5b1d-4c8e-9a6f-2d4b8e1c0a53, not 'contoso-prod'"
            ),
        ),
        (
            (
                f"{{subscriptionId: {SUBSCRIPTION}, resourceGroup: rg, vault: v, "
                "endpoint: 'http://arm.local'}"
            ),
            5,
            (
                "spec.asr.endpoint: must be an https:// URL of the ARM endpoint (e.g. "
                "https://management.azure.com; TLS verification is always on, a private CA is "
                "trusted through REQUESTS_CA_BUNDLE), not 'http://arm.local'"
            ),
        ),
        (
            f"{{subscriptionId: {SUBSCRIPTION}, resourceGroup: rg, vault: v, valut: w}}",
            5,
            "unknown key 'valut' in spec.asr: remove it or fix its spelling",
        ),
    ],
)
def test_a_wrong_setting_is_an_error_at_its_line(
    tmp_path: Path, asr: str, line: int, message: str
) -> None:
    (tmp_path / "f.yaml").write_text(declaration(asr))
    assert located(tmp_path) == [(line, message)]


def test_each_site_names_its_protection_container_or_is_azure(tmp_path: Path) -> None:
    (tmp_path / "f.yaml").write_text(
        declaration(sites="{ams: {}, rtm: {protectionContainer: c, azure: {}}}")
    )
    expected = (
        "of an asr Fabric names exactly one of protectionContainer (the friendly name ASR "
        "shows for its VMM cloud or Hyper-V site) and azure: {} (the Azure side), e.g. "
    )
    assert located(tmp_path) == [
        (6, f"site 'ams' {expected}{{protectionContainer: cloud-ams}}"),
        (6, f"site 'rtm' {expected}{{protectionContainer: cloud-rtm}}"),
    ]
    both = tmp_path / "both"
    both.mkdir()
    (both / "f.yaml").write_text(declaration(sites="{a: {azure: {}}, b: {azure: {}}}"))
    assert located(both) == [
        (
            6,
            (
                "at most one site of an asr Fabric is azure: {}: the other is the VMM cloud or "
                "Hyper-V site that replicates to Azure"
            ),
        )
    ]


def test_a_simulated_site_takes_no_asr_settings(tmp_path: Path) -> None:
    (tmp_path / "f.yaml").write_text(
        declaration(asr="{}")
        .replace("asr: {}", "simulator: {}")
        .replace("{ams: {protectionContainer: cloud-ams}", "{ams: {protectionContainer: x}")
    )
    assert located(tmp_path) == [
        (
            6,
            (
                "unknown key 'protectionContainer' in spec.sites.ams: a simulated site has no "
                "settings, write {}"
            ),
        ),
        (
            6,
            (
                "unknown key 'protectionContainer' in spec.sites.rtm: a simulated site has no "
                "settings, write {}"
            ),
        ),
    ]


@pytest.mark.parametrize("value", ["cli", "managedIdentity", "workloadIdentity", "environment"])
def test_credential_names_a_kind_of_credential_not_a_secret(tmp_path: Path, value: str) -> None:
    asr = f"{{subscriptionId: {SUBSCRIPTION}, resourceGroup: rg, vault: v, credential: {value}}}"
    (tmp_path / "f.yaml").write_text(declaration(asr))
    (fabric,) = specdir.load_specs(tmp_path).fabrics
    assert fabric.settings["credential"] == value


@pytest.mark.parametrize(
    "setting",
    ["credential: 'Zx9~Qv8.secretvalue'", "clientSecret: 'Zx9~Qv8.secretvalue'"],
)
def test_a_secret_in_the_declaration_is_refused_without_echoing_it(
    tmp_path: Path, setting: str
) -> None:
    asr = f"{{subscriptionId: {SUBSCRIPTION}, resourceGroup: rg, vault: v, {setting}}}"
    (tmp_path / "f.yaml").write_text(declaration(asr))
    ((line, message),) = located(tmp_path)
    assert line == 5
    assert "secret" in message
    assert "Zx9~Qv8" not in message
    if setting.startswith("credential"):
        assert message.startswith(
            "spec.asr.credential names how drctl authenticates, one of default, cli, "
            "environment, managedIdentity, workloadIdentity (its value is not shown"
        )


def test_the_request_rates_default_to_arms_and_may_be_declared(tmp_path: Path) -> None:
    base = f"subscriptionId: {SUBSCRIPTION}, resourceGroup: rg, vault: v"
    (tmp_path / "f.yaml").write_text(declaration(f"{{{base}, rates: {{readsPerSecond: 5}}}}"))
    (fabric,) = specdir.load_specs(tmp_path).fabrics
    rates = settings.from_config(config.from_spec(fabric, tmp_path)).rates
    assert rates == settings.Rates(250, 5, 200, 10)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "f.yaml").write_text(declaration(f"{{{base}, rates: {{writesBurst: 0}}}}"))
    assert located(bad) == [(5, "spec.asr.rates.writesBurst: Input should be greater than 0")]
