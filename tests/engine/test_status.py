"""The daemon's status file: written whole, read back typed, and a damaged one is no status."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from e2e import harness

from reconciler.cli import main as cli
from reconciler.engine import state_dir as layout
from reconciler.engine import status

AT = datetime(2026, 11, 20, 9, 0, 1, 250000, tzinfo=UTC)
INVENTORY = "sites: [ams, rtm]\nvms:\n  - {name: sql01, activeSite: ams, replication: ams->rtm}\n"


# Keys added since, absent from the files of an older daemon (which read back as None).
ADDED = {
    "revisionRefused": None,
    "revisionError": None,
    "revisionUntrusted": None,
    "maxFailoversPerRevision": None,
}


def written(pid: object, **overrides: Any) -> dict[str, Any]:
    """daemon.json as the daemon has always written it: the `drctl status` contract."""
    return {
        "pid": pid,
        "running": True,
        "revisionInForce": "a" * 40,
        "revisionSeen": "b" * 40,
        "specValid": False,
        "specErrors": ["finance.yaml:7: unknown key 'grups'"],
        "updatedAt": "2026-11-20T09:00:01.250000+00:00",
        "stateProblem": None,
        "stateWarnings": [],
        **overrides,
    }


SAID = status.DaemonStatus(
    pid=4242,
    running=True,
    revision_in_force="a" * 40,
    revision_seen="b" * 40,
    spec_valid=False,
    spec_errors=("finance.yaml:7: unknown key 'grups'",),
    updated_at=AT,
)


def test_a_written_status_reads_back_and_keeps_the_json_contract(tmp_path: Path) -> None:
    said = SAID
    status.write_status(tmp_path, said)
    assert status.read_status(tmp_path) == said
    assert json.loads(layout.daemon_status_path(tmp_path).read_text()) == {
        **written(4242),
        **ADDED,
    }
    assert [p.name for p in tmp_path.iterdir()] == ["daemon.json"]  # no temporary left


def test_a_refused_revision_and_a_git_error_read_back(tmp_path: Path) -> None:
    said = dataclasses.replace(
        SAID,
        spec_valid=True,
        spec_errors=(),
        refused=("b" * 40, ["it holds no RecoveryPlan"]),
        revision_error="git takes /x/.git for no repository",
    )
    status.write_status(tmp_path, said)
    assert status.read_status(tmp_path) == said
    shown = json.loads(layout.daemon_status_path(tmp_path).read_text())
    assert shown["revisionRefused"] == {
        "revision": "b" * 40,
        "reasons": ["it holds no RecoveryPlan"],
    }
    assert shown["revisionError"] == "git takes /x/.git for no repository"


def test_a_revision_kept_out_as_unsigned_reads_back(tmp_path: Path) -> None:
    said = dataclasses.replace(
        SAID,
        untrusted=status.Untrusted(
            "b" * 40, ("commit bbbbbbbbbbbb has no signature",), (("finance", "sql01"),)
        ),
    )
    status.write_status(tmp_path, said)
    assert status.read_status(tmp_path) == said
    shown = json.loads(layout.daemon_status_path(tmp_path).read_text())
    assert shown["revisionUntrusted"] == {
        "revision": "b" * 40,
        "reasons": ["commit bbbbbbbbbbbb has no signature"],
        "vms": [{"plan": "finance", "vm": "sql01"}],
    }


def test_the_status_of_a_daemon_older_than_the_state_fields_still_reads(tmp_path: Path) -> None:
    older = {k: v for k, v in written(4242).items() if not k.startswith("state")}
    layout.daemon_status_path(tmp_path).write_text(json.dumps(older))
    read = status.read_status(tmp_path)
    assert read is not None
    assert (read.state_problem, read.state_warnings) == (None, ())


@pytest.mark.parametrize(
    "text",
    [
        "",
        '{"pid": 12, "running": tr',  # cut short
        "[1, 2]",
        json.dumps({k: v for k, v in written(12).items() if k != "specValid"}),
        json.dumps(written("12")),
        json.dumps(written(True)),
        json.dumps(written(0)),
        json.dumps(written(12, running="yes")),
        json.dumps(written(12, revisionInForce=7)),
        json.dumps(written(12, specErrors="finance.yaml:7: bad")),
        json.dumps(written(12, updatedAt="yesterday")),
        json.dumps(written(12, updatedAt="2026-11-20T09:00:01")),  # no zone
        json.dumps(written(12, revisionRefused=["b" * 40])),
        json.dumps(written(12, revisionRefused={"revision": "b" * 40, "reasons": [1]})),
        json.dumps(written(12, revisionError=7)),
        json.dumps(written(12, revisionUntrusted={"revision": "b" * 40, "reasons": []})),
        json.dumps(
            written(12, revisionUntrusted={"revision": "b", "reasons": [], "vms": ["sql01"]})
        ),
    ],
)
def test_a_damaged_or_partial_file_is_no_status(tmp_path: Path, text: str) -> None:
    layout.daemon_status_path(tmp_path).write_text(text)
    assert status.read_status(tmp_path) is None
    assert status.running_daemon(tmp_path) is None


def test_a_file_that_is_not_text_is_no_status(tmp_path: Path) -> None:
    layout.daemon_status_path(tmp_path).write_bytes(b"\xff\xfe\x00")
    assert status.read_status(tmp_path) is None


def test_no_file_is_no_status(tmp_path: Path) -> None:
    assert status.read_status(tmp_path) is None


def test_only_a_daemon_that_runs_and_whose_process_lives_is_running(tmp_path: Path) -> None:
    path = layout.daemon_status_path(tmp_path)
    path.write_text(json.dumps(written(os.getpid())))
    assert status.running_daemon(tmp_path) is not None
    path.write_text(json.dumps(written(os.getpid(), running=False)))  # it said it stopped
    assert status.running_daemon(tmp_path) is None
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    path.write_text(json.dumps(written(int(gone.stdout))))  # killed without a word
    assert status.running_daemon(tmp_path) is None
    path.write_text(json.dumps(written(2**40)))  # no process can have that id
    assert status.running_daemon(tmp_path) is None


@pytest.fixture
def fabric(tmp_path: Path) -> Path:
    (tmp_path / "inv.yaml").write_text(INVENTORY)
    state = tmp_path / "state"
    assert cli.main(["fabric", "init", str(tmp_path / "inv.yaml"), "--state-dir", str(state)]) == 0
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "finance.yaml").write_text(harness.three_tier("ams"))
    return tmp_path


def test_drctl_status_json_shows_the_daemon_object_as_written(
    fabric: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = fabric / "state"
    layout.daemon_status_path(state).write_text(json.dumps(written(os.getpid()), indent=2))
    args = ["status", str(fabric / "specs"), "--state-dir", str(state)]
    assert cli.main([*args, "--output", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["daemon"] == {**written(os.getpid()), **ADDED}
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert f"daemon (pid {os.getpid()}): revision in force {'a' * 40}; not yet sha256:" in out
    assert "  newest revision invalid, kept out: finance.yaml:7: unknown key 'grups'" in out


def test_drctl_status_says_when_the_daemon_has_no_revision_in_force_never_none(
    fabric: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = fabric / "state"
    problem = "cannot write /x/journal.db: database or disk is full: drctl starts nothing"
    said = written(os.getpid(), revisionInForce=None, stateProblem=problem)
    layout.daemon_status_path(state).write_text(json.dumps(said))
    assert cli.main(["status", str(fabric / "specs"), "--state-dir", str(state)]) == 0
    out = capsys.readouterr().out
    assert f"daemon (pid {os.getpid()}): no revision in force (no valid one seen): acts on " in out
    assert f"  starts nothing: {problem}\n" in out
    assert "None" not in out
    (fabric / "specs" / "bad.yaml").write_text("apiVersion: drctl/v1\nkind: Nothing\n")
    assert cli.main(["status", str(fabric / "specs"), "--state-dir", str(state)]) == 2
    err = capsys.readouterr().err
    assert f"drctl: the daemon (pid {os.getpid()}) has no revision in force: it acts on " in err
    assert "None" not in err


def test_drctl_status_with_a_damaged_daemon_file_shows_no_daemon(
    fabric: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = fabric / "state"
    layout.daemon_status_path(state).write_text('{"pid": ')
    args = ["status", str(fabric / "specs"), "--state-dir", str(state), "--output", "json"]
    assert cli.main(args) == 0
    assert json.loads(capsys.readouterr().out)["daemon"] is None
