"""Two simulated fabrics, a plan on each, driven by real `drctl apply` and `drctl run` processes.

While one fabric cannot be observed at all (`drctl fabric unreachable`), the
other fabric's plan still converges, and the first one's VMs say why they wait.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from e2e.harness import TIMINGS, wait_until

pytestmark = pytest.mark.e2e

FABRICS = """\
apiVersion: drctl/v1
kind: Fabric
metadata: {name: lab1}
spec:
  simulator: {}
  sites: {ams: {}, rtm: {}}
---
apiVersion: drctl/v1
kind: Fabric
metadata: {name: lab2}
spec:
  simulator: {}
  sites: {ams: {}, rtm: {}}
"""


def plan(name: str, fabric: str, site: str, vms: list[str]) -> str:
    other = "rtm" if site == "ams" else "ams"
    entries = "".join(f"    - name: {vm}\n" for vm in vms)
    return (
        f"apiVersion: drctl/v1\nkind: RecoveryPlan\nmetadata: {{name: {name}}}\nspec:\n"
        f"  fabric: {fabric}\n  sites: [ams, rtm]\n"
        f"  defaults: {{activeSite: {site}, replication: {site}->{other}}}\n"
        f"  policy: {{commitAfterSeconds: 0}}\n  vms:\n{entries}"
    )


class Lab:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.state = root / "state"
        self.specs = root / "specs"
        self.specs.mkdir()
        for fabric, vms in (("lab1", ["a1", "a2"]), ("lab2", ["b1"])):
            inventory = {
                "sites": ["ams", "rtm"],
                "vms": [{"name": n, "activeSite": "ams", "replication": "ams->rtm"} for n in vms],
                "timings": TIMINGS,
            }
            path = root / f"{fabric}.json"
            path.write_text(json.dumps(inventory))
            self.drctl("fabric", "init", str(path), "--fabric", fabric)
        (self.specs / "fabrics.yaml").write_text(FABRICS)

    def want(self, site: str) -> None:
        (self.specs / "a.yaml").write_text(plan("a", "lab1", site, ["a1", "a2"]))
        (self.specs / "b.yaml").write_text(plan("b", "lab2", site, ["b1"]))

    def drctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "reconciler", *args, "--state-dir", str(self.state)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"drctl {' '.join(args)}: {done.returncode} {done.stderr}")
        return done

    def status(self) -> dict[str, dict[str, Any]]:
        out = self.drctl("status", str(self.specs), "--output", "json").stdout
        return {vm["name"]: vm for vm in json.loads(out)["vms"]}

    def active_sites(self, fabric: str) -> dict[str, str]:
        shown = json.loads(
            self.drctl("fabric", "show", "--output", "json", "--fabric", fabric).stdout
        )
        return {vm["name"]: vm["activeSite"] for vm in shown["vms"]}


def test_apply_converges_one_fabric_while_the_other_cannot_be_observed(tmp_path: Path) -> None:
    lab = Lab(tmp_path)
    lab.want("rtm")
    lab.drctl("fabric", "unreachable", "--fabric", "lab2")

    done = lab.drctl(
        "apply", str(lab.specs), "--timeout", "8", "--poll-interval", "0.05", check=False
    )

    assert done.returncode == 1, done.stderr
    assert "timed out before converging" in done.stderr
    assert "b/b1: WaitingForSite: fabric 'lab2' cannot be observed" in done.stderr
    assert lab.active_sites("lab1") == {"a1": "rtm", "a2": "rtm"}
    status = lab.status()
    assert status["a1"]["converged"] and status["a2"]["converged"]
    assert status["b1"]["phase"] == "WaitingForSite"
    assert status["b1"]["reason"].startswith(
        "fabric 'lab2' cannot be observed: the fabric does not answer (simulated; "
        "drctl fabric reachable --fabric lab2 ends it)"
    )

    lab.drctl("fabric", "reachable", "--fabric", "lab2")
    lab.drctl("apply", str(lab.specs), "--timeout", "30", "--poll-interval", "0.05")
    assert lab.active_sites("lab2") == {"b1": "rtm"}
    assert all(vm["converged"] for vm in lab.status().values())


def test_run_converges_one_fabric_while_the_other_cannot_be_observed(tmp_path: Path) -> None:
    lab = Lab(tmp_path)
    lab.want("rtm")
    lab.drctl("fabric", "unreachable", "--fabric", "lab1")
    log = (tmp_path / "daemon.log").open("w")
    daemon = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "reconciler",
            "run",
            str(lab.specs),
            "--state-dir",
            str(lab.state),
            "--poll-interval",
            "0.05",
            "--resync",
            "1",
            "--log-format",
            "json",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until("b1 converged on lab2", lambda: lab.status()["b1"]["converged"])
        status = lab.status()
        assert status["a1"]["phase"] == status["a2"]["phase"] == "WaitingForSite"
        assert "fabric 'lab1' cannot be observed" in status["a1"]["reason"]
        assert lab.active_sites("lab2") == {"b1": "rtm"}

        lab.drctl("fabric", "reachable", "--fabric", "lab1")
        wait_until(
            "every VM converged",
            lambda: all(vm["converged"] for vm in lab.status().values()),
        )
        assert lab.active_sites("lab1") == {"a1": "rtm", "a2": "rtm"}
    finally:
        daemon.terminate()
        assert daemon.wait(timeout=10) == 0
        log.close()
