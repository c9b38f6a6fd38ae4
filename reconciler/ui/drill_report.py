"""Drills for people and auditors: the status lines, and `drctl drill report`.

`ui.report` adds `status_lines` to `drctl status` and `status_json` to its
JSON; `cli.drill` prints `report_json` or `report_markdown` for the last
drills of a plan, each with its per-VM times from the journal and the
achieved test RTO (from the drill's start until every test copy ran).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from reconciler.core import plan
from reconciler.core.state import Operation
from reconciler.engine import drill as drills
from reconciler.engine import journal


def status_lines(built: plan.Plan) -> Iterator[str]:
    """A line per drill under way, and a line per plan's last ended drill."""
    for view in built.drills.values():
        yield f"drill {view.plan}/{view.id} {view.step}: {view.reason}"
    for record in built.drill_records.values():
        if record.ended_at is not None:
            yield f"last drill {record.plan}/{record.id}: {_summary(record)}"


def status_json(built: plan.Plan) -> list[dict[str, Any]]:
    plans = sorted(built.drills.keys() | built.drill_records.keys())
    out = []
    for name in plans:
        view = built.drills.get(name)
        record = built.drill_records.get(name)
        out.append(
            {
                "plan": name,
                "step": None if view is None else str(view.step),
                "reason": None if view is None else view.reason,
                "last": None if record is None else record_json(record, []),
            }
        )
    return out


@dataclass(frozen=True, slots=True)
class VMTimes:
    """One VM's part in a drill, from the journal's test operations."""

    vm: str
    test_failover_started: datetime | None = None
    test_copy_ran: datetime | None = None  # its TestFailover job ended
    test_failover_result: str | None = None
    cleaned_up: datetime | None = None
    cleanup_result: str | None = None


def vm_times(record: plan.DrillRecord, entries: Sequence[journal.Entry]) -> list[VMTimes]:
    """Each VM's times in `record`'s drill: the test operations of its plan in its window."""
    end = record.ended_at or datetime.max.replace(tzinfo=record.started_at.tzinfo)
    found: dict[str, VMTimes] = {}
    for e in entries:
        if e.plan != record.plan or not record.started_at <= e.intended_at <= end:
            continue
        times = found.setdefault(e.vm, VMTimes(e.vm))
        if e.operation is Operation.TEST_FAILOVER:
            found[e.vm] = VMTimes(
                e.vm, e.started_at, e.finished_at, e.result, times.cleaned_up, times.cleanup_result
            )
        elif e.operation is Operation.TEST_FAILOVER_CLEANUP:
            found[e.vm] = VMTimes(
                e.vm,
                times.test_failover_started,
                times.test_copy_ran,
                times.test_failover_result,
                e.finished_at,
                e.result,
            )
    # A plan-level test operation (ASR's recovery plan) is journaled for the
    # first VM in boot order, and its times are those of every VM of the plan.
    leader = found.get(record.whole[0]) if record.whole else None
    if leader is not None:
        for vm in record.whole:
            found.setdefault(vm, dataclasses.replace(leader, vm=vm))
    return [found[vm] for vm in sorted(found)]


def record_json(record: plan.DrillRecord, entries: Sequence[journal.Entry]) -> dict[str, Any]:
    return {
        "plan": record.plan,
        "id": record.id,
        "revision": record.revision,
        "startedAt": _iso(record.started_at),
        "allRunningAt": _iso(record.running_at),
        "endedAt": _iso(record.ended_at),
        "result": record.result,
        "preempted": record.preempted,
        "failed": record.failed,
        "testRtoSeconds": drills.test_rto_seconds(record),
        "durationSeconds": drills.duration_seconds(record),
        "checks": [
            {"check": c.check, "passed": c.passed, "detail": c.detail} for c in record.checks
        ],
        "vms": [
            {
                "vm": t.vm,
                "testFailoverStartedAt": _iso(t.test_failover_started),
                "testCopyRanAt": _iso(t.test_copy_ran),
                "testFailoverResult": t.test_failover_result,
                "cleanedUpAt": _iso(t.cleaned_up),
                "cleanupResult": t.cleanup_result,
            }
            for t in vm_times(record, entries)
        ],
    }


def report_json(
    plan_name: str, records: Sequence[plan.DrillRecord], entries: Sequence[journal.Entry]
) -> dict[str, Any]:
    return {"plan": plan_name, "drills": [record_json(r, entries) for r in records]}


def report_markdown(
    plan_name: str, records: Sequence[plan.DrillRecord], entries: Sequence[journal.Entry]
) -> Iterator[str]:
    yield f"# Drills of plan {plan_name}\n"
    if not records:
        yield "\nNo drill recorded.\n"
    for r in records:
        yield f"\n## Drill {r.id}: {r.result or 'under way'}\n\n"
        yield f"- started: {_iso(r.started_at)}\n"
        yield f"- every test copy running: {_iso(r.running_at) or '-'}\n"
        yield f"- ended: {_iso(r.ended_at) or '-'}\n"
        yield f"- achieved test RTO: {_secs(drills.test_rto_seconds(r))}\n"
        yield f"- revision: {r.revision or '-'}\n"
        if r.failed:
            yield f"- failed: {r.failed}\n"
        if r.checks:
            yield "\n| check | result | detail |\n|---|---|---|\n"
            for c in r.checks:
                yield f"| {c.check} | {'passed' if c.passed else 'FAILED'} | {c.detail} |\n"
        times = vm_times(r, entries)
        if times:
            yield "\n| VM | test failover started | test copy ran | cleaned up |\n"
            yield "|---|---|---|---|\n"
            for t in times:
                yield (
                    f"| {t.vm} | {_iso(t.test_failover_started) or '-'} | "
                    f"{_iso(t.test_copy_ran) or '-'} ({t.test_failover_result or '-'}) | "
                    f"{_iso(t.cleaned_up) or '-'} ({t.cleanup_result or '-'}) |\n"
                )


def _summary(record: plan.DrillRecord) -> str:
    passed = sum(c.passed for c in record.checks)
    checks = f", checks {passed}/{len(record.checks)} passed" if record.checks else ""
    rto = drills.test_rto_seconds(record)
    achieved = f", test RTO {_secs(rto)}" if rto is not None else ""
    why = f" ({record.failed})" if record.failed else ""
    return f"{record.result}{why} at {_iso(record.ended_at)}{achieved}{checks}"


def _secs(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.0f}s"


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat(timespec="seconds")
