"""Command-line refusals: each says why and what to do, with the contract's exit code."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from e2e import harness

from reconciler.cli import main as cli
from reconciler.cli import state_hint

INVENTORY = "sites: [ams, rtm]\nvms:\n  - {name: sql01, activeSite: ams, replication: ams->rtm}\n"


@pytest.fixture
def fabric(tmp_path: Path) -> Path:
    (tmp_path / "inv.yaml").write_text(INVENTORY)
    assert (
        cli.main(
            ["fabric", "init", str(tmp_path / "inv.yaml"), "--state-dir", str(tmp_path / "state")]
        )
        == 0
    )
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "plan.yaml").write_text(harness.three_tier("ams"))
    return tmp_path


@pytest.mark.parametrize("address", ["127.0.0.1:99999", "127.0.0.1", "127.0.0.1:http"])
def test_run_refuses_a_malformed_metrics_address(
    fabric: Path, address: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(
        [
            "run",
            str(fabric / "specs"),
            "--metrics-addr",
            address,
            "--state-dir",
            str(fabric / "state"),
        ]
    )
    assert code == 2
    assert "--metrics-addr must be HOST:PORT with a port from 0 to 65535" in capsys.readouterr().err


def test_run_refuses_a_metrics_port_in_use(
    fabric: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = cli.main(
            [
                "run",
                str(fabric / "specs"),
                "--metrics-addr",
                f"127.0.0.1:{port}",
                "--state-dir",
                str(fabric / "state"),
            ]
        )
    assert code == 2
    err = capsys.readouterr().err
    assert f"cannot serve metrics on 127.0.0.1:{port}" in err
    assert "choose another --metrics-addr" in err


def test_commands_on_a_state_dir_without_a_fabric_say_how_to_make_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(state_hint, "PROC", tmp_path / "proc")  # no daemon anywhere
    monkeypatch.setattr(state_hint, "WELL_KNOWN", ())
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "plan.yaml").write_text(harness.three_tier("ams"))
    for command in ("plan", "apply", "status"):
        code = cli.main([command, str(tmp_path / "specs"), "--state-dir", str(tmp_path / "st")])
        assert code == 3, command
        assert "drctl fabric init INVENTORY.yaml" in capsys.readouterr().err
    assert not (tmp_path / "st" / "drctl.lock").exists()
    assert not (tmp_path / "st" / "journal.db").exists()


def test_plan_and_status_create_no_journal(fabric: Path) -> None:
    assert cli.main(["plan", str(fabric / "specs"), "--state-dir", str(fabric / "state")]) == 0
    assert cli.main(["status", str(fabric / "specs"), "--state-dir", str(fabric / "state")]) == 0
    assert not (fabric / "state" / "journal.db").exists()


def test_validate_imports_no_fabric_journal_metrics_or_watcher(tmp_path: Path) -> None:
    """`drctl validate` (a pre-commit hook, a CI step) pays only for the spec's own imports."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    probe = (
        "import sys\n"
        "from reconciler.cli import main\n"
        f"code = main.main(['validate', {str(root / 'specs')!r}])\n"
        "heavy = ('sqlite3', 'reconciler.fabric.sim', 'reconciler.engine', 'reconciler.daemon',\n"
        "         'deepdiff', 'prometheus_client', 'watchfiles', 'subprocess')\n"
        "print(code, sorted(m for m in sys.modules if m.startswith(heavy)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert done.stdout.split("\n")[-2] == "0 []"


# One plan in flow style: sql01 at ams.
PLAN = (
    "{apiVersion: drctl/v1, kind: RecoveryPlan, metadata: {name: finance}, "
    "spec: {sites: [ams, rtm], defaults: {activeSite: ams}, vms: [{name: sql01}]}}\n"
)


def break_head(root: Path) -> None:
    (root / ".git" / "HEAD").write_text("garbage\n")


def hide_git(root: Path) -> None:
    os.environ["PATH"] = str(root / "no-bin")


@pytest.mark.parametrize("breaks", [break_head, hide_git], ids=["HEAD garbage", "no git on PATH"])
@pytest.mark.parametrize("command", ["plan", "apply", "status"])
def test_a_broken_repository_is_a_runtime_error_in_one_line_never_a_content_hash(
    fabric: Path,
    command: str,
    breaks: Callable[[Path], None],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    harness.spec_repo(fabric / "repo", {"finance.yaml": PLAN})
    monkeypatch.setenv("PATH", os.environ["PATH"])  # restored after the test
    breaks(fabric / "repo")
    code = cli.main([command, str(fabric / "repo" / "specs"), "--state-dir", str(fabric / "state")])
    out, err = capsys.readouterr()
    assert code == 3
    assert "sha256:" not in out + err
    (line,) = err.splitlines()
    assert line.startswith("drctl: ")
    assert f"{fabric / 'repo' / '.git'}" in line


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        (["--trust-merges"], "--trust-merges applies only with --require-signed-commits"),
        (
            ["--allowed-signers", "allowed_signers"],
            "--allowed-signers applies only with --require-signed-commits",
        ),
        (
            ["--require-signed-commits", "--allowed-signers", "no-such-file"],
            "--allowed-signers no-such-file: no such file; give ssh-keygen's allowed_signers file",
        ),
    ],
)
def test_run_refuses_signing_options_that_mean_nothing(
    fabric: Path,
    extra: list[str],
    said: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (fabric / "allowed_signers").write_text("")
    monkeypatch.chdir(fabric)
    code = cli.main(["run", str(fabric / "specs"), *extra, "--state-dir", str(fabric / "state")])
    assert code == 2
    assert said in capsys.readouterr().err


def test_run_help_says_what_git_verifies_and_what_it_does_not(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "git verifies a signature over the commit object, which names its tree and its" in (
        shown
    )
    assert "it does not verify the parents' own signatures" in shown
    assert "--trust-merges" in shown
