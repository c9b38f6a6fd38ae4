"""What `drctl status` and `drctl plan` show for a VM whose fabric cannot be observed.

Nothing is known of such a VM: it is shown as unknown, never as "not in
fabric", and `drctl plan` lists no change for it. A VM missing from a fabric
that answered is still shown as not in the fabric.
"""

from __future__ import annotations

import dataclasses
import io
import json
from typing import Any

from builders import NOW, desired, observed, vm, want

from reconciler.core import plan
from reconciler.core.state import Observed
from reconciler.ui import report

UNKNOWN = "(unknown: fabric not observed)"
MISSING = "(not in fabric)"


def _plan() -> plan.Plan:
    """Plan finance on fabric west (web01 at rest, gone01 missing); payroll on east, unreachable."""
    wanted = desired(want("web01"), want("gone01"), want("pay01", plan="payroll"))
    fabric_of = {"finance": "west", "payroll": "east"}
    wanted = dataclasses.replace(
        wanted, plans=tuple(dataclasses.replace(p, fabric=fabric_of[p.name]) for p in wanted.plans)
    )
    seen = {
        "west": observed(vm("web01")),
        "east": Observed(sites={}, vms={}, unreachable="connection refused"),
    }
    built = plan.build_plans(wanted, seen, NOW)
    assert [vp.fabric_observed for vp in built.vms] == [True, True, False]
    return built


def _row(text: str, plan_name: str, vm_name: str) -> str:
    return next(line for line in text.splitlines() if line.split()[:2] == [plan_name, vm_name])


def test_status_text_shows_a_vm_of_an_unobserved_fabric_as_unknown() -> None:
    out = io.StringIO()
    report.print_status(_plan(), "abc123", out)
    row = _row(out.getvalue(), "payroll", "pay01")
    assert UNKNOWN in row
    assert MISSING not in row
    assert "WaitingForSite" in row
    assert "fabric 'east' cannot be observed: connection refused" in row


def test_status_text_still_shows_a_vm_missing_from_an_observed_fabric_as_not_in_fabric() -> None:
    out = io.StringIO()
    report.print_status(_plan(), "abc123", out)
    row = _row(out.getvalue(), "finance", "gone01")
    assert MISSING in row
    assert UNKNOWN not in row


def test_plan_text_lists_no_change_for_a_vm_of_an_unobserved_fabric() -> None:
    out = io.StringIO()
    report.print_plan(_plan(), "abc123", out)
    lines = out.getvalue().splitlines()
    start = lines.index("what changes (what the fabric reports -> the desired state):")
    assert lines[start + 1 : lines.index("", start)] == [
        "  finance/gone01",
        "    activeSite: (not in fabric) -> ams",
        "    replication: (not in fabric) -> ams->rtm",
    ]
    assert UNKNOWN in _row(out.getvalue(), "payroll", "pay01")


def _json_vms(document: dict[str, Any]) -> dict[str, Any]:
    return {vm["name"]: vm for vm in document["vms"]}


def _streamed(built: plan.Plan) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads("".join(report.plan_json_lines(built, "abc123")))
    return parsed


def test_plan_json_has_no_changes_for_a_vm_of_an_unobserved_fabric() -> None:
    built = _plan()
    for document in (_streamed(built), report.plan_json(built, "abc123")):
        pay01 = _json_vms(document)["pay01"]
        assert pay01["observed"] is None
        assert pay01["phase"] == "WaitingForSite"
        assert pay01["reason"].startswith("fabric 'east' cannot be observed:")
        assert pay01["changes"] == {}


def test_plan_json_keeps_the_changes_of_a_vm_missing_from_an_observed_fabric() -> None:
    built = _plan()
    for document in (_streamed(built), report.plan_json(built, "abc123")):
        gone01 = _json_vms(document)["gone01"]
        assert gone01["observed"] is None
        assert gone01["changes"] == {
            "activeSite": [None, "ams"],
            "replication": [None, "ams->rtm"],
        }


def test_plan_json_text_is_the_plan_json_document_with_unobserved_fabrics() -> None:
    """Many VMs share the streamed encoding of their state: unknown and missing stay apart."""
    built = _plan()
    many = dataclasses.replace(built, vms=built.vms * 50)
    assert json.dumps(_streamed(many)) == json.dumps(report.plan_json(many, "abc123"))
