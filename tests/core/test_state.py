"""Observed values: what a job's state says about following it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from reconciler.core.state import Job, JobState, Operation

START = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("state", "running", "suspended"),
    [
        (JobState.NOT_STARTED, True, False),
        (JobState.RUNNING, True, False),
        (JobState.SUSPENDED, True, True),
        (JobState.SUCCEEDED, False, False),
        (JobState.FAILED, False, False),
        (JobState.CANCELLED, False, False),
    ],
)
def test_a_job_is_followed_until_it_ends_and_a_suspended_one_is_not_over(
    state: JobState, running: bool, suspended: bool
) -> None:
    """A suspended job still holds its VM (running), but makes no progress (suspended)."""
    job = Job("job-1", "web01", Operation.PLANNED_FAILOVER, state, START)
    assert (job.running, job.suspended) == (running, suspended)


def test_job_states_keep_the_values_the_fabric_and_the_journal_use() -> None:
    assert {s.name: s.value for s in JobState} == {
        "NOT_STARTED": "NotStarted",
        "RUNNING": "Running",
        "SUSPENDED": "Suspended",
        "SUCCEEDED": "Succeeded",
        "FAILED": "Failed",
        "CANCELLED": "Cancelled",
    }
    assert Job("j", "v", Operation.COMMIT, JobState.RUNNING, START).state_description is None
