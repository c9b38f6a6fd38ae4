"""The kill test, short: SIGKILLs of a real `drctl run` at random moments during moves and
flip-flopping commits issue no operation twice, cancel nothing, and still converge.
bench/kill.py runs the same with thirty kills or more."""

from __future__ import annotations

from pathlib import Path

import pytest
from e2e import kill

pytestmark = pytest.mark.e2e


def test_sigkills_during_moves_and_flip_flopping_commits_issue_nothing_twice(
    tmp_path: Path,
) -> None:
    figures = kill.run_kills(tmp_path, kills=5, seed=10, max_delay=1.5, converge_timeout=60)
    assert figures.kills == 5
    assert figures.duplicated == 0, figures
    assert figures.repeated == 0, figures
    assert figures.unjournaled == 0, figures
    assert figures.cancels == 0, figures
    assert figures.tracebacks == 0, figures
    assert figures.converged, figures
    assert figures.jobs > 0
