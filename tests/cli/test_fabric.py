"""`drctl fabric ...`: what an operator types and sees, exit codes included."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from reconciler.cli import main as cli
from reconciler.cli import state_hint
from reconciler.core.state import Operation
from reconciler.fabric.base import Request
from reconciler.fabric.sim import provider as sim
from reconciler.kits.clock import VirtualClock

INVENTORY = """\
sites: [ams, rtm]
vms:
  - {name: web01, activeSite: ams, replication: ams->rtm}
  - {name: web02, activeSite: ams, replication: "ams -> rtm"}
  - {name: batch, activeSite: rtm, replication: off}
timings: {plannedFailover: 86400, stopVM: 1.5, replicationInterval: 30}
"""
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$")
GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def drctl(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def state(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A state dir holding the fabric of INVENTORY."""
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(INVENTORY)
    state_dir = tmp_path / "state"
    code, _, _ = drctl(capsys, "fabric", "init", str(inventory), "--state-dir", str(state_dir))
    assert code == 0
    return state_dir


def show(capsys: pytest.CaptureFixture[str], state: Path) -> dict[str, Any]:
    code, out, err = drctl(capsys, "fabric", "show", "--output", "json", "--state-dir", str(state))
    assert (code, err) == (0, "")
    document: dict[str, Any] = json.loads(out)
    return document


