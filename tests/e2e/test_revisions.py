"""`drctl run` as a real process on a real git repository: a valid revision that would
leave a move in flight unmanaged is refused loudly, and the move finishes."""

from __future__ import annotations

import json

import pytest
from e2e.harness import Site, git, three_tier, wait_until

pytestmark = pytest.mark.e2e


def test_every_spec_file_removed_mid_move_is_refused_and_the_move_finishes(site: Site) -> None:
    site.start()
    site.commit("fail finance over to rtm", {"finance.yaml": three_tier("rtm")})
    site.pull()
    wait_until(
        "a failover in flight",
        lambda: [j for j in site.jobs() if j["operation"] == "PlannedFailover"],
    )
    for name in ("finance", "hr"):
        git(site.upstream, "mv", f"specs/{name}.yaml", f"specs/{name}.yaml.old")
    git(site.upstream, "commit", "-qm", "rename every spec file")
    empty = git(site.upstream, "rev-parse", "HEAD")
    site.pull()
    wait_until("finance protected at rtm", lambda: finance_at(site, "rtm"), timeout=60)
    assert site.metric("drctl_revision_refused") == 1
    daemon = json.loads((site.state / "daemon.json").read_text())
    assert daemon["revisionSeen"] == empty
    assert daemon["revisionInForce"] != empty
    assert daemon["revisionRefused"]["revision"] == empty
    assert daemon["revisionRefused"]["reasons"][0].startswith("it holds no RecoveryPlan")
    events = [json.loads(line) for line in site.log_text().splitlines() if line.startswith("{")]
    refused = [e for e in events if e.get("event") == "revision_refused"]
    assert refused
    assert refused[0]["revision"] == empty
    # Nothing was left stopped: every VM runs.
    shown = json.loads(site.drctl("fabric", "show", "--output", "json").stdout)
    assert all(vm["running"] for vm in shown["vms"])
    text = site.drctl("status", str(site.specs), check=False)
    assert f"newest revision {empty} refused, kept out: it holds no RecoveryPlan" in text.stdout
    # The refused specs never hide the VMs of the revision in force (issue 16).
    assert text.returncode == 2  # the specs given are invalid, the daemon's shown
    assert "the spec directory holds no RecoveryPlan" in text.stderr
    assert f"keeps revision {daemon['revisionInForce']} in force, shown below" in text.stderr
    assert all(name in text.stdout for name in FINANCE)


FINANCE = ("sql01", "app01", "app02", "web01", "web02")


def finance_at(site: Site, where: str) -> bool:
    """What the fabric reports (no spec says it any more): finance runs at `where`, reprotected."""
    shown = json.loads(site.drctl("fabric", "show", "--output", "json").stdout)
    vms = [vm for vm in shown["vms"] if vm["name"] in FINANCE]
    return all(
        vm["activeSite"] == where
        and vm["running"] == [where]
        and vm["protectionState"] == "Protected"
        and vm["replication"] == f"{where}->{'ams' if where == 'rtm' else 'rtm'}"
        for vm in vms
    ) and not [j for j in shown["jobs"] if not j["finishedAt"]]
