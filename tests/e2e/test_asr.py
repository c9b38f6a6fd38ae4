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
from builders import TIMINGS, timings
from e2e import secrets
from e2e.harness import three_tier
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
        + "".join(
            f"    {site}: {{azure: {{}}}}\n"
            if c is None
            else f"    {site}: {{protectionContainer: {c}}}\n"
            for site, c in s.sites.items()
        )
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
    # The bearer token, or a piece of it, is in nothing drctl printed or keeps (a daemon's
    # logs, metrics and git notes: test_asr_secrets.py).
    token = vault.server.authority.current()
    printed_texts = {f"printed[{i}]": text.encode() for i, text in enumerate(printed)}
    assert secrets.leaks([token], {**printed_texts, **secrets.files_under(state)}) == []


TIERS = (("sql01",), ("app01", "app02"), ("web01", "web02"))


def test_a_three_tier_plan_fails_over_and_back_through_an_asr_recovery_plan(
    tmp_path: Path,
) -> None:
    """ASR cannot stop VMs: the grouped plan moves whole through recovery plan drctl-finance,
    failover, commit and reprotect, each way; retired with the plan, it is deleted."""
    names = tuple(n for tier in TIERS for n in tier)
    inventory = Inventory(
        ("ams", "rtm"), tuple(InventoryVM(n, "ams", ("ams", "rtm")) for n in names), TIMINGS
    )
    built = harness.open_fabric(tmp_path / "server", WallClock(), inventory, retry_after=1)
    try:
        specs, state = tmp_path / "specs", tmp_path / "state"
        specs.mkdir()
        (specs / "contoso.yaml").write_text(fabric_doc(built))
        for site in ("rtm", "ams"):
            (specs / "finance.yaml").write_text(three_tier(site))
            done = drctl(built, state, "apply", str(specs), "--timeout", "150")
            assert done.returncode == 0, done.stdout + done.stderr
            for name in names:
                item = built.vault.by_friendly(name)
                assert (item.state.active_site, item.state.protection) == (
                    site,
                    ProtectionState.PROTECTED,
                )
        plan = built.vault.plans["drctl-finance"]
        assert plan.groups == [[built.vault.by_friendly(n).name for n in t] for t in TIERS]
        assert plan.writes == 1  # created once, never rewritten
        # Each way one plan-level failover, commit and reprotect; no VM moved alone.
        for verb in ("plannedFailover", "failoverCommit", "reProtect"):
            path = f"/replicationRecoveryPlans/drctl-finance/{verb}"
            assert built.server.count("POST", path) == 2, verb
        assert built.server.count("POST", "/replicationProtectedItems/") == 0
        # The vault's events, each way: shut down in reverse group order, fail over,
        # boot by group, then commit and reprotect the whole plan.
        tiers = [list(t) for t in TIERS]
        way = (
            [("shutdown", n) for t in reversed(tiers) for n in t]
            + [("failover", n) for t in tiers for n in t]
            + [("boot", n) for t in tiers for n in t]
            + [("Commit", n) for t in tiers for n in t]
            + [("ReverseReplicate", n) for t in tiers for n in t]
        )
        assert [(step, vm) for _, step, vm in built.vault.events] == way + way
        # The plan leaves the spec: the recovery plan drctl wrote for it goes too.
        (specs / "finance.yaml").unlink()
        done = drctl(built, state, "apply", str(specs), "--timeout", "30")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "plan finance left the spec: drctl-finance of fabric contoso deleted" in (
            done.stdout
        )
        assert (built.vault.deleted, built.vault.plans) == (["drctl-finance"], {})
    finally:
        built.close()


def azure_plan(site: str, replication: str) -> str:
    return (
        "apiVersion: drctl/v1\nkind: RecoveryPlan\nmetadata: {name: finance}\nspec:\n"
        f"  sites: [ams, rtm]\n  defaults: {{activeSite: {site}, replication: {replication}}}\n"
        "  policy: {commitAfterSeconds: 0}\n  vms:\n" + "".join(f"    - name: {vm}\n" for vm in VMS)
    )


