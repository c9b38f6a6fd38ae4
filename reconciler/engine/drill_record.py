"""A drill's record as the journal stores it: one JSON document per (plan, drill id).

`engine.journal` (a `drills` table) and `engine.journal_etcd` (a key per drill)
keep the documents this module writes and reads; `engine.drill` makes them.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from reconciler.core import plan


def to_text(record: plan.DrillRecord) -> str:
    """The record as one JSON document (times in ISO 8601 with their offset)."""
    return json.dumps(
        {
            "plan": record.plan,
            "id": record.id,
            "startedAt": _time(record.started_at),
            "runningAt": _time(record.running_at),
            "endedAt": _time(record.ended_at),
            "result": record.result,
            "failed": record.failed,
            "preempted": record.preempted,
            "revision": record.revision,
            "whole": list(record.whole),
            "checks": [
                {"check": c.check, "passed": c.passed, "detail": c.detail} for c in record.checks
            ],
        },
        sort_keys=True,
    )


def from_text(text: str) -> plan.DrillRecord:
    doc: dict[str, Any] = json.loads(text)
    started = _parse(doc["startedAt"])
    assert started is not None  # noqa: S101 (always written)
    return plan.DrillRecord(
        plan=doc["plan"],
        id=doc["id"],
        started_at=started,
        running_at=_parse(doc.get("runningAt")),
        ended_at=_parse(doc.get("endedAt")),
        result=doc.get("result"),
        failed=doc.get("failed"),
        preempted=bool(doc.get("preempted")),
        revision=doc.get("revision"),
        whole=tuple(doc.get("whole") or ()),
        checks=tuple(
            plan.CheckResult(c["check"], bool(c["passed"]), c["detail"])
            for c in doc.get("checks", ())
        ),
    )


def latest(records: list[plan.DrillRecord]) -> dict[str, plan.DrillRecord]:
    """Each plan's newest drill (by start), the one the planner reads."""
    found: dict[str, plan.DrillRecord] = {}
    for record in sorted(records, key=lambda r: r.started_at):
        found[record.plan] = record
    return found


def _time(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


def _parse(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)
