"""`drctl retry` and `drctl reconcile`: break-glass commands, each journaled for the audit.

`drctl retry [--plan P]... [--vm V]... SPECS_DIR` clears the attempt budget
of the revision in force (a running daemon's, else the specs dir's) for the
VMs selected, by a record in the journal (engine/intervention.py) that
`Journal.attempts` honours: the daemon's next pass, or the next `drctl
apply`, plans them again. It starts nothing itself.

`drctl reconcile` asks the `drctl run` of the state dir for a pass now: it
sends SIGUSR1 to the pid in `daemon.json`, which sets the event the daemon
sleeps on between passes (daemon/loop.py). A signal rather than a request
file: the daemon already sleeps on that event (a wake costs nothing and
needs no watch of the state dir, so it works with `--no-watch` too), and a
signal reaches it whatever its pass is waiting for. It needs the daemon's
user (or root), as writing its state dir would. Wired by `cli.main`.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler import errors
from reconciler.cli import options

if TYPE_CHECKING:
    from reconciler.core.desired import DesiredState
    from reconciler.engine import journal_backend
    from reconciler.engine.status import DaemonStatus

_SPECS_HELP = "the directory of spec files (*.yaml, *.yml, read with the directories below it)"


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    retry = commands.add_parser(
        "retry",
        help="clear the attempt budget of the revision in force (journaled, in the audit): "
        "a VM Blocked after its failed attempts is tried again",
    )
    retry.add_argument("specs_dir", type=Path, metavar="SPECS_DIR", help=_SPECS_HELP)
    retry.add_argument(
        "--plan",
        action="append",
        default=[],
        metavar="PLAN",
        help="only the VMs of this plan (repeatable; default: every plan)",
    )
    retry.add_argument(
        "--vm",
        action="append",
        default=[],
        metavar="NAME",
        help="only this VM (repeatable; default: every VM of the plans selected)",
    )
    options.state_dir_arg(retry)
    retry.set_defaults(handler=retry_command)

    reconcile = commands.add_parser(
        "reconcile",
        help="ask the running daemon of the state dir for a pass now (SIGUSR1; journaled)",
    )
    options.state_dir_arg(reconcile)
    reconcile.set_defaults(handler=reconcile_command)


def retry_command(args: argparse.Namespace) -> int:
    from reconciler.engine import execute, intervention

    desired, rev = _revision_in_force(args)
    selected = _select(desired, args.plan, args.vm)
    history = _journal(args.state_dir)
    if history is None:
        print(
            f"nothing to clear: no journal in {errors.shown_path(str(args.state_dir))}, so no "
            "attempt was spent there (wrong --state-dir?)",
            file=sys.stderr,
        )
        return errors.EXIT_OK
    try:
        spent = history.attempts(rev, execute.Settings().backoff)
        cleared: list[tuple[str, str, tuple[tuple[str, int], ...]]] = []
        for plan_name, vm in selected:
            counted = sorted(
                (str(op), tried.failures)
                for (name, op), tried in spent.items()
                if name == vm and (tried.failures or tried.retry_at is not None)
            )
            if counted:
                cleared.append((plan_name, vm, tuple(counted)))
        if not cleared:
            print(
                f"nothing to clear: no VM selected has failed attempts under revision {rev}",
                file=sys.stderr,
            )
            return errors.EXIT_OK
        by, host = intervention.who()
        record = intervention.Intervention(
            intervention.RETRY, rev, by, host, datetime.now().astimezone(), tuple(cleared)
        )
        history.record_intervention(record)
    finally:
        history.close()
    for plan_name, vm, tally in cleared:
        what = ", ".join(f"{n} failed {op}" for op, n in tally if n) or "a backoff"
        print(f"{plan_name}/{vm}: attempts cleared ({what}) under revision {rev}")
    from reconciler.engine import status

    running = status.running_daemon(args.state_dir)
    if running is not None:
        print(
            f"the daemon (pid {running.pid}) plans them again at its next pass; "
            "`drctl reconcile` asks for it now"
        )
    else:
        print(f"`drctl apply {errors.shown_path(str(args.specs_dir))}` tries them again")
    return errors.EXIT_OK


def reconcile_command(args: argparse.Namespace) -> int:
    from reconciler.engine import intervention, status

    state_dir: Path = args.state_dir
    if not state_dir.is_dir():
        raise errors.UsageError(
            f"no state dir at {errors.shown_path(str(state_dir.absolute()))}: pass the "
            "--state-dir of the running `drctl run` (or set DRCTL_STATE_DIR)"
        )
    running = status.running_daemon(state_dir)
    if running is None:
        raise errors.NoDaemonError(
            f"no daemon runs on {errors.shown_path(str(state_dir))} (no daemon.json of a live "
            "`drctl run`): start one with `drctl run SPECS_DIR`, or run `drctl apply "
            "SPECS_DIR` for a pass of your own"
        )
    _check_is_drctl(running.pid)
    detail = f"SIGUSR1 to the daemon, pid {running.pid}"
    history = _journal(state_dir)
    if history is not None:
        try:
            by, host = intervention.who()
            history.record_intervention(
                intervention.Intervention(
                    intervention.RECONCILE,
                    running.revision_in_force,
                    by,
                    host,
                    datetime.now().astimezone(),
                    detail=detail,
                )
            )
        finally:
            history.close()
    os.kill(running.pid, signal.SIGUSR1)
    print(f"asked the daemon (pid {running.pid}) for a pass now ({detail})")
    replica = running.replica
    if replica is not None and not replica.get("leading"):
        print(
            f"this replica follows {replica.get('leader') or 'no one yet'}: its pass observes "
            "and starts nothing; run `drctl reconcile` beside the leader for it to act"
        )
    return errors.EXIT_OK


def _check_is_drctl(pid: int) -> None:
    """Refuse to signal a pid that is not a drctl (daemon.json outlived its daemon).

    SIGUSR1 ends a process that does not handle it. Where /proc tells the
    command line, it must be drctl's; a process of another user is refused
    before anything is journaled.
    """
    try:
        os.kill(pid, 0)
    except PermissionError as exc:
        raise errors.NoDaemonError(
            f"the daemon (pid {pid}) runs as another user: run `drctl reconcile` as that user "
            f"(e.g. sudo -u USER drctl reconcile), or `kill -USR1 {pid}` as root"
        ) from exc
    try:
        words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return  # no /proc here: daemon.json and the live pid are what there is
    if not any(b"drctl" in word or b"reconciler" in word for word in words):
        raise errors.NoDaemonError(
            f"pid {pid} in daemon.json is not a drctl process (its daemon is gone): nothing "
            "was signalled; start the daemon again with `drctl run SPECS_DIR`"
        )


def _revision_in_force(args: argparse.Namespace) -> tuple[DesiredState, str]:
    """What a running daemon keeps in force, else what the specs dir holds (as `apply` reads it)."""
    from reconciler.cli import planning
    from reconciler.engine import status
    from reconciler.gitops import revision, specdir

    running: DaemonStatus | None = status.running_daemon(args.state_dir)
    kept = planning.in_force_of(running, args.state_dir)
    if running is not None and kept is not None:
        desired, rev, _ = kept
        ours = _specs_revision(args.specs_dir)
        if ours is not None and ours != rev:
            print(
                f"drctl: the daemon (pid {running.pid}) keeps revision {rev} in force, not the "
                f"specs' {ours}: clearing the budget of {rev}",
                file=sys.stderr,
            )
        return desired, rev
    return specdir.load_plans(args.specs_dir), revision.spec_revision(args.specs_dir).id


def _specs_revision(specs_dir: Path) -> str | None:
    from reconciler.gitops import revision

    try:
        return revision.spec_revision(specs_dir).id
    except errors.DrctlError:
        return None


def _select(desired: DesiredState, plans: list[str], vms: list[str]) -> list[tuple[str, str]]:
    """(plan, VM) selected by --plan and --vm; a name the revision lacks is a usage error."""
    known_plans = {p.name for p in desired.plans}
    unknown = sorted(set(plans) - known_plans)
    if unknown:
        raise errors.UsageError(
            f"--plan {unknown[0]}: no such plan in the revision in force "
            f"(plans: {', '.join(sorted(known_plans)) or 'none'})"
        )
    chosen = [
        (p.name, vm.name) for p in desired.plans if not plans or p.name in plans for vm in p.vms
    ]
    names = {vm for _, vm in chosen}
    missing = sorted(set(vms) - names)
    if missing:
        where = f"plan {', '.join(plans)}" if plans else "the revision in force"
        raise errors.UsageError(f"--vm {missing[0]}: no such VM in {where}")
    return [(p, vm) for p, vm in chosen if not vms or vm in vms]


def _journal(state_dir: Path) -> journal_backend.Backend | None:
    """The journal the daemon of `state_dir` reads (etcd with `--lock`), None if none exists."""
    from reconciler.engine import journal
    from reconciler.engine import state_dir as layout

    shared = options.shared_journal(state_dir)
    if shared is not None:
        return shared
    if not layout.journal_path(state_dir).exists():
        return None
    # Not a writer of intents: the state dir's record of how far they go stays as it is.
    return journal.Journal(state_dir, writer=False)
