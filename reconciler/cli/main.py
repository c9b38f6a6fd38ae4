"""The `drctl` command line: parses arguments, calls the package, maps errors to exit codes.

Exit codes are a contract (README): 0 success; 1 not converged (`apply`,
`plan --exit-code`); 2 invalid input or usage; 3 runtime error.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import functools
import itertools
import json
import os
import signal
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from reconciler import errors
from reconciler.cli import crash, options, signing
from reconciler.gitops import specdir
from reconciler.kits import gcpause

if TYPE_CHECKING:
    from reconciler.core import plan
    from reconciler.core.desired import DesiredState
    from reconciler.engine import execute
    from reconciler.engine.lease.flock import Lease
    from reconciler.engine.status import DaemonStatus

Handler = Callable[[argparse.Namespace], int]


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
    _output_arg(plan_cmd)
    plan_cmd.add_argument(
        "--exit-code", action="store_true", help="exit 1 when not converged (0 when converged)"
    )
    _max_failovers_arg(plan_cmd, "plan as `drctl run`/`drctl apply` with this flag would: ")
    options.state_dir_arg(plan_cmd)
    plan_cmd.set_defaults(handler=_plan)

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
    _executor_args(apply_cmd, poll_interval=0.5)
    options.state_dir_arg(apply_cmd)
    apply_cmd.set_defaults(handler=_apply)

    status_cmd = commands.add_parser("status", help="each VM: desired, observed, phase, reason")
    status_cmd.add_argument(
        "specs_dir",
        type=Path,
        metavar="SPECS_DIR",
        help="the directory of spec files (*.yaml, *.yml, read with the directories below it)",
    )
    _output_arg(status_cmd)
    options.state_dir_arg(status_cmd)
    status_cmd.set_defaults(handler=_status)

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
    _output_arg(audit_cmd)
    options.state_dir_arg(audit_cmd)
    audit_cmd.set_defaults(handler=_audit)

    # Imported here so that `drctl validate` does not pay for the fabric's imports.
    from reconciler.cli import fabric as fabric_cli

    fabric_cli.add_commands(commands)
    from reconciler.cli import drill as drill_cli

    drill_cli.add_commands(commands)
    from reconciler.cli import importing

    importing.add_command(commands)
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
    _executor_args(run_cmd, poll_interval=0.1)
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


def _executor_args(parser: argparse.ArgumentParser, poll_interval: float) -> None:
    """How `apply` and `run` poll jobs and retry failures."""
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=poll_interval,
        metavar="SECONDS",
        help=f"how often to poll the fabric while jobs run (default {poll_interval:g})",
    )
    parser.add_argument(
        "--retry-backoff",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="wait after a failed job, doubled per failure (default 2)",
    )
    parser.add_argument(
        "--max-attempts",
        type=int,
        default=3,
        help="failed attempts per VM, operation and revision before Blocked",
    )
    parser.add_argument(
        "--max-parallel",
        type=_positive,
        metavar="N",
        help="operations in flight across every plan and fabric (default: each plan's own "
        "policy.maxParallel only)",
    )
    _max_failovers_arg(parser)


def _max_failovers_arg(parser: argparse.ArgumentParser, lead: str = "") -> None:
    """The blast radius across every plan (`run`, `apply`; `plan` shows what they would do)."""
    parser.add_argument(
        "--max-failovers-per-revision",
        type=_positive,
        metavar="N",
        help=f"{lead}a revision that would fail over more VMs than N, across every plan, moves "
        "none of them (default: no limit beyond each plan's policy.maxFailoversPerRevision)",
    )


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
    return value


def _settings(args: argparse.Namespace) -> execute.Settings:
    from reconciler.engine import execute

    return execute.Settings(
        poll_interval=args.poll_interval,
        backoff_base=args.retry_backoff,
        max_attempts=args.max_attempts,
        max_parallel=args.max_parallel,
        max_failovers_per_revision=args.max_failovers_per_revision,
    )


def _output_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--output",
        choices=["text", "json"],
        default="text",
        help="text for people (default), json for scripts (a contract: README)",
    )


def _observe_and_plan(
    args: argparse.Namespace,
    in_force: tuple[DesiredState, str, datetime.datetime | None] | None = None,
    max_failovers_per_revision: int | None = None,
) -> tuple[plan.Plan, str]:
    """Plan the specs under args.specs_dir, or `in_force` (a daemon's desired state, revision)."""
    from reconciler.core import plan
    from reconciler.engine import drill_record, execute, fabrics, journal
    from reconciler.engine import state_dir as layout
    from reconciler.gitops import revision
    from reconciler.kits import clock

    made_at = None
    if in_force is None:
        desired = specdir.load_plans(args.specs_dir)
        found = revision.spec_revision(args.specs_dir)
        rev, made_at = found.id, found.made_at
    else:
        desired, rev, made_at = in_force
    wall = clock.WallClock()
    history = options.shared_journal(args.state_dir)
    if history is None and layout.journal_path(args.state_dir).exists():
        history = journal.Journal(args.state_dir, writer=False)  # read-only: creates nothing
    with fabrics.open_for(desired, args.state_dir, wall) as opened:
        if history is not None:
            # A provider that runs its own jobs reads their steps there (Hyper-V).
            opened.keep_steps(history, writable=False)
        observed = opened.observe(desired.fabrics_in_use())
    fabrics.raise_if_blind(observed)
    # Plan with the attempts already spent on this revision, and drctl's own
    # moves, so that plan and status show Blocked and Held exactly as apply does.
    attempts: plan.AttemptsByAction = {}
    own: dict[str, datetime.datetime] = {}
    stopped: frozenset[str] = frozenset()
    unsettled: dict[str, str] = {}
    drills: dict[str, plan.DrillRecord] = {}
    if history is not None:
        attempts = history.attempts(rev, execute.Settings().backoff)
        own, stopped = history.own_jobs(), history.stopped_by_drctl()
        unsettled = history.unsettled(rev)
        drills = drill_record.latest(history.drills())
    provenance = plan.Provenance(own, made_at, rev, unsettled, stopped, drills)
    built = plan.build_plans(
        desired,
        observed,
        wall.now(),
        attempts,
        provenance=provenance,
        max_failovers_per_revision=max_failovers_per_revision,
    )
    return built, rev


def _without_cyclic_gc(handler: Handler) -> Handler:
    """Run a command that plans once and exits with the cyclic GC paused until it returns.

    Such a command builds, then drops, values for every VM (100k of them)
    that hold no cycles: the collector would only walk them again and again,
    and resumed inside the command, it would walk them all once more. By the
    time the handler returns they are freed, by reference counting.
    """

    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int:
        with gcpause.gc_paused():
            return handler(args)

    return run


def _write_lines(lines: Iterable[str]) -> None:
    # A write per line costs more than making the line: a thousand at a time.
    pending = iter(lines)
    while batch := "".join(itertools.islice(pending, 1000)):
        sys.stdout.write(batch)


@_without_cyclic_gc
def _plan(args: argparse.Namespace) -> int:
    from reconciler.ui import report

    built, rev = _observe_and_plan(args, max_failovers_per_revision=args.max_failovers_per_revision)
    if args.output == "json":
        _write_lines(report.plan_json_lines(built, rev))
    else:
        report.print_plan(built, rev)
    if args.exit_code and not built.converged:
        return errors.EXIT_NOT_CONVERGED
    return errors.EXIT_OK


@_without_cyclic_gc
def _status(args: argparse.Namespace) -> int:
    from reconciler.engine import status

    running = status.running_daemon(args.state_dir)
    # Plan as the daemon does: with its --max-failovers-per-revision (the blast radius).
    limit = running.max_failovers_per_revision if running is not None else None
    try:
        built, rev = _observe_and_plan(args, max_failovers_per_revision=limit)
    except errors.SpecError as exc:
        kept = _in_force_of(running, args.state_dir)
        if running is not None and kept is not None:
            # The newest specs are refused: the VMs of the revision in force are what
            # the daemon acts on, so they are shown, never hidden behind the error
            # (exit 2 all the same: the specs given are invalid).
            for problem in exc.problems:
                print(problem, file=sys.stderr)
            print(
                f"drctl: the specs in {errors.shown_path(str(args.specs_dir))} are refused; the "
                f"daemon (pid {running.pid}) keeps revision {running.revision_in_force} in "
                "force, shown below",
                file=sys.stderr,
            )
            built, rev = _observe_and_plan(args, kept, max_failovers_per_revision=limit)
            _print_status(args, built, rev, running)
            return exc.exit_code  # the specs given are still invalid: exit 2
        if running is not None and running.revision_in_force is not None:
            print(
                f"drctl: the daemon (pid {running.pid}) keeps revision "
                f"{running.revision_in_force} in force",
                file=sys.stderr,
            )
        elif running is not None:
            print(
                f"drctl: the daemon (pid {running.pid}) has no revision in force: it acts on "
                "nothing until a valid one",
                file=sys.stderr,
            )
        raise
    _print_status(args, built, rev, running)
    return errors.EXIT_OK


def _print_status(
    args: argparse.Namespace, built: plan.Plan, rev: str, running: DaemonStatus | None
) -> None:
    from reconciler.ui import kept_out, report

    built = kept_out.mark_untrusted(built, rev, running)
    if args.output == "json":
        print(json.dumps(report.status_json(built, rev, running), indent=2))
    else:
        report.print_status(built, rev, daemon=running)


def _in_force_of(
    running: DaemonStatus | None, state_dir: Path
) -> tuple[DesiredState, str, datetime.datetime | None] | None:
    """The desired state a running daemon keeps in force (its copy in the state dir)."""
    from reconciler.daemon import in_force

    if running is None or running.revision_in_force is None:
        return None
    kept = in_force.peek(state_dir)
    if kept is None or kept[0] != running.revision_in_force or not kept[1].plans:
        return None
    rev, desired, made_at = kept
    return desired, rev, made_at


def _audit(args: argparse.Namespace) -> int:
    from reconciler.gitops import audit

    since = audit.parse_since(args.since) if args.since else None
    signers = signing.allowed_signers(args.allowed_signers)
    entries = audit.audit_history(
        args.specs_dir, args.state_dir, vm=args.vm, since=since, allowed_signers=signers
    )
    if args.output == "json":
        print(json.dumps([entry.to_json() for entry in entries], indent=2))
    else:
        sys.stdout.writelines(audit.text_lines(entries))
    return errors.EXIT_OK


class _StopOnInterrupt:
    """First Ctrl-C: start nothing more, follow running jobs. Second: leave now."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, _signum: int, _frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print(
            "\ndrctl: stopping: no new operation will start; running jobs are never "
            "cancelled and are followed to their end. Ctrl-C again to leave now (they keep "
            "running in the fabric).",
            file=sys.stderr,
            flush=True,
        )

    def restore(self) -> None:
        signal.signal(signal.SIGINT, self._previous)


@contextlib.contextmanager
def _lock(state_dir: Path, purpose: str) -> Iterator[Lease]:
    """The fabric lock; a lock file that cannot be written is one line (exit 3)."""
    from reconciler.engine import state_check
    from reconciler.engine import state_dir as layout
    from reconciler.engine.lease import flock

    with contextlib.ExitStack() as stack:
        try:
            lease = stack.enter_context(flock.hold(state_dir, purpose))
        except OSError as exc:
            raise state_check.refusal(layout.lock_path(state_dir), exc) from exc
        yield lease


def _apply(args: argparse.Namespace) -> int:
    from reconciler.engine import execute, fabrics, journal, journal_file, state_check
    from reconciler.gitops import revision
    from reconciler.kits import clock
    from reconciler.ui import report

    desired = specdir.load_plans(args.specs_dir)
    found = revision.spec_revision(args.specs_dir)
    rev = found.id
    wall = clock.WallClock()
    settings = _settings(args)
    # Before the fabric and the lock: a state dir that cannot be written is
    # one line naming the path, and nothing is started.
    state_check.require_usable(args.state_dir)
    provider = fabrics.open_for(desired, args.state_dir, wall)
    with provider, _lock(args.state_dir, "apply") as lease:
        progress = report.Progress()
        history = journal.Journal(args.state_dir)
        if history.lost is not None:
            print(f"drctl: warning: {journal_file.lost_warning(history.lost)}", file=sys.stderr)
        executor = execute.Executor(
            provider,
            history,
            wall,
            settings,
            on_event=progress.event,
            check_lock=lease.check,
            on_retired=progress.retired,
        )
        print(f"applying {errors.shown_path(str(args.specs_dir))} at revision {rev}", flush=True)
        stop = _StopOnInterrupt()
        try:
            outcome = execute.apply(
                executor,
                desired,
                rev,
                args.timeout,
                lambda: stop.requested,
                progress.step,
                revision_made_at=found.made_at,
            )
        except KeyboardInterrupt:
            print(
                "drctl: left while jobs still run in the fabric; run drctl apply again to "
                "follow them",
                file=sys.stderr,
            )
            return errors.EXIT_NOT_CONVERGED
        finally:
            stop.restore()
    return _summarise(outcome)


def _summarise(outcome: execute.Outcome) -> int:
    built = outcome.plan
    if outcome.converged:
        print(f"converged: {len(built.vms)} VMs at their desired site and protected")
        return errors.EXIT_OK
    if outcome.interrupted:
        print("stopped on request before converging", file=sys.stderr)
    elif outcome.timed_out:
        print("timed out before converging", file=sys.stderr)
    else:
        print("cannot converge without a change by a human:", file=sys.stderr)
    for vp in built.vms:
        if not vp.converged:
            print(f"  {vp.plan}/{vp.name}: {vp.phase}: {vp.reason}", file=sys.stderr)
    return errors.EXIT_NOT_CONVERGED


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
    settings = _settings(args)
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
    runner.install_signal_handlers()
    try:
        return runner.run()
    finally:
        provider.close()
        if served is not None:
            served.close()
