"""`drctl completion bash|zsh` in the real shells: what a user gets when pressing TAB.

bash runs the script's completion function on typed lines; zsh (installed by
`make system-deps`) loads the script from $fpath with compinit, as the help says.
Every command and flag of the parser is in both scripts, so a new flag cannot
miss its completion.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.cli import main as cli

TYPED = """
source "$1"
complete_line() {
  COMP_LINE="$1"; read -ra COMP_WORDS <<< "$1"
  [[ "$1" == *" " ]] && COMP_WORDS+=("")
  COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 )); COMP_POINT=${#COMP_LINE}; COMPREPLY=()
  _shtab_drctl
  echo "${COMPREPLY[*]}"
}
shift
for line in "$@"; do complete_line "$line"; done
"""


def script(shell: str, tmp_path: Path) -> Path:
    made = subprocess.run(
        [sys.executable, "-m", "reconciler", "completion", shell],
        capture_output=True,
        text=True,
        check=True,
    )
    path = tmp_path / f"drctl.{shell}"
    path.write_text(made.stdout)
    return path


def commands_and_flags() -> dict[str, set[str]]:
    """Each top-level command of the parser and its long flags."""
    parser = cli.build_parser()
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {
        name: {o for a in p._actions for o in a.option_strings if o.startswith("--")} - {"--help"}
        for name, p in sub.choices.items()
    }


def test_bash_completes_commands_flags_choices_and_directories(tmp_path: Path) -> None:
    (tmp_path / "specs-here").mkdir()
    lines = [
        "drctl dr",
        "drctl run --max-",
        "drctl completion ",
        "drctl fabric site-",
        f"drctl status {tmp_path}/specs-h",
        "drctl status --output ",
    ]
    done = subprocess.run(
        ["bash", "-c", TYPED, "-", str(script("bash", tmp_path)), *lines],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.splitlines() == [
        "drill",
        "--max-attempts --max-parallel --max-failovers-per-revision",
        "bash zsh",
        "site-down site-up",
        f"{tmp_path}/specs-here",
        "text json",
    ]


def test_bash_knows_every_command_and_flag_of_the_parser(tmp_path: Path) -> None:
    text = script("bash", tmp_path).read_text()
    for command, flags in commands_and_flags().items():
        assert command in text
        for flag in flags:
            assert flag in text, (command, flag)


def test_zsh_loads_the_script_from_fpath_with_every_flag(tmp_path: Path) -> None:
    zsh = shutil.which("zsh")
    assert zsh is not None, "zsh is not installed: run `make system-deps` (apt-get install zsh)"
    functions = tmp_path / "functions"
    functions.mkdir()
    loaded = script("zsh", tmp_path).rename(functions / "_drctl")
    syntax = subprocess.run([zsh, "-n", str(loaded)], capture_output=True, text=True, check=False)
    assert syntax.returncode == 0, syntax.stderr
    registered = subprocess.run(
        [
            zsh,
            "-fc",
            (
                f"fpath=({functions} $fpath); autoload -U compinit; "
                f"compinit -u -d {tmp_path}/zcompdump; print $_comps[drctl]"
            ),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert registered.stdout == "_drctl\n"
    text = loaded.read_text()
    for command, flags in commands_and_flags().items():
        assert f"{command})" in text or command in text
        for flag in flags:
            assert f'"{flag}' in text or f"{flag}[" in text, (command, flag)


@pytest.mark.parametrize("shell", ["fish", ""])
def test_an_unknown_shell_is_exit_2(shell: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as left:
        cli.main(["completion", shell])
    assert left.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_every_command_and_argument_has_help_and_every_command_is_in_the_readme() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = readme.split("## Commands", 1)[1].split("\n## ", 1)[0]
    missing: list[str] = []

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {c.dest: c.help for c in action._choices_actions}
                for name, sub in action.choices.items():
                    if not helps.get(name):
                        missing.append(f"{path} {name}")
                    walk(sub, f"{path} {name}")
            elif not action.help:
                missing.append(f"{path} {action.dest}")

    walk(cli.build_parser(), "drctl")
    assert missing == []
    for command in commands_and_flags():
        assert f"`drctl {command}" in table, command
    assert "`drctl --version`" in table
