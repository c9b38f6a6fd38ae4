"""End to end on the simulator: the blast radius, suspend and `--max-parallel` (issue 14).

Real `drctl apply` processes on a real SQLite fabric. Asserted: the exit
code, the lines `apply` prints for each VM it could not converge, `drctl
status --output json` and the fabric's job history.
"""

from __future__ import annotations

import itertools
import json
from datetime import datetime
from pathlib import Path

import pytest
from e2e.harness import Site, three_tier, wait_until
from e2e.test_apply import Drctl

pytestmark = pytest.mark.e2e

PLAN = """\
apiVersion: drctl/v1
kind: RecoveryPlan
metadata: {name: NAME}
spec:
  sites: [ams, rtm]
  defaults: {activeSite: SITE}
  policy: {POLICY}
  vms: [VMS]
"""
PLANS = {"finance": ("sql01", "app01", "app02"), "web": ("web01", "web02")}


def write(drctl: Drctl, site: str, policy: dict[str, str] | None = None) -> None:
    """Both plans wanting `site` (a default: the bad merge moves every VM at once)."""
    for name, vms in PLANS.items():
        text = PLAN.replace("NAME", name).replace("SITE", site)
        extra = (policy or {}).get(name)
        text = text.replace("POLICY", "commitAfterSeconds: 0" + (f", {extra}" if extra else ""))
        text = text.replace("VMS", ", ".join(f"{{name: {vm}}}" for vm in vms))
        (drctl.specs / f"{name}.yaml").write_text(text)


@pytest.fixture
def drctl(tmp_path: Path) -> Drctl:
    made = Drctl(tmp_path)
    (made.specs / "finance.yaml").unlink()
    write(made, "ams")
    return made


def test_a_bad_merge_over_the_global_limit_moves_nothing(drctl: Drctl) -> None:
    write(drctl, "rtm")
    done = drctl.apply("--max-failovers-per-revision", "4")
    assert done.returncode == 1, done.stdout + done.stderr
    reason = (
        "Blocked: this revision moves 5 VMs; the limit is 4 (drctl run "
        "--max-failovers-per-revision): raise it or split the change"
    )
    for name, vms in PLANS.items():
        for vm in vms:
            assert f"  {name}/{vm}: {reason}" in done.stderr
    assert drctl.jobs() == []
    done = drctl.apply("--max-failovers-per-revision", "5")
    assert done.returncode == 0, done.stdout + done.stderr


def test_plan_shows_what_the_global_limit_blocks(drctl: Drctl) -> None:
    """`drctl plan --max-failovers-per-revision N` plans as `run` and `apply` with the flag do."""
    write(drctl, "rtm")
    shown = json.loads(
        drctl.run(
            "plan", str(drctl.specs), "--max-failovers-per-revision", "4", "--output", "json"
        ).stdout
    )
    assert shown["actions"] == []
    reason = (
        "this revision moves 5 VMs; the limit is 4 (drctl run --max-failovers-per-revision): "
        "raise it or split the change"
    )
    assert {(vm["name"], vm["phase"], vm["reason"]) for vm in shown["vms"]} == {
        (vm, "Blocked", reason) for vms in PLANS.values() for vm in vms
    }
    text = drctl.run("plan", str(drctl.specs), "--max-failovers-per-revision", "4").stdout
    assert reason in text  # the table has RUNNING, WAITING FOR and NEXT STEP columns now
    # At the limit the same revision moves; `plan` still starts nothing.
    shown = json.loads(
        drctl.run(
            "plan", str(drctl.specs), "--max-failovers-per-revision", "5", "--output", "json"
        ).stdout
    )
    assert {a["vm"] for a in shown["actions"]} == {vm for vms in PLANS.values() for vm in vms}
    assert drctl.jobs() == []
    refused = drctl.run("plan", str(drctl.specs), "--max-failovers-per-revision", "0", check=False)
    assert refused.returncode == 2
    assert "must be a whole number of at least 1, not '0'" in refused.stderr


def test_a_plans_limit_blocks_that_plan_until_a_commit_raises_it(drctl: Drctl) -> None:
    write(drctl, "rtm", {"finance": "maxFailoversPerRevision: 2"})
    done = drctl.apply()
    assert done.returncode == 1, done.stdout + done.stderr
    status = {vm["name"]: vm for vm in drctl.status()["vms"]}
    for vm in PLANS["finance"]:
        assert status[vm]["phase"] == "Blocked"
        assert status[vm]["reason"] == (
            "this revision moves 3 VMs; the limit is 2: raise it in a commit or split the change"
        )
        assert status[vm]["observed"]["activeSite"] == "ams"
    assert all(status[vm]["converged"] for vm in PLANS["web"])  # the other plan moved
    assert {j["vm"] for j in drctl.jobs()} == set(PLANS["web"])
    write(drctl, "rtm", {"finance": "maxFailoversPerRevision: 3"})
    assert drctl.apply().returncode == 0


def test_a_suspended_plan_starts_nothing_and_reports_its_drift(drctl: Drctl) -> None:
    write(drctl, "rtm")
    (drctl.specs / "web.yaml").write_text(
        (drctl.specs / "web.yaml").read_text().replace("  sites:", "  suspend: true\n  sites:")
    )
    done = drctl.apply()
    assert done.returncode == 1, done.stdout + done.stderr
    status = {vm["name"]: vm for vm in drctl.status()["vms"]}
    for vm in PLANS["web"]:
        assert status[vm]["phase"] == "Suspended"
        assert status[vm]["reason"].startswith(
            "plan suspended (spec.suspend: true): drctl starts nothing; "
        )
        assert status[vm]["desired"]["activeSite"] == "rtm"
        assert status[vm]["observed"]["activeSite"] == "ams"
    assert all(status[vm]["converged"] for vm in PLANS["finance"])
    assert {j["vm"] for j in drctl.jobs()} == set(PLANS["finance"])


def test_max_parallel_caps_jobs_in_flight_across_plans(drctl: Drctl) -> None:
    write(drctl, "rtm")
    assert drctl.apply("--max-parallel", "1").returncode == 0
    jobs = sorted(drctl.jobs(), key=lambda j: j["startedAt"])
    assert {j["vm"] for j in jobs} == {vm for vms in PLANS.values() for vm in vms}
    for before, after in itertools.pairwise(jobs):
        assert at(before["finishedAt"]) <= at(after["startedAt"]), (before, after)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_status_beside_a_daemon_plans_with_the_daemons_global_limit(site: Site) -> None:
    """`drctl status` shows the VMs a daemon's --max-failovers-per-revision holds back, with the
    daemon's reason, without being told the flag (the daemon says it in its status file)."""
    site.start("--max-failovers-per-revision", "2")
    wait_until("finance converged", lambda: site.converged_at("ams"))
    site.commit("finance to rtm", {"finance.yaml": three_tier("rtm")})
    site.pull()
    shown = wait_until(
        "status shows finance Blocked by the daemon's limit",
        lambda: [
            vm
            for vm in site.status()["vms"]
            if vm["plan"] == "finance" and vm["phase"] == "Blocked"
        ],
    )
    assert len(shown) == 5
    assert all(
        "this revision moves 5 VMs; the limit is 2 (drctl run --max-failovers-per-revision)"
        in vm["reason"]
        for vm in shown
    )
    assert site.status()["daemon"]["maxFailoversPerRevision"] == 2
    assert site.jobs() == []
