"""The Azure packages are the `asr` extra: not in the default install, named when missing."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

# Run before drctl in the child process: any import of azure fails, as it does
# in an install without the extra.
WITHOUT_AZURE = """\
import sys

class _NoAzure:
    def find_spec(self, name, path=None, target=None):
        if name == "azure" or name.startswith("azure."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _NoAzure())
"""

FABRIC = """\
apiVersion: drctl/v1
kind: Fabric
metadata: {name: contoso}
spec:
  asr: {subscriptionId: 7f3c2a9e-5b1d-4c8e-9a6f-2d4b8e1c0a53, resourceGroup: rg-dr, vault: vault-dr}
  sites: {ams: {protectionContainer: cloud-ams}, rtm: {protectionContainer: cloud-rtm}}
"""

PLAN = """\
apiVersion: drctl/v1
kind: RecoveryPlan
metadata: {name: finance}
spec:
  sites: [ams, rtm]
  defaults: {activeSite: ams, replication: ams->rtm}
  vms: [{name: sql01}]
"""


def test_the_default_install_has_no_azure_package_and_the_asr_extra_has_both() -> None:
    requirements = [Requirement(r) for r in metadata.requires("drctl") or []]
    default = {r.name for r in requirements if r.marker is None}
    asr = {r.name for r in requirements if r.marker and r.marker.evaluate({"extra": "asr"})}
    assert not any(name.startswith("azure") for name in default)
    assert {"azure-mgmt-recoveryservicessiterecovery", "azure-identity"} <= asr


def test_a_plan_on_an_asr_fabric_without_the_azure_packages_says_what_to_install(
    tmp_path: Path,
) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(WITHOUT_AZURE)
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "contoso.yaml").write_text(FABRIC)
    (specs / "finance.yaml").write_text(PLAN)
    for command in ("plan", "status"):
        done = subprocess.run(
            [sys.executable, "-m", "reconciler", command, str(specs)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={"PYTHONPATH": str(tmp_path / "site"), "DRCTL_STATE_DIR": str(tmp_path / "st")},
        )
        assert done.returncode == 3, done.stderr
        assert done.stderr.strip().splitlines() == [
            (
                "drctl: fabric 'contoso' is an Azure Site Recovery vault, and the Azure "
                "packages are not installed (azure): pip install 'drctl[asr]'"
            )
        ]
