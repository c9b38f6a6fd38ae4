"""The JSON `drctl plan` and `drctl status --output json` print: the documents of `plan_json`
and `status_json`, one VM a line."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from builders import NOW, desired, job, observed, vm, want

from reconciler.core import plan
from reconciler.core.desired import Group
from reconciler.core.state import Health, Operation, ProtectionState
from reconciler.engine import status
from reconciler.ui import report, status_table

OPS = frozenset({Operation.PLANNED_FAILOVER, Operation.STOP_VM, Operation.DISABLE_REPLICATION})


def _mixed_plan() -> plan.Plan:
    """VMs in many phases: at rest, moving, lagging, in a job, off, missing, unmanaged."""
    d = desired(
        want("web01", "rtm", group="web"),
        want("web02", "rtm", group="web"),
        want("db01", group="db"),
        want("lag01"),
        want("job01"),
        want("off01", replication=None),
        want("gone01"),
        want('quo"te\u00e9'),
        groups=(Group("db", (), ("db01",)), Group("web", ("db",), ("web01", "web02"))),
    )
    failover = job("job01", Operation.PLANNED_FAILOVER, job_id="job-000007", progress=0.25, age=5.0)
    o = observed(
        vm("web01", allowed=OPS),
        vm("web02", running=(), allowed=OPS),
        vm("db01", allowed=OPS),
        vm("lag01", health=Health.CRITICAL, last_sync_age=400.0, allowed=OPS),
        vm("job01", job=failover, allowed=OPS),
        vm("off01", protection=ProtectionState.UNPROTECTED, allowed=OPS),
        vm('quo"te\u00e9', allowed=OPS),
        vm("legacy01", allowed=OPS),
    )
    return plan.build_plan(d, o, NOW)


def test_plan_json_text_is_the_plan_json_document_with_its_key_order() -> None:
    built = _mixed_plan()
    text = "".join(report.plan_json_lines(built, "abc123"))
    expected = report.plan_json(built, "abc123")
    assert json.dumps(json.loads(text)) == json.dumps(expected)
    assert expected["actions"] and expected["unmanaged"] == ["legacy01"]


def test_plan_json_text_puts_each_action_and_each_vm_on_its_own_line() -> None:
    built = _mixed_plan()
    lines = "".join(report.plan_json_lines(built, "abc123")).splitlines()
    vm_lines = [line for line in lines if line.lstrip().startswith('{"plan"')]
    action_lines = [line for line in lines if line.lstrip().startswith('{"order"')]
    assert len(vm_lines) == len(built.vms)
    assert len(action_lines) == len(built.actions)
    assert [json.loads(line.rstrip(","))["name"] for line in vm_lines] == [
        vp.name for vp in built.vms
    ]


def test_plan_json_text_of_an_empty_plan_is_valid_json() -> None:
    empty = plan.Plan(vms=(), actions=(), unmanaged=())
    text = "".join(report.plan_json_lines(empty, "abc123"))
    assert json.loads(text) == {
        "converged": True,
        "revision": "abc123",
        "actions": [],
        "vms": [],
        "unmanaged": [],
        "failoverPaths": {},
        "summary": [],
    }


def test_plan_json_text_is_right_when_every_vm_has_its_own_reason() -> None:
    """More distinct lines than the renderer remembers: each is still the VM's own."""
    names = [f"vm{i:05d}" for i in range(5000)]
    d = desired(*(want(n, plan="big") for n in names))
    missing = observed()
    built = plan.build_plan(d, missing, NOW)
    text = "".join(report.plan_json_lines(built, "abc123"))
    assert json.dumps(json.loads(text)) == json.dumps(report.plan_json(built, "abc123"))
    assert "VM 'vm04999' is not in the fabric" in text


DAEMON = status.DaemonStatus(
    pid=4242,
    running=True,
    revision_in_force="abc123",
    revision_seen="def456",
    spec_valid=False,
    spec_errors=("plan.yaml:3: activeSite: 'mars' is not a site of the plan",),
    updated_at=datetime(2026, 1, 1, 12, 0, tzinfo=UTC),
)


def test_status_json_text_is_the_status_json_document_with_its_key_order() -> None:
    built = _mixed_plan()
    sites = (status_table.SiteState("sim", "ams", "connected"),)
    for daemon, seen in ((None, None), (DAEMON, sites)):
        text = "".join(report.status_json_lines(built, "abc123", daemon, seen))
        expected = report.status_json(built, "abc123", daemon, seen)
        assert json.dumps(json.loads(text)) == json.dumps(expected)
    assert expected["daemon"] is not None and expected["unmanaged"] == ["legacy01"]
    assert expected["sites"] and any(vm["action"] for vm in expected["vms"])


def test_status_json_text_puts_each_vm_on_its_own_line() -> None:
    built = _mixed_plan()
    lines = "".join(report.status_json_lines(built, "abc123")).splitlines()
    vm_lines = [
        json.loads(line.strip().rstrip(","))
        for line in lines
        if line.lstrip().startswith('{"plan"')
    ]
    assert [entry["name"] for entry in vm_lines] == [vp.name for vp in built.vms]


def test_status_json_text_of_an_empty_plan_is_valid_json() -> None:
    empty = plan.Plan(vms=(), actions=(), unmanaged=())
    text = "".join(report.status_json_lines(empty, "abc123"))
    assert json.loads(text) == {
        "converged": True,
        "revision": "abc123",
        "vms": [],
        "unmanaged": [],
        "daemon": None,
        "drills": [],
        "sites": None,
    }


def test_status_json_text_is_right_when_every_vm_has_its_own_reason() -> None:
    """More distinct lines than the renderer remembers: each is still the VM's own."""
    d = desired(*(want(f"vm{i:05d}", plan="big") for i in range(5000)))
    built = plan.build_plan(d, observed(), NOW)
    text = "".join(report.status_json_lines(built, "abc123"))
    assert json.dumps(json.loads(text)) == json.dumps(report.status_json(built, "abc123"))
    assert "VM 'vm04999' is not in the fabric" in text
