"""The `drctl` command line: parses arguments, calls the package, maps errors to exit codes.

Exit codes are a contract (README): 0 success; 1 not converged (`apply`,
`plan --exit-code`); 2 invalid input or usage; 3 runtime error.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from reconciler import errors, spec

Handler = Callable[[argparse.Namespace], int]

DEFAULT_STATE_DIR = ".drctl"


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors with the contract's exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(errors.EXIT_INVALID)


def state_dir_arg(parser: argparse.ArgumentParser) -> None:
    """Add `--state-dir` (default $DRCTL_STATE_DIR, else .drctl)."""
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(os.environ.get("DRCTL_STATE_DIR") or DEFAULT_STATE_DIR),
        help="where drctl keeps its state (default: $DRCTL_STATE_DIR or .drctl)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="drctl",
        description="GitOps reconciler for disaster recovery of VMs replicated between two sites.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    validate = commands.add_parser("validate", help="check a directory of specs; exit 2 if invalid")
    validate.add_argument("specs_dir", type=Path)
    validate.set_defaults(handler=_validate)

    # Imported here so that `drctl validate` does not pay for the fabric's imports.
    from reconciler import fabric_cli

    fabric_cli.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except errors.SpecError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return exc.exit_code
    except errors.DrctlError as exc:
        print(f"drctl: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("drctl: interrupted", file=sys.stderr)
        return errors.EXIT_RUNTIME


def _validate(args: argparse.Namespace) -> int:
    desired = spec.load_specs(args.specs_dir)
    vms = sum(len(p.vms) for p in desired.plans)
    print(f"{args.specs_dir}: valid ({len(desired.plans)} plans, {vms} VMs)")
    return errors.EXIT_OK
