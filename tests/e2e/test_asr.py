"""`drctl apply` on an Azure Site Recovery vault: a real drctl process, the real SDK and
azure-identity, against the local ARM test server (tests/fabric/asr).

A plan fails over to rtm and back, each VM committed and reprotected, through
the real `AzureCliCredential` (the stand-in `az`) and TLS verified through
REQUESTS_CA_BUNDLE; the bearer token is nowhere in what drctl prints or keeps.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from builders import TIMINGS
from fabric.asr import harness

from reconciler.core.state import ProtectionState
from reconciler.fabric.sim.inventory import Inventory, InventoryVM
from reconciler.kits.clock import WallClock

pytestmark = pytest.mark.e2e

VMS = ("sql01", "web01")


def fabric_doc(built: harness.AsrUnderTest) -> str:
    s = built.settings
    return (
        "apiVersion: drctl/v1\nkind: Fabric\nmetadata: {name: contoso}\nspec:\n"
        f"  asr:\n    subscriptionId: {s.subscription_id}\n    resourceGroup: {s.resource_group}\n"
        f"    vault: {s.vault}\n    endpoint: {s.endpoint}\n    credential: cli\n"
        "  sites:\n"
        + "".join(f"    {site}: {{protectionContainer: {c}}}\n" for site, c in s.sites.items())
    )


def plan_doc(site: str) -> str:
    other = "rtm" if site == "ams" else "ams"
    return (
        "apiVersion: drctl/v1\nkind: RecoveryPlan\nmetadata: {name: finance}\nspec:\n"
        f"  sites: [ams, rtm]\n  defaults: {{activeSite: {site}, replication: {site}->{other}}}\n"
        "  policy: {commitAfterSeconds: 0}\n  vms:\n" + "".join(f"    - name: {vm}\n" for vm in VMS)
    )


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[harness.AsrUnderTest]:
    inventory = Inventory(
        ("ams", "rtm"), tuple(InventoryVM(n, "ams", ("ams", "rtm")) for n in VMS), TIMINGS
    )
    built = harness.open_fabric(tmp_path / "server", WallClock(), inventory, retry_after=1)
    try:
        yield built
    finally:
        built.close()


def drctl(built: harness.AsrUnderTest, state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        # The server's throwaway CA, as an operator trusts a private one.
        "REQUESTS_CA_BUNDLE": str(built.server.ca_path),
        "DRCTL_STATE_DIR": str(state),
    }
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env=env,
    )


def test_a_plan_fails_over_to_rtm_and_back_through_asr(
    vault: harness.AsrUnderTest, tmp_path: Path
) -> None:
    specs, state = tmp_path / "specs", tmp_path / "state"
    specs.mkdir()
    (specs / "contoso.yaml").write_text(fabric_doc(vault))
    printed = []
    for site, peer in (("rtm", "ams"), ("ams", "rtm")):
        (specs / "finance.yaml").write_text(plan_doc(site))
        done = drctl(vault, state, "apply", str(specs), "--timeout", "120")
        printed.append(done.stdout + done.stderr)
        assert done.returncode == 0, done.stdout + done.stderr
        for name in VMS:
            item = vault.vault.by_friendly(name)
            assert (item.state.active_site, item.state.protection, item.state.direction) == (
                site,
                ProtectionState.PROTECTED,
                f"{site}->{peer}",
            )
        status = json.loads(drctl(vault, state, "status", str(specs), "--output", "json").stdout)
        assert status["converged"] is True
        assert {vm["name"]: vm["observed"]["power"] for vm in status["vms"]} == {
            name: {site: "Unknown", peer: "Off"} for name in VMS
        }
    # Failover, commit and reverse replication each way, once per VM: no action twice.
    actions = [r.path.split("?")[0].rsplit("/", 1)[-1] for r in vault.server.seen("POST")]
    assert sorted(actions) == sorted(
        ["plannedFailover", "failoverCommit", "reProtect"] * 2 * len(VMS)
    )
    # The bearer token is in nothing drctl printed or keeps.
    token = vault.server.authority.current()
    assert not any(token in text for text in printed)
    for path in state.rglob("*"):
        if path.is_file():
            assert token.encode() not in path.read_bytes(), path
