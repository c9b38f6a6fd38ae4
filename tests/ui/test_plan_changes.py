"""What `drctl plan` says changes for each VM, field by field, in its text and its JSON."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from reconciler.core import plan
from reconciler.core.desired import DesiredState, DesiredVM, PlanSpec
from reconciler.core.state import (
    Observed,
    ObservedVM,
    Operation,
    ProtectionState,
    Replication,
    ReplicationState,
    Site,
)
from reconciler.ui import report

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
SPECS = Path(__file__).resolve().parents[2] / "specs"

# The keys of a VM in `drctl plan --output json` before "changes" was added,
# in their order: scripts read them.
VM_KEYS = [
    "plan",
    "name",
    "desired",
    "observed",
    "converged",
    "placed",
    "protected",
    "phase",
    "reason",
    "readiness",
]


def _replicating(source: str, target: str) -> Replication:
    return Replication(
        source, target, ReplicationState.REPLICATING, last_sync=NOW - timedelta(seconds=5)
    )


def _plan() -> plan.Plan:
    """web01 moves to rtm; app01 failed over to rtm, unreversed; db01 converged; new01 absent."""
    wanted = {
        "web01": ("rtm", ("rtm", "ams")),
        "app01": ("rtm", ("rtm", "ams")),
        "db01": ("ams", ("ams", "rtm")),
        "new01": ("ams", ("ams", "rtm")),
    }
    desired = DesiredState(
        plans=(
            PlanSpec(
                name="finance",
                file="finance.yaml",
                sites=("ams", "rtm"),
                allow_data_loss=False,
                max_parallel=10,
                groups=(),
                vms=tuple(
                    DesiredVM("finance", name, site, rep, False, None)
                    for name, (site, rep) in wanted.items()
                ),
            ),
        )
    )
    protected = ProtectionState.PROTECTED
    vms = [
        ObservedVM(
            "web01",
            "ams",
            ("ams",),
            protected,
            _replicating("ams", "rtm"),
            frozenset({Operation.PLANNED_FAILOVER}),
        ),
        # Failed over and committed; replication is not reversed yet.
        ObservedVM(
            "app01",
            "rtm",
            ("rtm",),
            ProtectionState.COMMITTED,
            None,
            frozenset({Operation.REVERSE_REPLICATE}),
        ),
        ObservedVM(
            "db01",
            "ams",
            ("ams",),
            protected,
            _replicating("ams", "rtm"),
            frozenset({Operation.PLANNED_FAILOVER}),
        ),
    ]
    observed = Observed(
        sites={s: Site(s, True) for s in ("ams", "rtm")}, vms={v.name: v for v in vms}, at=NOW
    )
    return plan.build_plan(desired, observed, NOW)


def _json_vms(built: plan.Plan) -> dict[str, Any]:
    text = "".join(report.plan_json_lines(built, "abc123"))
    return {vm["name"]: vm for vm in json.loads(text)["vms"]}


def test_plan_text_shows_what_changes_for_each_vm_that_is_not_converged() -> None:
    out = io.StringIO()
    report.print_plan(_plan(), "abc123", out)
    lines = out.getvalue().splitlines()
    start = lines.index("what changes (what the fabric reports -> the desired state):")
    assert lines[start + 1 : lines.index("", start)] == [
        "  finance/web01",
        "    activeSite: ams -> rtm",
        "    replication: ams->rtm -> rtm->ams",
        "  finance/app01",
        "    replication: off -> rtm->ams",
        "  finance/new01",
        "    activeSite: (not in fabric) -> ams",
        "    replication: (not in fabric) -> ams->rtm",
    ]
    assert not any("db01" in line for line in lines[start : lines.index("", start)])


def test_plan_text_of_a_converged_plan_has_no_changes() -> None:
    built = _plan()
    converged = plan.Plan(
        vms=tuple(vp for vp in built.vms if vp.converged), actions=(), unmanaged=()
    )
    out = io.StringIO()
    report.print_plan(converged, "abc123", out)
    assert "what changes" not in out.getvalue()


def test_plan_json_has_each_vms_changes_as_fabric_and_desired_values() -> None:
    vms = _json_vms(_plan())
    assert vms["web01"]["changes"] == {
        "activeSite": ["ams", "rtm"],
        "replication": ["ams->rtm", "rtm->ams"],
    }
    assert vms["app01"]["changes"] == {"replication": ["off", "rtm->ams"]}
    assert vms["new01"]["changes"] == {
        "activeSite": [None, "ams"],
        "replication": [None, "ams->rtm"],
    }
    assert vms["db01"]["converged"] is True
    assert vms["db01"]["changes"] == {}


def test_plan_json_adds_changes_after_every_field_it_had() -> None:
    built = _plan()
    for vm in _json_vms(built).values():
        assert list(vm) == [*VM_KEYS, "changes"]
    assert [list(vm) for vm in report.plan_json(built, "abc123")["vms"]] == [
        [*VM_KEYS, "changes"]
    ] * len(built.vms)


def test_the_changes_are_right_for_many_vms_that_share_a_state() -> None:
    """The streamed JSON encodes a shared rest once: each VM still gets its own changes."""
    built = _plan()
    many = plan.Plan(vms=built.vms * 50, actions=built.actions, unmanaged=())
    text = "".join(report.plan_json_lines(many, "abc123"))
    assert json.dumps(json.loads(text)) == json.dumps(report.plan_json(many, "abc123"))


def test_validate_and_a_converged_plan_never_import_deepdiff() -> None:
    """deepdiff (~70 ms of imports) loads only once a VM differs."""
    script = f"""
import io, sys
from reconciler.cli import main
assert main.main(["validate", {str(SPECS)!r}]) == 0
sys.path.insert(0, {str(Path(__file__).parent)!r})
import test_plan_changes as t
from reconciler.core import plan
from reconciler.ui import report
built = t._plan()
converged = plan.Plan(vms=tuple(vp for vp in built.vms if vp.converged), actions=(), unmanaged=())
report.print_plan(converged, "r", io.StringIO())
"".join(report.plan_json_lines(converged, "r"))
assert "deepdiff" not in sys.modules, "imported too early"
"".join(report.plan_json_lines(built, "r"))
assert "deepdiff" in sys.modules
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
