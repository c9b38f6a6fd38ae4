"""`drctl completion bash|zsh`: the shell completion script, made from the parser itself.

`cli.main` adds the command; its handler asks `main.build_parser` for the
whole tree of commands and flags and hands it to shtab, so the completion
never drifts from `--help` (a hand-written script would, at every new flag).
Directories complete where a command takes the specs or the state dir,
files where it takes an inventory or a key file. shtab is imported only
when the script is made.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator

SHELLS = ("bash", "zsh")
_DIRECTORIES = frozenset({"specs_dir", "state_dir", "output_dir"})
_FILES = frozenset({"inventory", "allowed_signers", "plan_file", "out"})


def add_command(
    commands: argparse._SubParsersAction,  # type: ignore[type-arg]
    build_parser: Callable[[], argparse.ArgumentParser],
) -> None:
    completion = commands.add_parser(
        "completion",
        help="print the shell completion script for bash or zsh",
        description=(
            "Print a completion script for drctl's commands, flags and paths. bash: "
            "`drctl completion bash > ~/.local/share/bash-completion/completions/drctl`; "
            'zsh: `drctl completion zsh > "${fpath[1]}/_drctl"` (a directory on $fpath), '
            "then start a new shell."
        ),
    )
    completion.add_argument("shell", choices=SHELLS, help="the shell to complete in")
    completion.set_defaults(handler=lambda args: _print(args, build_parser))


def _print(args: argparse.Namespace, build_parser: Callable[[], argparse.ArgumentParser]) -> int:
    import shtab

    parser = build_parser()
    for action in _actions(parser):
        if action.dest in _DIRECTORIES:
            action.complete = shtab.DIRECTORY  # type: ignore[attr-defined]
        elif action.dest in _FILES:
            action.complete = shtab.FILE  # type: ignore[attr-defined]
    sys.stdout.write(shtab.complete(parser, args.shell))
    return 0


def _actions(parser: argparse.ArgumentParser) -> Iterator[argparse.Action]:
    """Every action of `parser` and of its subcommands, at every depth."""
    for action in parser._actions:
        yield action
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                yield from _actions(sub)
