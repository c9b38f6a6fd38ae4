"""End to end on the simulator: `drctl apply` fails a 3-tier plan over and back.

Real `drctl` processes, a real SQLite fabric in a temporary state dir, the
wall clock with sub-second timings. What is asserted is what an operator
sees: exit codes, `drctl status --output json` and the fabric's job history.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from e2e.harness import three_tier

pytestmark = pytest.mark.e2e

INVENTORY = """\
sites: [ams, rtm]
vms:
  - {name: sql01, activeSite: ams, replication: ams->rtm}
  - {name: app01, activeSite: ams, replication: ams->rtm}
  - {name: app02, activeSite: ams, replication: ams->rtm}
  - {name: web01, activeSite: ams, replication: ams->rtm}
  - {name: web02, activeSite: ams, replication: ams->rtm}
  - {name: legacy01, activeSite: ams, replication: ams->rtm}
timings: {plannedFailover: 0.3, unplannedFailover: 0.2, commit: 0.1, reverseReplicate: 0.2,
          initialReplication: 0.4, stopVM: 0.1, testFailover: 0.2, testFailoverCleanup: 0.1,
          replicationInterval: 0.5}
"""

GROUP_OF = {"sql01": 0, "app01": 1, "app02": 1, "web01": 2, "web02": 2}


class Drctl:
    def __init__(self, tmp_path: Path) -> None:
        self.state = tmp_path / "state"
        self.specs = tmp_path / "specs"
        self.specs.mkdir()
        inventory = tmp_path / "inventory.yaml"
        inventory.write_text(INVENTORY)
        self.want("ams")
        self.run("fabric", "init", str(inventory))

    def want(self, site: str) -> None:
        (self.specs / "finance.yaml").write_text(three_tier(site))

    def run(
        self, *args: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "reconciler", *args, "--state-dir", str(self.state)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"drctl {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
            )
        return done

    def apply(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return self.run(
            "apply",
            str(self.specs),
            "--poll-interval",
            "0.05",
            "--retry-backoff",
            "0.1",
            *extra,
            check=False,
        )

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = json.loads(
            self.run("status", str(self.specs), "--output", "json").stdout
        )
        return status

    def jobs(self) -> list[dict[str, Any]]:
        jobs: list[dict[str, Any]] = json.loads(
            self.run("fabric", "show", "--output", "json").stdout
        )["jobs"]
        return jobs


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def check_round_trip_leg(jobs: list[dict[str, Any]], target: str) -> None:
    """No unplanned failover, nothing lost, dependents stopped first, groups in order."""
    assert all(j["state"] == "Succeeded" for j in jobs), jobs
    assert not [j for j in jobs if j["operation"] == "UnplannedFailover"]
    assert all(not j["dataLossSeconds"] for j in jobs)
    stops = [j for j in jobs if j["operation"] == "StopVM"]
    failovers = [j for j in jobs if j["operation"] == "PlannedFailover"]
    assert sorted(j["vm"] for j in failovers) == sorted(GROUP_OF)
    assert sorted(j["vm"] for j in stops) == sorted(GROUP_OF)
    for a in stops:
        for b in stops:
            if GROUP_OF[a["vm"]] > GROUP_OF[b["vm"]]:  # a depends on b: a stops first
                assert at(a["finishedAt"]) <= at(b["startedAt"]), (a, b)
    last_stop = max(at(j["finishedAt"]) for j in stops)
    for a in failovers:
        assert at(a["startedAt"]) >= last_stop
        for b in failovers:
            if GROUP_OF[a["vm"]] < GROUP_OF[b["vm"]]:  # b boots after a
                assert at(a["finishedAt"]) <= at(b["startedAt"]), (a, b)
    assert sorted(j["vm"] for j in jobs if j["operation"] == "Commit") == sorted(GROUP_OF)
    assert sorted(j["vm"] for j in jobs if j["operation"] == "ReverseReplicate") == sorted(GROUP_OF)


def test_three_tier_plan_fails_over_and_back(tmp_path: Path) -> None:
    drctl = Drctl(tmp_path)
    assert drctl.apply().returncode == 0  # already where the spec wants it
    assert drctl.jobs() == []

    drctl.want("rtm")
    planned = json.loads(drctl.run("plan", str(drctl.specs), "--output", "json").stdout)
    assert [(a["vm"], a["operation"], a["ready"]) for a in planned["actions"]][:2] == [
        ("web01", "StopVM", True),
        ("web02", "StopVM", True),
    ]
    assert drctl.run("plan", str(drctl.specs), "--exit-code", check=False).returncode == 1

    done = drctl.apply()
    assert done.returncode == 0, done.stdout + done.stderr
    status = drctl.status()
    assert status["converged"] is True
    assert status["unmanaged"] == ["legacy01"]
    for vm in status["vms"]:
        assert vm["observed"]["activeSite"] == "rtm"
        assert vm["observed"]["replication"] == "rtm->ams"
        assert vm["phase"] == "Converged"
    over = drctl.jobs()
    check_round_trip_leg(over, "rtm")

    drctl.want("ams")
    done = drctl.apply()
    assert done.returncode == 0, done.stdout + done.stderr
    back = drctl.jobs()[len(over) :]
    check_round_trip_leg(back, "ams")
    assert all(vm["observed"]["activeSite"] == "ams" for vm in drctl.status()["vms"])
    assert drctl.run("plan", str(drctl.specs), "--exit-code", check=False).returncode == 0
    assert not [j for j in drctl.jobs() if j["vm"] == "legacy01"]


def test_job_failure_injected_once_is_retried_and_converges(tmp_path: Path) -> None:
    drctl = Drctl(tmp_path)
    drctl.run("fabric", "fail", "sql01", "PlannedFailover", "--times", "1")
    drctl.want("rtm")
    done = drctl.apply()
    assert done.returncode == 0, done.stdout + done.stderr
    sql = [j for j in drctl.jobs() if j["vm"] == "sql01" and j["operation"] == "PlannedFailover"]
    assert [j["state"] for j in sql] == ["Failed", "Succeeded"]
    assert drctl.status()["converged"] is True


def test_job_failure_exhausting_retries_ends_blocked_with_the_fabric_error(tmp_path: Path) -> None:
    drctl = Drctl(tmp_path)
    drctl.run("fabric", "fail", "sql01", "PlannedFailover", "--times", "9")
    drctl.want("rtm")
    done = drctl.apply()
    assert done.returncode == 1
    failed = [j for j in drctl.jobs() if j["vm"] == "sql01" and j["state"] == "Failed"]
    assert len(failed) == 3
    sql = next(vm for vm in drctl.status()["vms"] if vm["name"] == "sql01")
    assert sql["phase"] == "Blocked"
    assert "PlannedFailover failed 3 times" in sql["reason"]
    assert failed[0]["error"] in sql["reason"]
    assert "sql01" in done.stderr


def test_disconnected_source_without_consent_returns_at_once_blocked(tmp_path: Path) -> None:
    drctl = Drctl(tmp_path)
    drctl.run("fabric", "site-down", "ams")
    drctl.want("rtm")
    done = drctl.apply("--timeout", "30")
    assert done.returncode == 1
    assert "allowDataLoss: {from: ams, until: <time>}" in done.stderr
    assert "site ams is disconnected" in done.stderr
    assert drctl.jobs() == []


def test_invalid_spec_exits_2_and_touches_nothing(tmp_path: Path) -> None:
    drctl = Drctl(tmp_path)
    (drctl.specs / "finance.yaml").write_text(three_tier("rtm").replace("groups", "grups"))
    for command in ("apply", "plan", "status"):
        done = drctl.run(command, str(drctl.specs), check=False)
        assert done.returncode == 2, command
        assert "finance.yaml:8: unknown key 'grups'" in done.stderr
    assert drctl.jobs() == []
