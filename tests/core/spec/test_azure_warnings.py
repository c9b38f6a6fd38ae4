"""`drctl validate` on a plan of a Hyper-V-to-Azure fabric: what Azure lacks, said at its line.

Where the spec and the Fabric declaration show it (a site declared `azure: {}`),
validate warns, file:line, that a VM asked to replicate from Azure never will
until it fails back, and that consent to lose data failing over from Azure is
never used (from Azure there is only the planned failback). `replication: off`
for a VM active in Azure is what the scenario does, not a removed return path.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.cli import main as cli
from reconciler.gitops import specdir

FABRIC = """\
apiVersion: drctl/v1
kind: Fabric
metadata: {name: contoso}
spec:
  asr: {subscriptionId: 7f3c2a9e-5b1d-4c8e-9a6f-2d4b8e1c0a53, resourceGroup: rg, vault: v}
  sites:
    ams: {protectionContainer: cloud-ams}
    rtm: {azure: {}}
"""


def plan(defaults: str, entry: str = "") -> str:
    return (
        "apiVersion: drctl/v1\nkind: RecoveryPlan\nmetadata: {name: finance}\nspec:\n"
        f"  sites: [ams, rtm]\n  defaults: {defaults}\n  vms:\n"
        "    - name: sql01\n"  # line 8
        f"    - name: web01\n{entry}"  # line 9
    )


def load(tmp_path: Path, text: str) -> list[tuple[int, str]]:
    (tmp_path / "contoso.yaml").write_text(FABRIC)
    (tmp_path / "finance.yaml").write_text(text)
    return [(w.line, w.message) for w in specdir.load_specs(tmp_path).warnings]


def test_replication_from_azure_is_warned_at_the_first_vm_asking_it(tmp_path: Path) -> None:
    (warning,) = load(tmp_path, plan("{activeSite: rtm}"))
    line, message = warning
    assert line == 8
    assert message.startswith("VMs sql01, web01 of plan 'finance' ask replication rtm->ams")
    assert "does not replicate back to ams until it fails back" in message
    assert "commit `replication: off`" in message


def test_replication_off_in_azure_is_no_warning(tmp_path: Path) -> None:
    assert load(tmp_path, plan("{activeSite: rtm, replication: off}")) == []
    entry = "      activeSite: rtm\n      replication: off\n"
    assert load(tmp_path, plan("{activeSite: ams}", entry)) == []


def test_replication_off_at_the_hyperv_site_still_warns(tmp_path: Path) -> None:
    (warning,) = load(tmp_path, plan("{activeSite: ams}", "      replication: off\n"))
    assert warning[0] == 10
    assert "removes the return path" in warning[1]


def test_consent_to_fail_over_from_azure_is_warned_as_never_used(tmp_path: Path) -> None:
    entry = (
        "      activeSite: ams\n"
        "      policy:\n"
        "        allowDataLoss: {from: rtm, until: '2026-12-01T00:00:00Z'}\n"
    )
    warnings = load(tmp_path, plan("{activeSite: ams}", entry))
    assert len(warnings) == 1
    line, message = warnings[0]
    assert line == 9
    assert "allowDataLoss from rtm" in message
    assert "from Azure there is no unplanned failover" in message


def test_validate_prints_the_warning_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    load(tmp_path, plan("{activeSite: rtm, replication: rtm->ams}"))
    assert cli.main(["validate", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert err.startswith(f"{tmp_path}/finance.yaml:8: warning: VMs sql01, web01 of plan")
