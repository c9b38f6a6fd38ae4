"""The guard-rail keys of a plan: policy.deadlines, policy.maxFailoversPerRevision, spec.suspend.

Each loads to its value on the plan; each wrong value is an error at its line
that says what to write.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from core.spec.test_safety_keys import error, load

from reconciler.core.state import Operation


def test_deadlines_load_as_seconds_per_operation(tmp_path: Path) -> None:
    desired = load(tmp_path, plan="deadlines: {PlannedFailover: 30m, Commit: 1h30m, StopVM: 90}")
    (plan,) = desired.plans
    assert dict(plan.deadlines) == {
        Operation.PLANNED_FAILOVER: 1800.0,
        Operation.COMMIT: 5400.0,
        Operation.STOP_VM: 90.0,
    }


def test_no_guardrail_key_means_defaults(tmp_path: Path) -> None:
    (plan,) = load(tmp_path).plans
    assert (plan.deadlines, plan.max_failovers_per_revision, plan.suspend) == ((), None, False)


def test_initial_replication_has_no_deadline(tmp_path: Path) -> None:
    line, message = error(tmp_path, plan="deadlines: {EnableReplication: 2h}")
    assert line == 8
    assert "EnableReplication" in message and "progress" in message


@pytest.mark.parametrize("written", ["30x", "0m", "-5", "''", "9999h"])
def test_a_deadline_that_is_no_duration_is_an_error(tmp_path: Path, written: str) -> None:
    line, message = error(tmp_path, plan=f"deadlines: {{PlannedFailover: {written}}}")
    assert line == 8
    assert "30m" in message  # says how to write one


def test_max_failovers_and_suspend_load(tmp_path: Path) -> None:
    (plan,) = load(tmp_path, plan="maxFailoversPerRevision: 50", spec="suspend: true").plans
    assert (plan.max_failovers_per_revision, plan.suspend) == (50, True)


def test_max_failovers_must_be_a_positive_integer(tmp_path: Path) -> None:
    line, message = error(tmp_path, plan="maxFailoversPerRevision: 0")
    assert line == 8
    assert "maxFailoversPerRevision" in message