def test_init_creates_then_replaces_a_fabric(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(INVENTORY)
    args = ("fabric", "init", str(inventory), "--state-dir", str(tmp_path / "s"))
    code, out, _ = drctl(capsys, *args)
    assert code == 0
    assert "created a simulated fabric: sites ams, rtm, 3 VMs" in out
    code, out, _ = drctl(capsys, *args)
    assert code == 0
    assert "replaced the simulated fabric (its VMs, jobs and faults are gone)" in out


def test_show_json_is_the_contract(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    document = show(capsys, state)
    assert set(document) == {"sites", "vms", "jobs", "duplicates"}
    assert document["sites"] == [
        {"name": "ams", "connected": True},
        {"name": "rtm", "connected": True},
    ]
    web01, web02, batch = document["vms"]
    assert {
        k: web01[k] for k in ("name", "activeSite", "replication", "protectionState", "running")
    } == {
        "name": "web01",
        "activeSite": "ams",
        "replication": "ams->rtm",
        "protectionState": "Protected",
        "running": ["ams"],
    }
    assert web02["replication"] == "ams->rtm"
    assert (web01["replicationState"], web01["health"], web01["job"]) == (
        "Replicating",
        "Normal",
        None,
    )
    assert ISO.match(web01["lastSync"])
    assert "PlannedFailover" in web01["allowedOperations"]
    assert (batch["replication"], batch["protectionState"], batch["lastSync"]) == (
        "off",
        "Unprotected",
        None,
    )
    assert document["jobs"] == []
    # What the fabric itself says, after drctl's reading of it.
    assert list(web01)[-5:] == [
        "vmId",
        "rawState",
        "rawStateDescription",
        "failoverHealth",
        "healthErrors",
    ]
    assert GUID.match(web01["vmId"])
    assert len({vm["vmId"] for vm in document["vms"]}) == 3
    assert [web01[k] for k in ("rawState", "rawStateDescription", "failoverHealth")] == [
        "Protected",
        "Protected",
        "Normal",
    ]
    assert web01["healthErrors"] == []
    assert (batch["rawState"], batch["rawStateDescription"]) == (
        "UnprotectedStatesBegin",
        "Not protected",
    )
    assert document["duplicates"] == {}


def test_show_lists_every_job_in_start_order(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Finished, failed and running jobs, with wall-clock UTC timestamps."""
    code, out, _ = drctl(capsys, "fabric", "fail", "web02", "stopvm", "--state-dir", str(state))
    assert (code, out) == (0, "the next job of StopVM on web02 will fail\n")
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    past = sim.SimFabric(state, VirtualClock(an_hour_ago))
    past.start(Request("web01", Operation.STOP_VM))
    past.start(Request("web02", Operation.STOP_VM))
    past.close()
    now = sim.SimFabric(state)
    now.start(Request("batch", Operation.STOP_VM))
    now.start(Request("web01", Operation.PLANNED_FAILOVER))  # takes a day
    now.close()

    jobs = show(capsys, state)["jobs"]
    assert [(j["id"], j["vm"], j["operation"], j["state"]) for j in jobs] == [
        ("job-000001", "web01", "StopVM", "Succeeded"),
        ("job-000002", "web02", "StopVM", "Failed"),
        ("job-000003", "batch", "StopVM", "Running"),
        ("job-000004", "web01", "PlannedFailover", "Running"),
    ]
    assert set(jobs[0]) == {
        "id",
        "vm",
        "operation",
        "state",
        "startedAt",
        "finishedAt",
        "error",
        "dataLossSeconds",
        "stateDescription",
    }
    first = jobs[0]
    assert ISO.match(first["startedAt"])
    assert ISO.match(first["finishedAt"])
    took = datetime.fromisoformat(first["finishedAt"]) - datetime.fromisoformat(first["startedAt"])
    assert took == timedelta(seconds=1.5)
    assert "injected with drctl fabric fail" in jobs[1]["error"]
    assert [j["stateDescription"] for j in jobs] == [
        "Completed",
        "Failed",
        "InProgress",
        "InProgress",
    ]
    assert (jobs[3]["finishedAt"], jobs[3]["error"], jobs[3]["dataLossSeconds"]) == (
        None,
        None,
        None,
    )

    code, out, _ = drctl(capsys, "fabric", "show", "--state-dir", str(state))
    assert code == 0
    assert "job-000004 PlannedFailover" in out
    assert "injected with drctl fabric fail" in out


def test_sites_go_down_and_come_back(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = drctl(capsys, "fabric", "site-down", "rtm", "--state-dir", str(state))
    assert (code, out) == (0, "site rtm is now disconnected\n")
    document = show(capsys, state)
    assert document["sites"][1] == {"name": "rtm", "connected": False}
    assert "PlannedFailover" not in document["vms"][0]["allowedOperations"]
    code, out, _ = drctl(capsys, "fabric", "site-down", "rtm", "--state-dir", str(state))
    assert (code, out) == (0, "site rtm was already disconnected\n")
    code, out, _ = drctl(capsys, "fabric", "site-up", "rtm", "--state-dir", str(state))
    assert (code, out) == (0, "site rtm is connected again\n")
    assert show(capsys, state)["sites"][1]["connected"] is True


def test_a_partitioned_site_reads_disconnected_with_the_power_of_its_vms_unknown(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`running` lists the copies known to run, as before; `power` says which are Unknown."""
    assert show(capsys, state)["vms"][0]["power"] == {"ams": "Running", "rtm": "Off"}
    assert "powerSeenAt" not in show(capsys, state)["vms"][0]
    code, out, _ = drctl(capsys, "fabric", "partition", "ams", "--state-dir", str(state))
    assert (code, out) == (
        0,
        (
            "the management plane of site ams is now cut off: its VMs keep running, their "
            "power reads Unknown until drctl fabric heal ams\n"
        ),
    )
    document = show(capsys, state)
    assert document["sites"][0] == {"name": "ams", "connected": False}
    web01, _, batch = document["vms"]
    assert (web01["running"], web01["power"]) == ([], {"ams": "Unknown", "rtm": "Off"})
    assert (batch["running"], batch["power"]) == (["rtm"], {"ams": "Unknown", "rtm": "Running"})
    assert ISO.match(web01["powerSeenAt"])
    code, out, _ = drctl(capsys, "fabric", "show", "--state-dir", str(state))
    assert re.search(r"^batch +rtm +off +Unprotected +rtm,ams\? ", out, re.MULTILINE), out
    code, out, _ = drctl(capsys, "fabric", "heal", "ams", "--state-dir", str(state))
    assert (code, out) == (0, "the management plane of site ams answers again\n")
    assert show(capsys, state)["vms"][0]["running"] == ["ams"]
    code, out, _ = drctl(capsys, "fabric", "heal", "ams", "--state-dir", str(state))
    assert (code, out) == (0, "the management plane of site ams was not cut off\n")


def test_lag_and_resync_show_in_health(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = drctl(capsys, "fabric", "lag", "web01", "120", "--state-dir", str(state))
    assert code == 0
    assert out.startswith("replication of web01 now stays 120 s behind (health Warning)")
    code, out, _ = drctl(capsys, "fabric", "resync-required", "web02", "--state-dir", str(state))
    assert code == 0
    assert "needs a resync; the fabric resyncs it by itself in" in out
    web01, web02, _ = show(capsys, state)["vms"]
    assert (web01["replicationState"], web01["health"]) == ("Replicating", "Warning")
    assert (web02["replicationState"], web02["health"]) == ("ResyncRequired", "Critical")
    assert "PlannedFailover" in web01["allowedOperations"]  # it ships the lag, slower
    assert "PlannedFailover" not in web02["allowedOperations"]
    code, out, _ = drctl(capsys, "fabric", "lag", "web01", "0", "--state-dir", str(state))
    assert (code, out) == (0, "replication of web01 no longer lags (health Normal)\n")


def test_move_is_drift_behind_drctls_back(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = drctl(capsys, "fabric", "move", "web01", "rtm", "--state-dir", str(state))
    assert code == 0
    web01 = show(capsys, state)["vms"][0]
    assert (
        web01["activeSite"],
        web01["running"],
        web01["replication"],
        web01["protectionState"],
    ) == ("rtm", ["rtm"], "rtm->ams", "Protected")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("site-down", "lon"), "no site 'lon' in the simulated fabric: its sites are ams, rtm"),
        (("fail", "web01", "Reboot"), "unknown operation 'Reboot': use one of PlannedFailover"),
        (("fail", "nope", "Commit"), "no VM 'nope' in the simulated fabric"),
        (("fail", "web01", "Commit", "--times", "0"), "--times must be at least 1"),
        (("lag", "web01", "-5"), "lag must be 0 or more seconds"),
        (("lag", "batch", "10"), "batch does not replicate (Unprotected)"),
        (("resync-required", "batch"), "only a replicating VM can need a resync"),
        (("move", "web01", "ams"), "web01 is already active at ams"),
        (("move", "web01", "lon"), "no site 'lon'"),
        (
            ("failover", "web01", "ams"),
            (
                "web01: PlannedFailover is not allowed: the VM is active at ams: "
                "PlannedFailover goes towards rtm"
            ),
        ),
        (
            ("failover", "batch", "ams", "--unplanned"),
            (
                "batch: UnplannedFailover is not allowed: the VM is Unprotected, not Protected: "
                "enable replication first (EnableReplication)"
            ),
        ),
        (("failover", "web01", "lon"), "no site 'lon' in the simulated fabric"),
        (("start", "web01", "rtm"), "starting it would make two authoritative copies"),
        (("stop", "web01", "rtm"), "web01: StopVM is not allowed: no copy of the VM runs at rtm"),
        (("stop", "nope", "ams"), "no VM 'nope' in the simulated fabric"),
        (("suspend-next", "web01", "Reboot"), "unknown operation 'Reboot'"),
        (("suspend-next", "nope", "Commit"), "no VM 'nope' in the simulated fabric"),
        (("resume", "job-000001"), "no job job-000001 in this fabric: drctl fabric show lists"),
        (("resume", "42"), "job ids look like job-000042"),
        (
            ("fail", "web01", "Commit", "--after-shutdown"),
            (
                "--after-shutdown is for PlannedFailover (the operation that shuts the source "
                "down first), not Commit: leave the flag out"
            ),
        ),
        (("resync-required", "batch", "--manual"), "only a replicating VM can need a resync"),
        (("raw-state", "web01", "Protected"), "'Protected' is a state the simulator knows"),
        (("raw-state", "web01"), "give the TEXT the VM reports as its protection state"),
        (("raw-state", "web01", "X", "--clear"), "--clear takes no TEXT and no --description"),
        (("raw-state", "nope", "X"), "no VM 'nope' in the simulated fabric"),
        (("rename", "nope", "web01"), "no VM 'nope' in the simulated fabric"),
        (("rename", "web01", "a b"), "a VM's name is one word with no spaces"),
    ],
)
def test_refusals_say_why_and_exit_2(
    state: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    code, out, err = drctl(capsys, "fabric", *args, "--state-dir", str(state))
    assert (code, out) == (2, "")
    assert message in err


def test_commands_without_a_fabric_say_how_to_make_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # No daemon anywhere (an empty /proc): the path tried, why it, how to make a fabric.
    monkeypatch.setattr(state_hint, "PROC", tmp_path / "proc")
    monkeypatch.setattr(state_hint, "WELL_KNOWN", ())
    code, _, err = drctl(capsys, "fabric", "show", "--state-dir", str(tmp_path))
    assert code == 3
    assert err == (
        f"drctl: no simulated fabric in {tmp_path} (from --state-dir): run drctl fabric init "
        "INVENTORY.yaml first to make a simulated fabric there, or declare a `kind: Fabric` in "
        "the specs for a real one\n"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sites: [ams, rtm]\nvms: []\ncolour: blue\n", "unknown key 'colour' at colour"),
        (
            "sites: [ams, rtm]\nvms:\n  - {name: a, activeSite: ams, replication: off, size: 2}\n",
            "unknown key 'size' at vms.0.size",
        ),
        ("sites: [ams, rtm]\nvms: []\ntimings: {commitTime: 1}\n", "unknown key 'commitTime'"),
        ("sites: [ams, rtm]\nvms: []\ntimings: {commit: -1}\n", "timings.commit"),
        ("sites: [ams, rtm, lon]\nvms: []\n", "sites must name exactly two different sites"),
        (
            "sites: [ams, rtm]\nvms:\n  - {name: a, activeSite: lon, replication: off}\n",
            "activeSite 'lon' is not one of the sites ['ams', 'rtm']",
        ),
        (
            "sites: [ams, rtm]\nvms:\n  - {name: a, activeSite: ams, replication: ams=>rtm}\n",
            "replication must be '<from>-><to>' (e.g. ams->rtm) or off, not 'ams=>rtm'",
        ),
        (
            "sites: [ams, rtm]\nvms:\n  - {name: a, activeSite: ams, replication: rtm->ams}\n",
            "must go from the active site to the other: write ams->rtm, or off",
        ),
        (
            (
                "sites: [ams, rtm]\nvms:\n  - {name: a, activeSite: ams, replication: off}\n"
                "  - {name: a, activeSite: rtm, replication: off}\n"
            ),
            "VM 'a' is listed twice",
        ),
        (
            "sites: [ams, rtm]\nvms:\n  - {name: a, activeSite: ams}\n",
            "missing required key 'replication' at vms.0.replication",
        ),
        ("sites: [ams, rtm\n", "not valid YAML"),
        ("- ams\n", "an inventory is a mapping with sites, vms"),
    ],
)
def test_an_invalid_inventory_is_refused_with_the_file_and_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    inventory = tmp_path / "bad.yaml"
    inventory.write_text(text)
    code, out, err = drctl(
        capsys, "fabric", "init", str(inventory), "--state-dir", str(tmp_path / "s")
    )
    assert (code, out) == (2, "")
    assert f"{inventory}: " in err
    assert message in err
    assert not (tmp_path / "s").exists()


def test_a_missing_inventory_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = drctl(
        capsys, "fabric", "init", str(tmp_path / "nope.yaml"), "--state-dir", str(tmp_path)
    )
    assert code == 2
    assert "nope.yaml: cannot read the inventory" in err


def test_the_state_dir_comes_from_the_environment(tmp_path: Path) -> None:
    """The installed entry point, as tests outside this repository run it."""
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(INVENTORY)
    env = {**os.environ, "DRCTL_STATE_DIR": str(tmp_path / "from-env")}
    for args in (["init", str(inventory)], ["show", "--output", "json"]):
        done = subprocess.run(
            [sys.executable, "-m", "reconciler", "fabric", *args],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
    assert [vm["name"] for vm in json.loads(done.stdout)["vms"]] == ["web01", "web02", "batch"]
    assert (tmp_path / "from-env" / "fabric.db").is_file()


def test_the_fabric_command_needs_a_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["fabric"])
    assert exited.value.code == 2
    assert "required: fabric_command" in capsys.readouterr().err


# --- the operator in the portal, and the faults of a real fabric ------------------------------

# Every operation instant: a job ends on the next command that looks.
QUICK_INVENTORY = INVENTORY.replace(
    "timings: {plannedFailover: 86400, stopVM: 1.5, replicationInterval: 30}",
    "timings: {plannedFailover: 0, unplannedFailover: 0, commit: 0, stopVM: 0, "
    "replicationInterval: 30}",
)


@pytest.fixture
def quick(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A state dir holding the fabric of QUICK_INVENTORY."""
    inventory = tmp_path / "quick.yaml"
    inventory.write_text(QUICK_INVENTORY)
    state_dir = tmp_path / "quick"
    code, _, _ = drctl(capsys, "fabric", "init", str(inventory), "--state-dir", str(state_dir))
    assert code == 0
    return state_dir


def fields(vm: dict[str, Any]) -> tuple[Any, ...]:
    return (
        vm["activeSite"],
        vm["running"],
        vm["protectionState"],
        vm["replicationState"],
        vm["job"],
    )


def test_an_operator_fails_over_by_hand_with_a_job_of_the_fabric(
    quick: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = drctl(capsys, "fabric", "failover", "web01", "rtm", "--state-dir", str(quick))
    assert (code, out) == (
        0,
        (
            "job-000001 started: PlannedFailover of web01 to rtm; the source is shut down "
            "first, nothing is lost (by hand, as an operator in the portal: drctl did not "
            "start it); drctl fabric show follows it\n"
        ),
    )
    args = ("fabric", "failover", "web02", "rtm", "--unplanned", "--state-dir", str(quick))
    code, out, _ = drctl(capsys, *args)
    assert code == 0
    assert out.startswith("job-000002 started: UnplannedFailover of web02 to rtm; the source")
    document = show(capsys, quick)
    web01, web02, _ = document["vms"]
    assert fields(web01) == ("rtm", ["rtm"], "CommitPending", "Off", None)
    assert fields(web02) == ("rtm", ["ams", "rtm"], "CommitPending", "Off", None)
    assert [(j["id"], j["operation"], j["state"]) for j in document["jobs"]] == [
        ("job-000001", "PlannedFailover", "Succeeded"),
        ("job-000002", "UnplannedFailover", "Succeeded"),
    ]
    assert document["jobs"][0]["dataLossSeconds"] == 0.0


def test_an_operator_stops_and_starts_a_copy_by_hand(
    quick: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = drctl(capsys, "fabric", "stop", "web01", "ams", "--state-dir", str(quick))
    assert code == 0
    assert out.startswith("job-000001 started: StopVM of web01 at ams (by hand")
    assert fields(show(capsys, quick)["vms"][0]) == ("ams", [], "Protected", "Replicating", None)
    code, _, _ = drctl(capsys, "fabric", "start", "web01", "ams", "--state-dir", str(quick))
    assert code == 0
    assert show(capsys, quick)["vms"][0]["running"] == ["ams"]


def test_a_suspended_job_waits_for_resume(quick: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ("fabric", "suspend-next", "web01", "stopvm", "--state-dir", str(quick))
    code, out, _ = drctl(capsys, *args)
    assert (code, out) == (
        0,
        (
            "the next job of StopVM on web01 will suspend half-way, waiting for a person: "
            "drctl fabric resume JOB continues it\n"
        ),
    )
    drctl(capsys, "fabric", "stop", "web01", "ams", "--state-dir", str(quick))
    document = show(capsys, quick)
    job = document["jobs"][0]
    assert (job["state"], job["finishedAt"]) == ("Suspended", None)
    assert job["stateDescription"].startswith("Waiting for user input: complete the manual")
    assert fields(document["vms"][0]) == ("ams", ["ams"], "Protected", "Replicating", job["id"])
    assert document["vms"][0]["allowedOperations"] == []
    code, out, _ = drctl(capsys, "fabric", "show", "--state-dir", str(quick))
    assert re.search(r"job-000001 StopVM \d+% SUSPENDED", out)

    code, out, _ = drctl(capsys, "fabric", "resume", "job-000001", "--state-dir", str(quick))
    assert (code, out) == (0, "job-000001 (StopVM of web01) runs again\n")
    document = show(capsys, quick)
    assert document["jobs"][0]["state"] == "Succeeded"
    assert document["vms"][0]["running"] == []
    code, _, err = drctl(capsys, "fabric", "resume", "job-000001", "--state-dir", str(quick))
    assert (code, err) == (
        2,
        (
            "drctl: job-000001 is Succeeded, not Suspended: only a suspended job resumes "
            "(drctl fabric show lists the jobs and their states)\n"
        ),
    )


def test_a_planned_failover_that_fails_after_its_shutdown_runs_nowhere(
    quick: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ("fabric", "fail", "web01", "PlannedFailover", "--after-shutdown")
    code, out, _ = drctl(capsys, *args, "--state-dir", str(quick))
    assert (code, out) == (
        0,
        (
            "the next job of PlannedFailover on web01 will fail after shutting the source down "
            "(no copy runs then)\n"
        ),
    )
    drctl(capsys, "fabric", "failover", "web01", "rtm", "--state-dir", str(quick))
    document = show(capsys, quick)
    assert document["jobs"][0]["state"] == "Failed"
    assert "failed after shutting down the copy at ams" in document["jobs"][0]["error"]
    web01 = document["vms"][0]
    assert fields(web01) == ("ams", [], "Protected", "Replicating", None)
    assert (web01["replication"], web01["health"]) == ("ams->rtm", "Normal")
    assert {"StartVM", "PlannedFailover"} <= set(web01["allowedOperations"])


def test_a_manual_resync_waits_for_a_resync_operation(
    quick: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ("fabric", "resync-required", "web02", "--manual", "--state-dir", str(quick))
    code, out, _ = drctl(capsys, *args)
    assert (code, out) == (
        0,
        (
            "replication of web02 needs a resync; the fabric does not resync it by itself: "
            "it stays ResyncRequired until a Resync operation\n"
        ),
    )
    web02 = show(capsys, quick)["vms"][1]
    assert (web02["replicationState"], web02["health"]) == ("ResyncRequired", "Critical")
    assert "Resync" in web02["allowedOperations"]
    assert "PlannedFailover" not in web02["allowedOperations"]


@pytest.mark.parametrize(
    "command",
    [
        ["failover", "web01", "rtm"],
        ["start", "web01", "ams"],
        ["stop", "web01", "ams"],
        ["suspend-next", "web01", "Commit"],
        ["resume", "job-000001"],
    ],
)
def test_the_new_verbs_act_on_a_declared_fabric_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    """`--fabric NAME` like every drctl fabric verb: here a fabric not initialised yet."""
    code, _, err = drctl(
        capsys, "fabric", *command, "--fabric", "lab", "--state-dir", str(tmp_path)
    )
    assert code == 3
    assert "run drctl fabric init --fabric lab INVENTORY.yaml" in err


# --- what the fabric reports in its own words ---------------------------------------------


def test_raw_state_makes_a_vm_report_a_state_drctl_does_not_know_until_cleared(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ("fabric", "raw-state", "web01", "FailoverInProgressMystery")
    code, out, _ = drctl(capsys, *args, "--description", "Odd", "--state-dir", str(state))
    assert (code, out) == (
        0,
        (
            "web01 now reports protection state 'FailoverInProgressMystery' (Odd), which "
            "drctl does not know: it is Blocked until drctl fabric raw-state web01 --clear\n"
        ),
    )
    web01 = show(capsys, state)["vms"][0]
    assert [web01[k] for k in ("protectionState", "rawState", "rawStateDescription")] == [
        "Unknown",
        "FailoverInProgressMystery",
        "Odd",
    ]
    assert "PlannedFailover" in web01["allowedOperations"]  # the fabric's own list
    code, out, _ = drctl(capsys, "fabric", "show", "--state-dir", str(state))
    assert "Unknown(FailoverInProgressMystery)" in out
    code, out, _ = drctl(
        capsys, "fabric", "raw-state", "web01", "--clear", "--state-dir", str(state)
    )
    assert (code, out) == (0, "web01 reports its own protection state again\n")
    assert show(capsys, state)["vms"][0]["rawState"] == "Protected"


def test_a_rename_can_make_two_vms_of_one_name_shown_with_both_ids(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = {vm["name"]: vm["vmId"] for vm in show(capsys, state)["vms"]}
    code, out, _ = drctl(capsys, "fabric", "rename", "web02", "web01", "--state-dir", str(state))
    assert (code, out) == (
        0,
        (
            "web02 is now named web01 in the fabric, its id unchanged\n"
            f"2 VMs are named web01 (ids {ids['web01']}, {ids['web02']}): drctl acts on "
            "neither until all but one are renamed\n"
        ),
    )
    document = show(capsys, state)
    assert document["duplicates"] == {"web01": [ids["web01"], ids["web02"]]}
    assert [(vm["name"], vm["vmId"]) for vm in document["vms"]] == [
        ("batch", ids["batch"]),
        ("web01", ids["web01"]),
        ("web01", ids["web02"]),
    ]
    code, out, _ = drctl(capsys, "fabric", "show", "--state-dir", str(state))
    assert f"2 VMs are named web01 (ids {ids['web01']}, {ids['web02']}): drctl acts on" in out
    code, out, _ = drctl(capsys, "fabric", "rename", "web02", "web02", "--state-dir", str(state))
    assert (code, out) == (0, "web02 reports its inventory name again\n")
    assert show(capsys, state)["duplicates"] == {}


SPEC = """\
apiVersion: drctl/v1
kind: RecoveryPlan
metadata: {name: web}
spec:
  sites: [ams, rtm]
  defaults: {activeSite: rtm, replication: rtm->ams}
  vms:
    - name: web01
"""


def test_apply_blocks_a_vm_in_an_unknown_raw_state_at_once_and_starts_nothing(
    quick: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A move the fabric allows, asked for by the spec: drctl does not make it."""
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "web.yaml").write_text(SPEC)
    state = ("--state-dir", str(quick))
    drctl(capsys, "fabric", "raw-state", "web01", "FailoverInProgressMystery", *state)
    code, out, _ = drctl(capsys, "apply", str(tmp_path / "specs"), "--timeout", "5", *state)
    assert code == 1
    assert (
        "web/web01: Blocked: the fabric reports protection state 'FailoverInProgressMystery' "
        "that drctl does not know; nothing is done to this VM until it reads a known state; "
        "check it in the fabric"
    ) in out
    assert show(capsys, quick)["jobs"] == []
