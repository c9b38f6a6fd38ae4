"""A newcomer's first mistakes: an empty or wrong specs directory, a state dir that is not
the daemon's, no fabric yet. Each is one line that says what was tried and what to do,
with the contract's exit code; nothing is created.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from e2e import harness

from reconciler.cli import main as cli
from reconciler.cli import state_hint


def drctl(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("command", ["validate", "plan", "status", "apply"])
def test_an_empty_specs_directory_is_exit_2_with_what_was_searched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    empty = tmp_path / "specs"
    empty.mkdir()
    code, out, err = drctl(
        capsys,
        command,
        str(empty),
        *(() if command == "validate" else ("--state-dir", str(tmp_path / "state"))),
    )
    assert (code, out) == (2, "")
    assert err == (
        f"{empty}: the spec directory holds no RecoveryPlan: searched no spec file (*.yaml or "
        "*.yml, in it or below it; hidden paths skipped); point drctl at the directory that "
        "holds the plans (in a clone of the specs repository, usually its specs/)\n"
    )
    assert not (tmp_path / "state").exists()


def test_a_directory_of_other_yaml_names_the_files_it_searched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "ci.yaml").write_text("# the plans are elsewhere\n")
    code, _, err = drctl(capsys, "validate", str(tmp_path))
    assert code == 2
    assert err == (
        f"{tmp_path}: the spec directory holds no RecoveryPlan: searched 1 spec files (ci.yaml), "
        "which declare no RecoveryPlan or Fabric; point drctl at the directory that holds the "
        "plans (in a clone of the specs repository, usually its specs/)\n"
    )


def test_version_names_the_installed_release(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib import metadata

    with pytest.raises(SystemExit) as left:
        cli.main(["--version"])
    assert left.value.code == 0
    assert capsys.readouterr().out == f"drctl {metadata.version('drctl')}\n"


def test_no_fabric_says_which_state_dir_was_tried_and_how_to_make_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    said = state_hint.explain(str(tmp_path / "state"), proc=tmp_path / "proc", well_known=())
    assert said == (
        f"no simulated fabric in {tmp_path / 'state'} (from --state-dir): run drctl fabric "
        "init INVENTORY.yaml first to make a simulated fabric there, or declare a "
        "`kind: Fabric` in the specs for a real one"
    )


def fake_process(proc: Path, pid: int, argv: list[str], cwd: Path, env: dict[str, str]) -> None:
    """A /proc/PID entry as Linux shows it: NUL-separated cmdline and environ, cwd a link."""
    entry = proc / str(pid)
    entry.mkdir(parents=True)
    (entry / "cmdline").write_bytes("\0".join(argv).encode() + b"\0")
    (entry / "environ").write_bytes(b"".join(f"{k}={v}\0".encode() for k, v in env.items()))
    (entry / "cwd").symlink_to(cwd)


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        (
            ["/opt/drctl/.venv/bin/python", "/opt/drctl/.venv/bin/drctl", "run", "specs"],
            {"DRCTL_STATE_DIR": "/var/lib/drctl"},
            "/var/lib/drctl",
        ),
        (["drctl", "run", "specs", "--state-dir", "st"], {}, "{cwd}/st"),
        (["python3", "-m", "reconciler", "run", "specs", "--state-dir=/srv/st"], {}, "/srv/st"),
        (["drctl", "--debug", "run", "specs"], {}, "{cwd}/.drctl"),
    ],
)
def test_a_running_daemons_state_dir_is_named_instead_of_making_a_second_fabric(
    tmp_path: Path,
    argv: list[str],
    env: dict[str, str],
    expected: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DRCTL_STATE_DIR", raising=False)  # `make test` sets it
    proc = tmp_path / "proc"
    fake_process(proc, 4242, argv, tmp_path, env)
    fake_process(proc, 4243, ["timeout", "5", "drctl", "run", "x"], tmp_path, {})  # its parent
    fake_process(proc, 4244, ["vim", "drctl", "run"], tmp_path, {})  # not drctl
    said = state_hint.explain(".drctl", proc=proc, well_known=())
    where = expected.format(cwd=tmp_path)
    assert said == (
        f"no simulated fabric in {Path('.drctl').absolute()} (the default .drctl in the working "
        f"directory); the state dir in use is {where} (drctl run, pid 4242): pass --state-dir "
        f"{where} (or set DRCTL_STATE_DIR={where}) to read it"
    )
    assert "fabric init" not in said


def test_a_well_known_state_dir_with_state_in_it_is_named(tmp_path: Path) -> None:
    kept = tmp_path / "var-lib-drctl"
    kept.mkdir()
    (kept / "journal.sqlite").write_bytes(b"")
    said = state_hint.explain(str(tmp_path / "st"), proc=tmp_path / "proc", well_known=(kept,))
    assert f"the state dir in use is {kept} (state kept there): pass --state-dir {kept}" in said
    fake_process(tmp_path / "proc", 7, ["drctl", "run", "s", "--state-dir", "/srv/a"], tmp_path, {})
    said = state_hint.explain(str(tmp_path / "st"), proc=tmp_path / "proc", well_known=(kept,))
    assert said.endswith(
        f"; state dirs in use: /srv/a (drctl run, pid 7), {kept} (state kept there): pass "
        "--state-dir with the one you mean"
    )


@pytest.mark.e2e
def test_a_real_daemon_without_a_fabric_keeps_running_and_status_elsewhere_points_at_it(
    tmp_path: Path,
) -> None:
    """The systemd unit on a fresh install: no `fabric init` yet. The daemon does not exit 3
    in a restart loop: it stays up with its plans Blocked, saying what to run; a `drctl status`
    in another state dir names the daemon's instead of suggesting a second fabric."""
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "finance.yaml").write_text(harness.three_tier("ams"))
    daemon_state = tmp_path / "daemon-state"
    env = {**os.environ, "DRCTL_STATE_DIR": str(daemon_state)}
    exe = str(Path(sys.executable).parent / "drctl")
    daemon = subprocess.Popen(
        [exe, "run", str(specs), "--resync", "0.2"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        harness.wait_until(
            "the daemon wrote its status",
            lambda: (daemon_state / "daemon.json").exists() or daemon.poll() is not None,
        )
        assert daemon.poll() is None, daemon.communicate()[0]
        other = {**os.environ, "DRCTL_STATE_DIR": str(tmp_path / "elsewhere")}
        shown = subprocess.run(
            [exe, "status", str(specs)],
            env=other,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
        )
        assert shown.returncode == 3
        assert f"{daemon_state} (drctl run, pid {daemon.pid})" in shown.stderr
        assert "fabric init" not in shown.stderr
        assert not (tmp_path / "elsewhere").exists()
    finally:
        daemon.terminate()
        out, _ = daemon.communicate(timeout=20)
    assert daemon.returncode == 0, out
    assert "blocked: fabric 'embedded' cannot be opened: no simulated fabric in" in out
    assert "run drctl fabric init INVENTORY.yaml first" in out
