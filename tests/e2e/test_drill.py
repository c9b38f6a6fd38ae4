"""Drills through real processes: `drctl run` on the simulator, a commit of spec.drill.

The daemon starts test copies by group, checks them on the loopback (a real
listening socket), keeps them, cleans them up; production never moves and
its replication never stops; `drctl status`, `drctl drill report`, /metrics
and the journal say how it went. A commit that moves the plan preempts a
drill: its copies are cleaned up first, then the plan moves.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from e2e.harness import Site, git_note, three_tier, wait_until

pytestmark = pytest.mark.e2e
TEST_OPS = {"TestFailover", "TestFailoverCleanup"}


def with_drill(site: str, drill: str) -> str:
    return three_tier(site).replace("  groups:\n", f"  drill: {drill}\n  groups:\n")


@pytest.fixture
def listening() -> Iterator[int]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()[1]


def at(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def report(site: Site) -> dict[str, Any]:
    out = site.drctl("drill", "report", "finance", "--output", "json").stdout
    found: dict[str, Any] = json.loads(out)
    return found


def test_a_committed_drill_runs_checks_and_ends_passed_without_touching_production(
    site: Site, listening: int
) -> None:
    site.start("--git-notes")
    wait_until("finance converged", lambda: site.converged_at("ams"))
    drill = f"{{id: 2026-q4, keepMinutes: 0.05, checks: [{{vm: web01, tcp: {listening}}}]}}"
    drilled = site.commit("drill finance", {"finance.yaml": with_drill("ams", drill)})
    site.pull()
    drilling = wait_until(
        "a VM Drilling in drctl status",
        lambda: [vm for vm in site.status()["vms"] if vm["phase"] == "Drilling"],
    )
    assert "drill 2026-q4" in drilling[0]["reason"]
    # Production stays where it is, placed and protected, and keeps replicating.
    during = site.status()["vms"]
    assert all(vm["converged"] for vm in during)
    synced = {vm["name"]: at(vm["observed"]["lastSync"]) for vm in during}
    wait_until("the drill passed", lambda: site.metric('drctl_drill_last_result{plan="finance"}'))
    assert site.metric('drctl_drill_last_success_timestamp_seconds{plan="finance"}')
    duration = site.metric('drctl_drill_duration_seconds{plan="finance"}')
    assert duration is not None and duration >= 3  # keepMinutes 0.05
    assert {job["operation"] for job in site.jobs()} == TEST_OPS
    status = site.status()
    assert all(vm["converged"] and vm["observed"]["activeSite"] == "ams" for vm in status["vms"])
    for vm in status["vms"]:  # replication shipped on through the drill: the RPO held
        assert vm["observed"]["replicationState"] == "Replicating"
        assert vm["observed"]["replicationHealth"] == "Normal"
        if vm["plan"] == "finance":
            assert at(vm["observed"]["lastSync"]) > synced[vm["name"]]
    [last] = [d["last"] for d in status["drills"] if d["plan"] == "finance"]
    assert last["result"] == "passed"
    text = site.drctl("status", str(site.specs)).stdout
    assert "last drill finance/2026-q4: passed" in text
    [done] = report(site)["drills"]
    assert done["checks"][0]["passed"] and done["testRtoSeconds"] > 0
    vms = {vm["vm"]: vm for vm in done["vms"]}
    assert set(vms) == {"sql01", "app01", "app02", "web01", "web02"}
    # Group order up, the reverse down.
    assert at(vms["app01"]["testFailoverStartedAt"]) >= at(vms["sql01"]["testCopyRanAt"]) - 1
    assert at(vms["sql01"]["cleanedUpAt"]) >= at(vms["web01"]["cleanedUpAt"])
    wait_until(
        "the note on the drill's commit", lambda: "drill finance/2026-q4" in git_note(site, drilled)
    )
    assert "drill finance/2026-q4: passed, test RTO" in git_note(site, drilled)
    assert "checks 1/1 passed" in git_note(site, drilled)
    audit = json.loads(site.drctl("audit", str(site.specs), "--output", "json").stdout)
    audited = {
        (e["vm"], a["operation"], a["result"])
        for e in audit
        if e["revision"] == drilled
        for a in e["actions"]
    }
    assert ("web01", "TestFailover", "succeeded") in audited
    assert ("web01", "TestFailoverCleanup", "succeeded") in audited
    markdown = site.drctl("drill", "report", "finance").stdout
    assert "## Drill 2026-q4: passed" in markdown
    assert "| web01 " in markdown


def test_a_commit_that_moves_the_plan_preempts_its_drill_cleanup_first(site: Site) -> None:
    site.start()
    wait_until("finance converged", lambda: site.converged_at("ams"))
    site.commit("drill finance", {"finance.yaml": with_drill("ams", "{id: q1, keepMinutes: 30}")})
    site.pull()
    wait_until(
        "the drill keeping its copies",
        lambda: any(d["step"] == "keeping" for d in site.status()["drills"]),
    )
    site.commit(
        "fail finance over", {"finance.yaml": with_drill("rtm", "{id: q1, keepMinutes: 30}")}
    )
    site.pull()
    wait_until("finance converged at rtm", lambda: site.converged_at("rtm"), timeout=60)
    [drill] = report(site)["drills"]
    assert (drill["result"], drill["preempted"]) == ("preempted", True)
    assert site.metric('drctl_drill_last_result{plan="finance"}') == 0
    jobs = site.jobs()
    cleaned = max(at(j["finishedAt"]) for j in jobs if j["operation"] == "TestFailoverCleanup")
    moved = min(at(j["startedAt"]) for j in jobs if j["operation"] not in TEST_OPS)
    assert moved >= cleaned