@pytest.fixture
def to_azure(tmp_path: Path) -> Iterator[harness.AsrUnderTest]:
    """A Hyper-V-to-Azure vault: ams is the Hyper-V site, rtm is Azure (`azure: {}`);
    every job takes a second, the round trip has five per VM."""
    quick = timings(planned_failover=1, reverse_replicate=1)
    inventory = Inventory(
        ("ams", "rtm"), tuple(InventoryVM(n, "ams", ("ams", "rtm")) for n in VMS), quick
    )
    built = harness.open_fabric(
        tmp_path / "server", WallClock(), inventory, retry_after=1, azure="rtm"
    )
    try:
        yield built
    finally:
        built.close()


def test_a_plan_fails_over_to_azure_commits_fails_back_and_reprotects(
    to_azure: harness.AsrUnderTest, tmp_path: Path
) -> None:
    specs, state = tmp_path / "specs", tmp_path / "state"
    specs.mkdir()
    (specs / "contoso.yaml").write_text(fabric_doc(to_azure))
    # In Azure nothing replicates: the spec says so, and validate has nothing to warn.
    (specs / "finance.yaml").write_text(azure_plan("rtm", "off"))
    checked = drctl(to_azure, state, "validate", str(specs))
    assert (checked.returncode, checked.stderr) == (0, "")
    done = drctl(to_azure, state, "apply", str(specs), "--timeout", "120")
    assert done.returncode == 0, done.stdout + done.stderr
    for name in VMS:
        item = to_azure.vault.by_friendly(name)
        assert (item.state.active_site, item.state.protection) == ("rtm", ProtectionState.COMMITTED)
    (specs / "finance.yaml").write_text(azure_plan("ams", "ams->rtm"))
    done = drctl(to_azure, state, "apply", str(specs), "--timeout", "120")
    assert done.returncode == 0, done.stdout + done.stderr
    for name in VMS:
        item = to_azure.vault.by_friendly(name)
        assert (item.state.active_site, item.state.protection, item.state.direction) == (
            "ams",
            ProtectionState.PROTECTED,
            "ams->rtm",
        )
    status = json.loads(drctl(to_azure, state, "status", str(specs), "--output", "json").stdout)
    assert status["converged"] is True
    # Per VM: failover to Azure, commit, failback, commit, reprotect; each once.
    posted = [
        (r.path.split("?")[0].rsplit("/", 1)[-1], r.body and r.body["properties"])
        for r in to_azure.server.seen("POST")
    ]
    assert sorted(action for action, _ in posted) == sorted(
        ["plannedFailover", "failoverCommit", "plannedFailover", "failoverCommit", "reProtect"]
        * len(VMS)
    )
    failbacks = [
        b
        for a, b in posted
        if a == "plannedFailover" and b["failoverDirection"] != "PrimaryToRecovery"
    ]
    assert [b["providerSpecificDetails"]["instanceType"] for b in failbacks] == [
        "HyperVReplicaAzureFailback"
    ] * len(VMS)


def test_a_spec_asking_replication_from_azure_is_refused_and_moves_nothing(
    to_azure: harness.AsrUnderTest, tmp_path: Path
) -> None:
    specs, state = tmp_path / "specs", tmp_path / "state"
    specs.mkdir()
    (specs / "contoso.yaml").write_text(fabric_doc(to_azure))
    (specs / "finance.yaml").write_text(azure_plan("rtm", "rtm->ams"))
    checked = drctl(to_azure, state, "validate", str(specs))
    assert checked.returncode == 0
    assert checked.stderr.startswith(f"{specs}/finance.yaml:")
    assert "warning: VMs sql01, web01 of plan 'finance' ask replication rtm->ams" in checked.stderr
    done = drctl(to_azure, state, "apply", str(specs), "--timeout", "20")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "does not replicate back to ams until it fails back" in done.stdout + done.stderr
    assert "commit `replication: off`" in done.stdout + done.stderr
    assert to_azure.server.count("POST") == 0
    for name in VMS:
        assert to_azure.vault.by_friendly(name).state.active_site == "ams"
