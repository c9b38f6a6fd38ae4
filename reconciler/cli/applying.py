"""`drctl apply`: execute the plan until converged, or until only a person can go on.

`cli.main` wires the command here. Ctrl-C once starts nothing more and
follows the running jobs (never cancelled); twice leaves at once. `--only`
and `--plan FILE` (a plan `drctl plan --out` saved, `cli.saved_plan`) limit
what it acts on (`engine.scope`); on a terminal it asks before an unplanned
failover unless `--yes`.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from reconciler import errors
from reconciler.cli import options
from reconciler.core.state import Operation
from reconciler.gitops import specdir

if TYPE_CHECKING:
    # Imported where used: `drctl validate` imports this module, and no engine.
    from reconciler.cli import saved_plan
    from reconciler.core import plan
    from reconciler.core.desired import DesiredState
    from reconciler.engine import execute
    from reconciler.engine import scope as scopes
    from reconciler.engine.lease.flock import Lease
    from reconciler.ui import live


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


def add_scope_args(apply_cmd: argparse.ArgumentParser) -> None:
    """`--plan FILE`, `--only PLAN[/VM]`, `--yes` of `drctl apply`."""
    apply_cmd.add_argument(
        "--plan",
        type=Path,
        metavar="FILE",
        dest="plan_file",
        help="execute exactly the plan `drctl plan --out FILE` saved: refused (exit 2) if the "
        "revision or what the fabric reports of its VMs changed since; only its VMs, only "
        "the operations it showed",
    )
    apply_cmd.add_argument(
        "--only",
        action="append",
        metavar="PLAN[/VM]",
        help="act on this plan, or this VM of a plan, only (repeatable); the plan's order "
        "still holds: a VM waits for dependents outside the scope, and says so",
    )
    apply_cmd.add_argument(
        "--yes",
        action="store_true",
        help="do not ask at the terminal before an unplanned failover (the spec's consent "
        "is still required)",
    )


def apply_command(args: argparse.Namespace) -> int:
    from reconciler.cli import saved_plan
    from reconciler.engine import execute, fabrics, journal, journal_file, state_check
    from reconciler.gitops import revision
    from reconciler.kits import clock
    from reconciler.ui import live

    desired = specdir.load_plans(args.specs_dir)
    found = revision.spec_revision(args.specs_dir)
    rev = found.id
    saved = saved_plan.load(args.plan_file) if args.plan_file is not None else None
    scope = _scope(args.only, desired, saved)
    wall = clock.WallClock()
    settings = options.settings_of(args)
    # Before the fabric and the lock: a state dir that cannot be written is
    # one line naming the path, and nothing is started.
    state_check.require_usable(args.state_dir)
    provider = fabrics.open_for(desired, args.state_dir, wall)
    with provider, _lock(args.state_dir, "apply") as lease:
        progress = live.Progress()
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
        if saved is not None:
            # Observe and plan once, starting nothing: the plan must be what was saved.
            now = executor.step(desired, rev, start=False, revision_made_at=found.made_at)
            changed = saved_plan.changes(saved, now, rev)
            if changed:
                raise errors.UsageError(
                    f"the plan {errors.shown_path(str(saved.path))} is stale, nothing was "
                    f"started: {'; '.join(changed)}; run drctl plan "
                    f"{errors.shown_path(str(args.specs_dir))} --out "
                    f"{errors.shown_path(str(saved.path))} again and review it"
                )
        confirm = None if args.yes or not _on_a_terminal() else _Confirm(progress).ask
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
                scope=scope,
                confirm=confirm,
            )
        except KeyboardInterrupt:
            progress.close()
            print(
                "drctl: left while jobs still run in the fabric; run drctl apply again to "
                "follow them",
                file=sys.stderr,
            )
            return errors.EXIT_NOT_CONVERGED
        finally:
            progress.close()
            stop.restore()
    return _summarise(outcome)


def _scope(
    only: list[str] | None, desired: DesiredState, saved: saved_plan.Saved | None
) -> scopes.Scope | None:
    """The scope of `--only` and `--plan`; a UsageError naming a plan or VM the specs lack."""
    from reconciler.engine import scope as scopes

    if saved is not None and only:
        raise errors.UsageError("--plan and --only do not go together: a saved plan has its scope")
    if saved is not None:
        return saved.scope()
    if not only:
        return None
    plans = {p.name: {vm.name for vm in p.vms} for p in desired.plans}
    whole: set[str] = set()
    vms: set[tuple[str, str]] = set()
    for item in only:
        name, _, vm = item.partition("/")
        if name not in plans:
            known = ", ".join(sorted(plans))
            raise errors.UsageError(
                f"--only {item}: no plan '{name}' in the specs (plans: {known})"
            )
        if vm and vm not in plans[name]:
            raise errors.UsageError(f"--only {item}: plan '{name}' has no VM '{vm}'")
        if vm:
            vms.add((name, vm))
        else:
            whole.add(name)
    return scopes.Scope(plans=frozenset(whole), vms=frozenset(vms))


def _on_a_terminal() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


class _Confirm:
    """At a terminal: ask once per plan before its first unplanned failover starts."""

    def __init__(self, progress: live.Progress) -> None:
        self._answers: dict[str, bool] = {}
        self._progress = progress  # its live lines go while the question is asked

    def ask(self, action: plan.Action) -> str | None:
        if action.operation is not Operation.UNPLANNED_FAILOVER:
            return None
        answer = self._answers.get(action.plan)
        if answer is None:
            self._progress.close()
            moved = [action.vm, *(vm for group in action.plan_groups for vm in group)]
            names = ", ".join(dict.fromkeys(moved))
            source = action.source_site or "its site"
            print(
                f"plan {action.plan}: unplanned failover of {names} to {action.target_site}: "
                f"the writes {source} has not replicated yet are lost.",
                flush=True,
            )
            try:
                said = input("Fail over unplanned? Type yes to go on: ")
            except EOFError:
                said = ""
            answer = said.strip().lower() == "yes"
            self._answers[action.plan] = answer
        if answer:
            return None
        return "not confirmed at the terminal (answer yes, or run drctl apply --yes)"


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
    shown = {(vp.plan, vp.name) for vp in built.vms}
    for (plan_name, vm), why in sorted(outcome.held.items()):
        if (plan_name, vm) not in shown:
            print(f"  {plan_name}/{vm}: held: {why}", file=sys.stderr)
    return errors.EXIT_NOT_CONVERGED
