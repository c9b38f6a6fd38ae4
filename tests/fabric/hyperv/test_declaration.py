"""The `hyperv:` Fabric declaration: as the issue spells it, mistakes at file:line, no secret in
git, insecureSkipVerify warned; the WinRM connection settings built from it (pypsrp, offline)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pypsrp.wsman import WSMan

from reconciler.errors import SpecError
from reconciler.fabric import config
from reconciler.fabric.hyperv import remoting, settings
from reconciler.gitops import specdir

ISSUE = """\
apiVersion: drctl/v1
kind: Fabric
metadata: {name: hv}
spec:
  hyperv:
    credential: {usernameEnv: DRCTL_HV_USER, passwordEnv: DRCTL_HV_PASSWORD}
    transport: {port: 5986, tls: true, caBundle: /etc/drctl/winrm-ca.pem}
  sites:
    ams: {hosts: [hv01.ams.example, hv02.ams.example], replicaBroker: hvr-broker.ams.example}
    rtm: {hosts: [hv01.rtm.example]}
"""


def located(directory: Path) -> list[tuple[int, str]]:
    with pytest.raises(SpecError) as caught:
        specdir.load_specs(directory)
    return [(p.line, p.message) for p in caught.value.problems]


def test_the_issue_declaration_loads_and_builds_verified_winrm_settings(tmp_path: Path) -> None:
    (tmp_path / "hv.yaml").write_text(ISSUE)
    (fabric,) = specdir.load_specs(tmp_path).fabrics
    opened = settings.from_config(config.from_spec(fabric, tmp_path))
    assert opened.sites["ams"].hosts == ("hv01.ams.example", "hv02.ams.example")
    assert opened.site_of("HVR-BROKER.ams.example") == "ams"
    env = {"DRCTL_HV_USER": "CONTOSO\\drctl", "DRCTL_HV_PASSWORD": "s3cret"}
    kwargs = remoting.connection_settings(opened, "hv01.rtm.example", env)
    wsman = WSMan(**kwargs)  # builds offline: nothing is sent before the first call
    assert wsman.transport.endpoint == "https://hv01.rtm.example:5986/wsman"
    assert (str(wsman.transport.auth), str(wsman.transport.cert_validation)) == (
        "negotiate",
        "/etc/drctl/winrm-ca.pem",
    )
    with pytest.raises(Exception, match="DRCTL_HV_PASSWORD is not set"):
        remoting.connection_settings(opened, "hv01.rtm.example", {"DRCTL_HV_USER": "u"})


def test_kerberos_and_certificates_and_the_default_validation(tmp_path: Path) -> None:
    text = ISSUE.replace(
        "credential: {usernameEnv: DRCTL_HV_USER, passwordEnv: DRCTL_HV_PASSWORD}",
        "credential: {kerberos: {}}",
    ).replace(", caBundle: /etc/drctl/winrm-ca.pem", "")
    (tmp_path / "hv.yaml").write_text(text)
    (fabric,) = specdir.load_specs(tmp_path).fabrics
    kwargs = remoting.connection_settings(
        settings.from_config(config.from_spec(fabric, tmp_path)), "hv01.ams.example", {}
    )
    assert (kwargs["auth"], kwargs["cert_validation"], kwargs["ssl"]) == ("kerberos", True, True)


def test_insecure_skip_verify_is_warned_by_validate(tmp_path: Path) -> None:
    (tmp_path / "hv.yaml").write_text(
        ISSUE.replace(", caBundle: /etc/drctl/winrm-ca.pem", ", insecureSkipVerify: true")
    )
    desired = specdir.load_specs(tmp_path)
    assert [w.line for w in desired.warnings] == [7]
    assert "insecureSkipVerify: true turns WinRM certificate validation off" in str(
        desired.warnings[0]
    )
    assert str(desired.warnings[0]).startswith(f"{tmp_path / 'hv.yaml'}:7:")


@pytest.mark.parametrize(
    ("change", "line", "message"),
    [
        (
            ("passwordEnv: DRCTL_HV_PASSWORD", "password: hunter2"),
            6,
            "'password' holds a literal secret",
        ),
        (("{hosts: [hv01.rtm.example]}", "{}"), 10, "lists the Hyper-V hosts"),
        (("usernameEnv: DRCTL_HV_USER, ", "kerberos: {}, "), 6, "exactly one form"),
        (("port: 5986", "port: 70000"), 7, "must be 65535 or less"),
        (("hv01.rtm.example]", "hv01.rtm.example/wsman]"), 10, "hosts"),
    ],
)
def test_mistakes_are_located(
    tmp_path: Path, change: tuple[str, str], line: int, message: str
) -> None:
    (tmp_path / "hv.yaml").write_text(ISSUE.replace(*change))
    problems = located(tmp_path)
    assert [p[0] for p in problems] == [line], problems
    assert message in problems[0][1]
    assert "hunter2" not in problems[0][1]


def test_the_default_install_has_no_pypsrp_and_the_hyperv_extra_has_it() -> None:
    from importlib import metadata

    from packaging.requirements import Requirement

    requirements = [Requirement(r) for r in metadata.requires("drctl") or []]
    assert not any(r.name == "pypsrp" for r in requirements if r.marker is None)
    assert any(
        r.name == "pypsrp" and r.marker and r.marker.evaluate({"extra": "hyperv"})
        for r in requirements
    )
