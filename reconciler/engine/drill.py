"""A drill's bookkeeping: its record in the journal, its checks, its result.

The planner (`core.plan.drill`) decides each drill's step from the fabric and
the record; `Executor.step` calls `Drills.before_start` with each plan it
makes (before it starts anything, so a drill's record exists before its first
call) and `Drills.on_event` with each outcome. This module writes what the
planner reads: a new record when a drill starts, when every copy ran (with
the checks it runs then, once), preempted, failed (a test job failed), and
the end with its result: passed, failed or preempted. `on_ended` is told of
every drill that ends (the daemon's metrics and log).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from datetime import datetime

from reconciler.core import plan, state
from reconciler.core.desired import DesiredState
from reconciler.engine import drill_record, journal_backend, probe
from reconciler.engine import event as events
from reconciler.kits import clock as clocks

PASSED = "passed"
FAILED = "failed"
PREEMPTED = "preempted"


class Drills:
    """Keeps the journal's drill records in step with what the planner decides."""

    def __init__(
        self,
        journal: journal_backend.Backend,
        clock: clocks.Clock,
        on_ended: Callable[[plan.DrillRecord], None] = lambda _record: None,
    ) -> None:
        self.journal = journal
        self.clock = clock
        self._on_ended = on_ended

    def before_start(
        self,
        built: plan.Plan,
        desired: DesiredState,
        observed: Mapping[str, state.ObservedVM],
        revision: str,
    ) -> None:
        """Record what the plan's drills do now: start, checks, preemption, end."""
        if not built.drills:
            return
        latest = drill_record.latest(self.journal.drills())
        specs = {p.name: p for p in desired.plans}
        now = self.clock.now()
        for name, view in built.drills.items():
            record = latest.get(name)
            current = record if record is not None and record.ended_at is None else None
            if view.step is plan.DrillStep.STARTING and current is None:
                self.journal.record_drill(
                    plan.DrillRecord(name, view.id, now, revision=revision, whole=view.whole)
                )
            elif current is None:
                continue
            elif view.whole and not current.whole:
                # Its first plan-level test operation: the report's per-VM times follow it.
                self.journal.record_drill(dataclasses.replace(current, whole=view.whole))
            elif view.step is plan.DrillStep.CHECKING:
                spec = specs[name].drill
                checks = spec.checks if spec is not None else ()
                results = tuple(probe.run_check(check, observed.get(check.vm)) for check in checks)
                self.journal.record_drill(
                    dataclasses.replace(current, running_at=now, checks=results)
                )
            elif view.step is plan.DrillStep.PREEMPTED and not current.preempted:
                self.journal.record_drill(dataclasses.replace(current, preempted=True))
            elif view.step is plan.DrillStep.ENDED:
                ended = dataclasses.replace(current, ended_at=now, result=result_of(current))
                self.journal.record_drill(ended)
                self._on_ended(ended)

    def on_event(self, event: events.Event) -> None:
        """A test failover that failed fails its plan's drill: cleaned up at once."""
        if event.kind is not events.EventKind.FAILED:
            return
        if event.operation is not state.Operation.TEST_FAILOVER:
            return
        current = drill_record.latest(self.journal.drills()).get(event.plan)
        if current is None or current.ended_at is not None or current.failed:
            return
        why = f"TestFailover of {event.vm} failed: {event.error or 'no error given'}"
        self.journal.record_drill(dataclasses.replace(current, failed=why))


def result_of(record: plan.DrillRecord) -> str:
    """Preempted, failed (a test failover or a check failed), else passed."""
    if record.preempted:
        return PREEMPTED
    if record.failed or record.running_at is None:
        return FAILED
    return FAILED if any(not c.passed for c in record.checks) else PASSED


def duration_seconds(record: plan.DrillRecord) -> float | None:
    """From the drill's start to its end (the last cleanup)."""
    return _seconds(record.started_at, record.ended_at)


def test_rto_seconds(record: plan.DrillRecord) -> float | None:
    """The achieved test RTO: from the drill's start until every test copy ran."""
    return _seconds(record.started_at, record.running_at)


def _seconds(start: datetime, end: datetime | None) -> float | None:
    return None if end is None else (end - start).total_seconds()
