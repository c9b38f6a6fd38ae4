"""pypsrp is the `hyperv` extra: a plan on a hyperv fabric without it exits 3 naming the extra."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from fabric.hyperv.test_declaration import ISSUE

WITHOUT_PYPSRP = """\
import sys

class _NoPypsrp:
    def find_spec(self, name, path=None, target=None):
        if name == "pypsrp" or name.startswith("pypsrp."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _NoPypsrp())
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


def test_a_plan_on_a_hyperv_fabric_without_pypsrp_says_what_to_install(tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(WITHOUT_PYPSRP)
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "hv.yaml").write_text(ISSUE)
    (specs / "finance.yaml").write_text(PLAN)
    done = subprocess.run(
        [sys.executable, "-m", "reconciler", "plan", str(specs)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PYTHONPATH": str(tmp_path / "site"), "DRCTL_STATE_DIR": str(tmp_path / "st")},
    )
    assert done.returncode == 3, done.stderr
    assert done.stderr.strip().splitlines() == [
        (
            "drctl: fabric 'hv' is driven over PowerShell Remoting, and pypsrp is not installed "
            "(pypsrp): pip install 'drctl[hyperv]'"
        )
    ]
