"""What the daemon tells about each pass: actions, VMs that need a person, plans, outcomes.

`loop.Daemon` hands each pass's plan to `Progress.after_pass`, which logs a
VM once each time it enters a phase that matters, records the VMs that
converged under the revision in force in the journal, times each plan that
moved (`drctl_placement_seconds`, `drctl_convergence_seconds`), and tells
`on_revision` once per revision when it has converged or is stuck. It logs
the executor's events with `tell_event` and the fabrics that stop or start
answering with `tell_lost_fabrics`. `note_outcome` (`--git-notes`, called by
`drctl run` as `loop.note_outcome`) attaches that outcome to the commit.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from reconciler.core import plan, state
from reconciler.core.plan import Phase
from reconciler.daemon import health, in_force
from reconciler.daemon.logs import log
from reconciler.engine import execute, journal, journal_backend
from reconciler.engine import metrics as metrics_
from reconciler.errors import GitError, StateDirError
from reconciler.fabric import base
from reconciler.gitops import notes, revision
from reconciler.kits import clock as clocks

# Told once per revision in force when it has converged or is stuck: the
# revision, the last plan, and the journal's actions for that revision.
OnRevision = Callable[[str, plan.Plan, list[journal.Entry]], None]

# Phases that wait for a person, logged once each time a VM enters them (the
# event is `vm_` and the word: vm_blocked, vm_held, vm_waiting_for_user).
NEEDS_A_PERSON = {
    Phase.BLOCKED: "blocked",
    Phase.HELD: "held",
    Phase.WAITING_FOR_USER: "waiting for user",
}


class Progress:
    """What the daemon has told so far, so each change is told once."""

    def __init__(
        self,
        clock: clocks.Clock,
        metrics: metrics_.Metrics,
        state_health: health.StateHealth,
        on_revision: OnRevision | None = None,
    ) -> None:
        self.clock = clock
        self.metrics = metrics
        self.health = state_health
        # Called once per revision in force when it has converged or is blocked.
        self.on_revision = on_revision or (lambda _revision, _plan, _entries: None)
        self.outcome_told: tuple[str, bool] | None = None
        self.phases: dict[tuple[str, str], Phase] = {}
        self.recorded: set[tuple[str, str]] = set()  # converged under the revision in force
        self.lost: dict[str, str] = {}  # fabrics that did not answer the last pass, and why

    def after_pass(
        self,
        built: plan.Plan,
        force: in_force.InForce,
        executor: execute.Executor,
        history: journal_backend.Backend | None,
    ) -> None:
        """Log what changed in `built`, record convergence, and time the plans that moved."""
        converged = []
        for vp in built.vms:
            key = (vp.plan, vp.name)
            if vp.converged and key not in self.recorded:
                self.recorded.add(key)
                converged.append(key)
            if self.phases.get(key) is not vp.phase:
                self.phases[key] = vp.phase
                if vp.phase is Phase.CONVERGED:
                    log.info(
                        "%s/%s converged: %s",
                        vp.plan,
                        vp.name,
                        vp.reason,
                        extra={"event": "vm_converged", "plan": vp.plan, "vm": vp.name},
                    )
                elif (said := NEEDS_A_PERSON.get(vp.phase)) is not None:
                    log.warning(
                        "%s/%s %s: %s",
                        vp.plan,
                        vp.name,
                        said,
                        vp.reason,
                        extra={
                            "event": f"vm_{said.replace(' ', '_')}",
                            "plan": vp.plan,
                            "vm": vp.name,
                            "reason": vp.reason,
                        },
                    )
        now = self.clock.now()
        if converged:
            assert history is not None  # noqa: S101
            try:
                history.record_converged(force.revision, converged, now)
            except StateDirError as exc:
                self.recorded.difference_update(converged)  # recorded on a later pass
                self.health.trouble(exc)
        self._tell_outcome(built, force, executor, history)
        for name, since in list(force.moving_since.items()):
            vms = [vp for vp in built.vms if vp.plan == name]
            if name not in force.placed and all(vp.placed for vp in vms):
                force.placed.add(name)
                seconds = (now - since).total_seconds()
                log.info(
                    "plan %s placed in %.1fs",
                    name,
                    seconds,
                    extra={"event": "plan_placed", "plan": name, "seconds": seconds},
                )
                self.metrics.observe_placement(name, seconds)
            if all(vp.converged for vp in vms):
                del force.moving_since[name]
                force.placed.discard(name)
                seconds = (now - since).total_seconds()
                log.info(
                    "plan %s converged in %.1fs",
                    name,
                    seconds,
                    extra={"event": "plan_converged", "plan": name, "seconds": seconds},
                )
                self.metrics.observe_convergence(name, seconds)

    def _tell_outcome(
        self,
        built: plan.Plan,
        force: in_force.InForce,
        executor: execute.Executor,
        history: journal_backend.Backend | None,
    ) -> None:
        """Once per revision and outcome: converged, or stuck until a human acts."""
        if built.converged:
            outcome = True
        elif not execute.can_progress(built, executor):
            outcome = False
        else:
            return
        told = (force.revision, outcome)
        if self.outcome_told != told:
            self.outcome_told = told
            rev = force.revision
            assert history is not None  # noqa: S101
            self.on_revision(rev, built, history.entries(revision=rev))

    def tell_lost_fabrics(self, observed: dict[str, state.Observed]) -> bool:
        """Log each fabric that stops or starts answering; whether one does not answer now."""
        lost = {name: o.unreachable for name, o in observed.items() if o.unreachable is not None}
        for name, why in lost.items():
            if name not in self.lost:
                log.error(
                    "fabric %s cannot be observed: %s; its plans wait",
                    name,
                    why,
                    extra={"event": "fabric_unreachable", "fabric": name, "error": why},
                )
        for name in self.lost.keys() - lost.keys():
            log.info(
                "fabric %s answers again", name, extra={"event": "fabric_reachable", "fabric": name}
            )
        self.lost = lost
        return bool(lost)


def tell_event(event: execute.Event) -> None:
    """Log one event of the executor (the metrics count it apart)."""
    where = f" -> {event.target_site}" if event.target_site else ""
    fields = {
        "event": f"action_{event.kind}",
        "plan": event.plan,
        "vm": event.vm,
        "operation": str(event.operation),
        "target": event.target_site,
        "job": event.job_id,
    }
    if event.kind is execute.EventKind.STARTED:
        log.info(
            "%s/%s %s%s started (%s)",
            event.plan,
            event.vm,
            event.operation,
            where,
            event.job_id,
            extra=fields,
        )
    elif event.kind is execute.EventKind.ADOPTED:
        log.info(
            "%s/%s %s%s still running from an earlier drctl (%s): following it",
            event.plan,
            event.vm,
            event.operation,
            where,
            event.job_id,
            extra=fields,
        )
    elif event.kind is execute.EventKind.SUCCEEDED:
        log.info(
            "%s/%s %s%s finished in %.1fs",
            event.plan,
            event.vm,
            event.operation,
            where,
            event.seconds or 0.0,
            extra={**fields, "seconds": event.seconds, "data_loss": event.data_loss_seconds},
        )
    else:
        log.warning(
            "%s/%s %s%s %s: %s",
            event.plan,
            event.vm,
            event.operation,
            where,
            event.kind,
            event.error,
            extra={**fields, "error": event.error},
        )


def tell_retired(fabric: str, retired: base.Retired) -> None:
    """Log what became of the object a fabric kept for a plan that left the spec."""
    fields = {
        "event": "plan_object_deleted" if retired.deleted else "plan_object_kept",
        "fabric": fabric,
        "plan": retired.plan,
        "object": retired.name,
        "reason": retired.reason,
    }
    verb = "deleted" if retired.deleted else "left in place"
    log.info(
        "plan %s left the spec: %s of fabric %s %s (%s)",
        retired.plan,
        retired.name,
        fabric,
        verb,
        retired.reason,
        extra=fields,
    )


def note_outcome(specs_dir: Path) -> OnRevision:
    """For `--git-notes`: attach what drctl did for a commit as a note on it."""

    def attach(rev: str, built: plan.Plan, entries: list[journal.Entry]) -> None:
        if not revision.is_commit(rev):
            return  # dirty files or no git: there is no commit to annotate
        blocked = {
            f"{vp.plan}/{vp.name}": vp.reason for vp in built.vms if vp.phase in NEEDS_A_PERSON
        }
        outcome = "converged" if built.converged else "blocked"
        text = notes.summarise(rev, entries, outcome, blocked, built.drill_records.values())
        try:
            notes.attach(specs_dir, rev, text)
        except GitError as exc:
            log.warning(
                "could not attach the git note to %s: %s",
                rev,
                exc,
                extra={"event": "git_note_failed", "revision": rev},
            )
            return
        log.info(
            "git note attached to %s: %s",
            rev,
            outcome,
            extra={"event": "git_note", "revision": rev, "outcome": outcome},
        )

    return attach
