"""The `drctl` command line: parses arguments, calls the package, maps errors to exit codes.

Exit codes are a contract (README): 0 success; 1 not converged (`apply`,
`plan --exit-code`); 2 invalid input or usage; 3 runtime error.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler import errors
from reconciler.cli import applying, crash, options, planning, signing
from reconciler.gitops import specdir

if TYPE_CHECKING:
    pass

Handler = options.Handler


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors with the contract's exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(errors.EXIT_INVALID)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="drctl",
        description="GitOps reconciler for disaster recovery of VMs replicated between two sites.",
    )
    parser.add_argument("--version", action="version", version=f"drctl {_version()}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="on an internal error, print its traceback too (it is always written to a file)",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    validate = commands.add_parser("validate", help="check a directory of specs; exit 2 if invalid")
    validate.add_argument(
        "specs_dir",
        type=Path,
        metavar="SPECS_DIR",
        help="the directory of spec files (*.yaml, *.yml, read with the directories below it)",
    )
    validate.set_defaults(handler=_validate)

    plan_cmd = commands.add_parser(
        "plan", help="show the ordered actions, each VM's phase and reason, and readiness"
    )
    plan_cmd.add_argument(
        "specs_dir",
        type=Path,
        metavar="SPECS_DIR",
        help="the directory of spec files (*.yaml, *.yml, read with the directories below it)",
    )
    options.output_arg(plan_cmd)
    plan_cmd.add_argument(
        "--exit-code", action="store_true", help="exit 1 when not converged (0 when converged)"
    )
    options.max_failovers_arg(plan_cmd, "plan as `drctl run`/`drctl apply` with this flag would: ")
    plan_cmd.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="save the plan to FILE for `drctl apply SPECS_DIR --plan FILE`, which executes "
        "exactly it and refuses if the revision or the fabric changed meanwhile",
    )
    options.state_dir_arg(plan_cmd)
    plan_cmd.set_defaults(handler=planning.plan_command)

    apply_cmd = commands.add_parser("apply", help="execute the plan until converged")
    apply_cmd.add_argument(
        "specs_dir",
        type=Path,
        metavar="SPECS_DIR",
        help="the directory of spec files (*.yaml, *.yml, read with the directories below it)",
    )
    apply_cmd.add_argument(
        "--timeout",
        type=float,
        default=1800.0,
        metavar="SECONDS",
        help="how long to wait for things that resolve by themselves (default 1800)",
    )
    options.executor_args(apply_cmd, poll_interval=0.5)
    applying.add_scope_args(apply_cmd)
    options.state_dir_arg(apply_cmd)
    apply_cmd.set_defaults(handler=applying.apply_command)

    status_cmd = commands.add_parser("status", help="each VM: desired, observed, phase, reason")
    status_cmd.add_argument(
        "specs_dir",
        type=Path,
        metavar="SPECS_DIR",
        help="the directory of spec files (*.yaml, *.yml, read with the directories below it)",
    )
    options.output_arg(status_cmd)
    status_cmd.add_argument(
        "--watch",
        action="store_true",
        help="look again every --interval seconds: on a terminal the table is redrawn in place, "
        "elsewhere printed whole each time it changed (json: a document a line); Ctrl-C stops",
    )
    status_cmd.add_argument(
        "--interval",
        type=_interval,
        default=2.0,
        metavar="SECONDS",
        help="with --watch: seconds between looks (default 2)",
    )
    options.state_dir_arg(status_cmd)
    status_cmd.set_defaults(handler=planning.status_command)

    _add_run_command(commands)

    audit_cmd = commands.add_parser(
        "audit",
        help="who moved what where, when, and did it converge: the git history of "
        "the specs joined with the journal",
    )
    audit_cmd.add_argument(
        "specs_dir",
        type=Path,
        metavar="SPECS_DIR",
        help="the directory of spec files (*.yaml, *.yml, read with the directories below it)",
    )
    audit_cmd.add_argument("--vm", metavar="NAME", help="only the entries of this VM")
    audit_cmd.add_argument(
        "--since", metavar="DATE", help="only commits at or after this ISO date or datetime"
    )
    signing.add_audit_args(audit_cmd)
    options.output_arg(audit_cmd)
    options.state_dir_arg(audit_cmd)
    audit_cmd.set_defaults(handler=_audit)

    # Imported here so that `drctl validate` does not pay for the fabric's imports.
    from reconciler.cli import fabric as fabric_cli

    fabric_cli.add_commands(commands)
    from reconciler.cli import drill as drill_cli

    drill_cli.add_commands(commands)
    from reconciler.cli import importing

    importing.add_command(commands)
    from reconciler.cli import breakglass

    breakglass.add_commands(commands)
    from reconciler.cli import completion

    completion.add_command(commands, build_parser)
    return parser


def _add_run_command(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """`drctl run` and its flags (apart: build_parser would be too long to read)."""
    run_cmd = commands.add_parser(
        "run", help="the GitOps daemon: watch SPECS_DIR, reconcile, serve /metrics"
    )
    run_cmd.add_argument(
        "specs_dir",
        type=Path,
        metavar="SPECS_DIR",
        help="the directory of spec files (*.yaml, *.yml, read with the directories below it)",
    )
    run_cmd.add_argument(
        "--metrics-addr",
        metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics",
    )
    run_cmd.add_argument(
        "--resync",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="re-read specs and correct drift at least this often (default 30)",
    )
    options.executor_args(run_cmd, poll_interval=0.1)
    run_cmd.add_argument(
        "--log-format",
        choices=["text", "json"],
        default="text",
        help="text lines (default), or one JSON object per line with an `event` field",
    )
    run_cmd.add_argument(
        "--git-notes",
        action="store_true",
        help="attach the DR outcome of each converged or blocked commit as a "
        "git note under refs/notes/drctl",
    )
    run_cmd.add_argument(
        "--no-watch",
        action="store_true",
        help="do not watch the files (e.g. on NFS, without inotify): changes "
        "are then seen at each resync",
    )
    run_cmd.add_argument(
        "--lock",
        metavar="etcd://HOST:PORT[,HOST:PORT...]/PREFIX",
        help="one replica of several: lead or follow on an etcd lease under PREFIX, with the "
        "journal in etcd (default: the state dir's lock, one drctl at a time)",
    )
    run_cmd.add_argument(
        "--lease-ttl",
        type=int,
        default=15,
        metavar="SECONDS",
        help="with --lock: the lease's TTL; a survivor takes over within about this long "
        "(default 15, renewed every TTL/4 s, at most 5)",
    )
    run_cmd.add_argument(
        "--identity",
        metavar="NAME",
        help="with --lock: this replica's name in drctl_leader_info and status (default HOST:PID)",
    )
    run_cmd.add_argument(
        "--adopt-safely",
        action="store_true",
        help="for a first start: the first revision that would move any VM waits until a later "
        "commit confirms it (kept in the state dir; once confirmed, every revision applies)",
    )
    signing.add_run_args(run_cmd)
    options.state_dir_arg(run_cmd)
    run_cmd.set_defaults(handler=_run)


def _version() -> str:
    """The installed distribution's version (pyproject.toml's `version`)."""
    from importlib import metadata

    try:
        return metadata.version("drctl")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def main(argv: Sequence[str] | None = None) -> int:
    """Run `drctl ARGV` (argparse leaves with 0 for `--help`, 2 for a usage error)."""
    return run(build_parser().parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Run the parsed command: whatever happens, an exit code of the contract.

    An error drctl did not expect exits 3 (runtime error) with one line that
    says what it was and where its traceback was written (`--debug` prints
    it too), never with a traceback and Python's 1 ("not converged").
    """
    _tolerate_unencodable()
    try:
        code = _dispatch(args)
        # A full disk or a closed pipe on stdout shows here, not at exit.
        sys.stdout.flush()
    except KeyboardInterrupt:
        print("drctl: interrupted", file=sys.stderr)
        return errors.EXIT_RUNTIME
    # The command line's one broad catch (style.md).
    except Exception as exc:  # noqa: BLE001 (crash.report keeps the traceback)
        return crash.report(exc, args)
    return code


