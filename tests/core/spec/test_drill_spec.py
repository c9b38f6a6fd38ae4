"""`spec.drill` loads to the plan's Drill; each mistake in it is an error at its file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.core.desired import Drill, DrillCheck
from reconciler.errors import SpecError
from reconciler.gitops import specdir

PLAN = """\
apiVersion: drctl/v1
kind: RecoveryPlan
metadata: {name: finance}
spec:
  sites: [ams, rtm]
  defaults: {activeSite: ams, replication: ams->rtm}
  drill:
    id: 2026-q4
    network: isolated
    keepMinutes: 30
    checks:
      - {vm: sql01, tcp: 5432, timeoutSeconds: 2}
      - {vm: sql01, http: {port: 8080, path: /health}}
  vms:
    - name: sql01
"""


def load(tmp_path: Path, text: str) -> Drill | None:
    (tmp_path / "p.yaml").write_text(text)
    return specdir.load_specs(tmp_path).plans[0].drill


def test_a_drill_loads_with_its_checks(tmp_path: Path) -> None:
    assert load(tmp_path, PLAN) == Drill(
        "2026-q4",
        30.0,
        "isolated",
        (DrillCheck("sql01", 5432, None, 2.0), DrillCheck("sql01", 8080, "/health", 5.0)),
    )


def test_a_plan_without_a_drill_requests_none(tmp_path: Path) -> None:
    start, end = PLAN.index("  drill:"), PLAN.index("  vms:")
    assert load(tmp_path, PLAN[:start] + PLAN[end:]) is None


@pytest.mark.parametrize(
    ("old", "new", "line", "says"),
    [
        ("keepMinutes: 30", "keepMinutes: -1", 10, "keepMinutes"),
        ("keepMinutes: 30", "keepMinute: 30", 10, "keepMinute"),
        ("vm: sql01, tcp: 5432, ", "vm: nope, tcp: 5432, ", 12, "not in this plan"),
        ("tcp: 5432, timeoutSeconds: 2", "timeoutSeconds: 2", 12, "exactly one"),
        ("tcp: 5432", "tcp: 70000", 12, "tcp"),
        ("path: /health", "path: health", 13, "path"),
        ("id: 2026-q4", "id: ' q4'", 8, "id"),
    ],
)
def test_each_mistake_is_an_error_at_its_line(
    tmp_path: Path, old: str, new: str, line: int, says: str
) -> None:
    with pytest.raises(SpecError) as raised:
        load(tmp_path, PLAN.replace(old, new, 1))
    assert f"p.yaml:{line}:" in str(raised.value)
    assert says in str(raised.value)
