"""Exit codes on a crash path: 3 and one line saying what and where its traceback is, never 1.

Python's own exit status for an uncaught exception is 1, which the contract
gives to "not converged": a script would read a crash as a plan still
moving. Every command runs under `cli.main.run`'s one broad catch; and what
made the print itself crash (a name that is not UTF-8, a terminal that
cannot encode it, a full disk) is printed escaped, or said.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from reconciler.cli import main as cli

DRCTL = Path(sys.executable).parent / "drctl"
SPECS = Path(__file__).resolve().parents[2] / "specs"
PLAN = (SPECS / "finance.yaml").read_text()


def _broken(_args: argparse.Namespace) -> int:
    known: dict[str, int] = {}
    return known["no such key"]


def test_an_unexpected_error_exits_3_with_one_line_and_the_traceback_in_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = argparse.Namespace(handler=_broken, debug=False, state_dir=tmp_path)
    assert cli.run(args) == 3
    captured = capsys.readouterr()
    (line,) = captured.err.splitlines()
    found = re.fullmatch(
        r"drctl: internal error: KeyError: 'no such key'; its traceback is in (\S+)", line
    )
    assert found is not None, line
    saved = Path(found.group(1))
    assert saved.parent == tmp_path / "crashes"
    assert "Traceback (most recent call last)" in saved.read_text()
    assert 'return known["no such key"]' in saved.read_text()
    assert captured.out == ""


def test_debug_prints_the_traceback_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # the system's, as $TMPDIR
    (tmp_path / "tmp").mkdir()
    args = argparse.Namespace(handler=_broken, debug=True, state_dir=tmp_path / "not-there")
    assert cli.run(args) == 3
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last)")
    last = err.splitlines()[-1]
    # No state dir to write in (none is created for this): the temporary directory.
    found = re.fullmatch(r"drctl: internal error: KeyError: .*; its traceback is in (\S+)", last)
    assert found is not None, last
    assert Path(found.group(1)).parent == tmp_path / "tmp"
    assert not (tmp_path / "not-there").exists()


def test_debug_is_an_option_of_drctl() -> None:
    assert cli.build_parser().parse_args(["--debug", "validate", "specs"]).debug is True


@pytest.mark.e2e
def test_an_output_that_cannot_be_written_exits_3_saying_so() -> None:
    """`drctl validate specs/ > /dev/full` ended in a traceback and exit 1."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this machine")
    with Path("/dev/full").open("w") as full:
        done = subprocess.run(
            [DRCTL, "validate", SPECS],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 3
    assert done.stderr.splitlines()[-1] == "drctl: cannot write the output: No space left on device"
    assert "Traceback" not in done.stderr


@pytest.mark.e2e
def test_a_spec_directory_that_is_not_utf8_is_printed_escaped(tmp_path: Path) -> None:
    """`drctl validate` of such a directory printed a traceback (UnicodeEncodeError), exit 1."""
    odd = os.fsencode(tmp_path) + b"/sp\xffecs"
    Path(os.fsdecode(odd)).mkdir()
    Path(os.fsdecode(odd + b"/finance.yaml")).write_text(PLAN)
    done = subprocess.run(
        [os.fsencode(DRCTL), b"validate", odd], capture_output=True, timeout=60, check=False
    )
    assert (done.returncode, done.stderr) == (0, b"")
    assert done.stdout == b'"' + os.fsencode(tmp_path) + b'/sp\\xffecs": valid (1 plans, 5 VMs)\n'


@pytest.mark.e2e
def test_a_name_the_terminal_cannot_encode_is_printed_escaped(tmp_path: Path) -> None:
    """Under an ASCII output encoding, `été/` made `drctl validate` crash on its one line."""
    (tmp_path / "été").mkdir()
    (tmp_path / "été" / "finance.yaml").write_text(PLAN)
    done = subprocess.run(
        [DRCTL, "validate", "été"],
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONIOENCODING": "ascii:strict"},
    )
    assert (done.returncode, done.stdout, done.stderr) == (
        0,
        b"\\xe9t\\xe9: valid (1 plans, 5 VMs)\n",
        b"",
    )