def _dispatch(args: argparse.Namespace) -> int:
    handler: Handler = args.handler
    try:
        return handler(args)
    except errors.SpecError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return exc.exit_code
    except errors.NoSimulatedFabricError as exc:
        from reconciler.cli import state_hint

        print(f"drctl: {state_hint.explain(exc.state_dir)}", file=sys.stderr)
        return exc.exit_code
    except errors.DrctlError as exc:
        print(f"drctl: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        # The reader went away (`drctl status | head`): nothing left to say to it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return errors.EXIT_OK


def _validate(args: argparse.Namespace) -> int:
    desired = specdir.load_plans(args.specs_dir)
    # Warnings do not make a spec invalid: said on stderr, the exit status stays 0.
    for warning in desired.warnings:
        print(dataclasses.replace(warning, message=f"warning: {warning.message}"), file=sys.stderr)
    vms = sum(len(p.vms) for p in desired.plans)
    print(
        f"{errors.shown_path(str(args.specs_dir))}: valid ({len(desired.plans)} plans, {vms} VMs)"
    )
    return errors.EXIT_OK


def _tolerate_unencodable() -> None:
    """Print what the terminal cannot encode as escapes, never fail on it.

    A file name that is not UTF-8 (a surrogate escape in Python), or any
    non-ASCII text under an ASCII PYTHONIOENCODING, would otherwise stop the
    command with UnicodeEncodeError half-way through its output.
    """
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            with contextlib.suppress(ValueError, OSError):
                reconfigure(errors="backslashreplace")


def _audit(args: argparse.Namespace) -> int:
    from reconciler.gitops import audit

    since = audit.parse_since(args.since) if args.since else None
    signers = signing.allowed_signers(args.allowed_signers)
    entries = audit.audit_history(
        args.specs_dir,
        args.state_dir,
        vm=args.vm,
        since=since,
        allowed_signers=signers,
        shared=options.shared_journal(args.state_dir),
    )
    if args.output == "json":
        print(json.dumps([entry.to_json() for entry in entries], indent=2))
    else:
        sys.stdout.writelines(audit.text_lines(entries))
    return errors.EXIT_OK


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0, not {text!r}")
    return value


def _metrics_addr(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise errors.UsageError(
            f"--metrics-addr must be HOST:PORT with a port from 0 to "
            f"65535 (e.g. 127.0.0.1:9464), not {text!r}"
        )
    return host.strip("[]"), int(port)


def _run(args: argparse.Namespace) -> int:
    from reconciler.daemon import logs, loop
    from reconciler.engine import fabrics, metrics
    from reconciler.kits import clock

    address = _metrics_addr(args.metrics_addr) if args.metrics_addr else None
    signed = signing.policy(args)
    target = None
    if args.lock is not None:
        from reconciler.engine import etcd_gateway
        from reconciler.engine.lease import etcd as election

        target = etcd_gateway.parse_target(args.lock)
        if args.lease_ttl < 2:
            raise errors.UsageError(f"--lease-ttl must be 2 seconds or more, not {args.lease_ttl}")
    logs.configure_logging(args.log_format)
    wall = clock.WallClock()
    # A fabric that cannot be opened yet (the embedded simulator before `drctl
    # fabric init`, a declared one misconfigured) leaves its plans Blocked with
    # the fix, and the daemon serves /metrics and /readyz meanwhile: under
    # systemd it must not exit and restart in a loop (issue 16).
    provider = fabrics.Fabrics(args.state_dir, wall)
    collected = metrics.Metrics()
    served = None
    if address is not None:
        try:
            served = collected.serve(*address)
        except OSError as exc:
            why = exc.strerror or exc
            raise errors.UsageError(
                f"cannot serve metrics on {args.metrics_addr}: {why}; choose another --metrics-addr"
            ) from exc
        logs.log.info(
            "serving metrics on http://%s:%d/metrics",
            address[0],
            served.port,
            extra={"event": "metrics_serving", "port": served.port},
        )
    settings = options.settings_of(args)
    config = loop.Config(
        args.specs_dir,
        args.state_dir,
        resync=args.resync,
        poll_interval=args.poll_interval,
        settings=settings,
        watch=not args.no_watch,
        lock=target,
        lease_ttl=float(args.lease_ttl),
        identity=args.identity or (election.default_identity() if target else ""),
        adopt_safely=args.adopt_safely,
        signed=signed,
    )
    on_revision = loop.note_outcome(args.specs_dir) if args.git_notes else None
    runner = loop.Daemon(config, provider, wall, collected, on_revision)
    if served is not None:
        served.add_page("/healthz", runner.healthz)
        served.add_page("/readyz", runner.readyz)
        # The read-only status page and its document (ui/status_feed.py).
        served.add_page("/", runner.feed.html)
        served.add_page("/status", runner.feed.html)
        served.add_page("/status.json", runner.feed.document)
    runner.install_signal_handlers()
    try:
        return runner.run()
    finally:
        provider.close()
        if served is not None:
            served.close()
