"""`drctl plan` and `drctl status`: observe the fabrics, plan the specs, show the result.

`cli.main` wires the two commands here; `observe_and_plan` is the one path
from a specs dir (or a running daemon's revision in force) and a state dir to
a plan, read-only: it creates nothing in the state dir. `drctl plan --out
FILE` saves what it planned for `drctl apply --plan FILE` (`cli.saved_plan`).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import io
import itertools
import json
import sys
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, NamedTuple

from reconciler import errors
from reconciler.cli import options
from reconciler.gitops import specdir
from reconciler.kits import gcpause

if TYPE_CHECKING:
    from pathlib import Path

    from reconciler.core import plan
    from reconciler.core.desired import DesiredState
    from reconciler.core.state import Operation
    from reconciler.engine.status import DaemonStatus
    from reconciler.ui import status_table

Handler = options.Handler


class Planned(NamedTuple):
    built: plan.Plan
    revision: str
    typical: Mapping[Operation, float]  # how long each operation takes on these fabrics
    sites: tuple[status_table.SiteState, ...] = ()  # each site's connection at this look


def observe_and_plan(
    args: argparse.Namespace,
    in_force: tuple[DesiredState, str, datetime.datetime | None] | None = None,
    max_failovers_per_revision: int | None = None,
) -> Planned:
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
    typical = fabrics.merge(observed.values()).typical_durations
    from reconciler.ui import status_table

    return Planned(built, rev, typical, status_table.site_states(observed, desired))


def without_cyclic_gc(handler: Handler) -> Handler:
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


def write_lines(lines: Iterable[str]) -> None:
    # A write per line costs more than making the line: a thousand at a time.
    pending = iter(lines)
    while batch := "".join(itertools.islice(pending, 1000)):
        sys.stdout.write(batch)


@without_cyclic_gc
def plan_command(args: argparse.Namespace) -> int:
    from reconciler.cli import saved_plan
    from reconciler.ui import report, summary

    built, rev, typical, _ = observe_and_plan(
        args, max_failovers_per_revision=args.max_failovers_per_revision
    )
    said = summary.lines(built, typical)
    if args.out is not None:  # first: a reader that leaves early (`| head`) keeps the file
        saved_plan.save(args.out, built, rev, args.specs_dir, said)
        print(
            f"saved to {errors.shown_path(str(args.out))}: drctl apply "
            f"{errors.shown_path(str(args.specs_dir))} --plan {errors.shown_path(str(args.out))} "
            "executes exactly this plan",
            file=sys.stderr,
        )
    if args.output == "json":
        write_lines(report.plan_json_lines(built, rev, said))
    else:
        report.print_plan(built, rev, summary=said)
    if args.exit_code and not built.converged:
        return errors.EXIT_NOT_CONVERGED
    return errors.EXIT_OK


def status_command(args: argparse.Namespace) -> int:
    if not args.watch:
        return _status_once(args)
    from reconciler.ui import live

    # The first look as `drctl status` would: an error of it (a wrong state
    # dir, a fabric that cannot be opened) ends the command with its code.
    first = _captured(args)
    try:
        look = functools.partial(_status_look, args)
        live.watch(look, args.interval, first=first, stamped=args.output != "json")
    except KeyboardInterrupt:
        return errors.EXIT_OK  # Ctrl-C is how a watch ends
    return errors.EXIT_OK


def _status_look(args: argparse.Namespace) -> str:
    """A later look of `drctl status --watch`: an error is shown in the view, which goes on
    (a spec half-edited, a fabric that does not answer for a moment)."""
    try:
        return _captured(args)
    except errors.SpecError as exc:
        return "".join(f"{problem}\n" for problem in exc.problems)
    except errors.DrctlError as exc:
        return f"drctl: {exc}\n"


def _captured(args: argparse.Namespace) -> str:
    """What `drctl status` prints, its stderr first; JSON as a document a line."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        _status_once(args)
    text = out.getvalue()
    if args.output == "json":
        text = json.dumps(json.loads(text)) + "\n"
    return err.getvalue() + text


@without_cyclic_gc
def _status_once(args: argparse.Namespace) -> int:
    from reconciler.engine import status

    running = status.running_daemon(args.state_dir)
    # Plan as the daemon does: with its --max-failovers-per-revision (the blast radius).
    limit = running.max_failovers_per_revision if running is not None else None
    try:
        planned = observe_and_plan(args, max_failovers_per_revision=limit)
    except errors.SpecError as exc:
        kept = in_force_of(running, args.state_dir)
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
            _print_status(
                args, observe_and_plan(args, kept, max_failovers_per_revision=limit), running
            )
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
    _print_status(args, planned, running)
    return errors.EXIT_OK


def _print_status(args: argparse.Namespace, planned: Planned, running: DaemonStatus | None) -> None:
    from reconciler.ui import kept_out, report

    rev, sites = planned.revision, planned.sites
    built = kept_out.mark_untrusted(planned.built, rev, running)
    if args.output == "json":
        write_lines(report.status_json_lines(built, rev, running, sites))
    else:
        report.print_status(built, rev, daemon=running, sites=sites)


def in_force_of(
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
