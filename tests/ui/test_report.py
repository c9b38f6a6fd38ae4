"""The JSON `drctl plan --output json` prints: the document of `plan_json`, one VM a line."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from reconciler.core import plan
from reconciler.core.desired import DesiredState, DesiredVM, Group, PlanSpec
from reconciler.core.state import (
    Health,
    Job,
    JobState,
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
OPS = frozenset({Operation.PLANNED_FAILOVER, Operation.STOP_VM, Operation.DISABLE_REPLICATION})


def _rep(
    source: str,
    target: str,
    health: Health = Health.NORMAL,
    age: float = 10.0,
    rstate: ReplicationState = ReplicationState.REPLICATING,
) -> Replication:
    return Replication(source, target, rstate, health, NOW - timedelta(seconds=age), 30.0)


def _vm(
    name: str,
    active: str = "ams",
    rep: Replication | None = None,
    job: Job | None = None,
    running: tuple[str, ...] | None = None,
    protection: ProtectionState = ProtectionState.PROTECTED,
) -> ObservedVM:
    other = "rtm" if active == "ams" else "ams"
    rep = (
        rep
        if rep is not None or protection is not ProtectionState.PROTECTED
        else _rep(active, other)
    )
    return ObservedVM(
        name, active, (active,) if running is None else running, protection, rep, OPS, job
    )


def _mixed_plan() -> plan.Plan:
    """VMs in many phases: at rest, moving, lagging, in a job, off, missing, unmanaged."""
    names = ["web01", "web02", "db01", "lag01", "job01", "off01", "gone01", 'quo"te\u00e9']
    desired = DesiredState(
        plans=(
            PlanSpec(
                name="finance",
                file="finance.yaml",
                sites=("ams", "rtm"),
                allow_data_loss=False,
                max_parallel=10,
                groups=(
                    Group("db", (), ("db01",)),
                    Group("web", ("db",), ("web01", "web02")),
                ),
                vms=tuple(
                    DesiredVM(
                        "finance",
                        n,
                        "rtm" if n.startswith("web") else "ams",
                        None
                        if n == "off01"
                        else ("rtm", "ams")
                        if n.startswith("web")
                        else ("ams", "rtm"),
                        False,
                        {"db01": "db", "web01": "web", "web02": "web"}.get(n),
                    )
                    for n in names
                ),
            ),
        )
    )
    job = Job(
        "job-000007",
        "job01",
        Operation.PLANNED_FAILOVER,
        JobState.RUNNING,
        NOW - timedelta(seconds=5),
        progress=0.25,
        target_site="rtm",
    )
    vms = [
        _vm("web01"),
        _vm("web02", running=()),
        _vm("db01"),
        _vm("lag01", rep=_rep("ams", "rtm", Health.CRITICAL, age=400.0)),
        _vm("job01", job=job),
        _vm("off01", protection=ProtectionState.UNPROTECTED),
        _vm('quo"te\u00e9'),
        _vm("legacy01"),
    ]
    observed = Observed(
        sites={s: Site(s, True) for s in ("ams", "rtm")}, vms={v.name: v for v in vms}, at=NOW
    )
    return plan.build_plan(desired, observed, NOW)


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
    }


def test_plan_json_text_is_right_when_every_vm_has_its_own_reason() -> None:
    """More distinct lines than the renderer remembers: each is still the VM's own."""
    names = [f"vm{i:05d}" for i in range(5000)]
    desired = DesiredState(
        plans=(
            PlanSpec(
                name="big",
                file="big.yaml",
                sites=("ams", "rtm"),
                allow_data_loss=False,
                max_parallel=10,
                groups=(),
                vms=tuple(DesiredVM("big", n, "ams", ("ams", "rtm"), False, None) for n in names),
            ),
        )
    )
    missing = Observed(sites={s: Site(s, True) for s in ("ams", "rtm")}, vms={}, at=NOW)
    built = plan.build_plan(desired, missing, NOW)
    text = "".join(report.plan_json_lines(built, "abc123"))
    assert json.dumps(json.loads(text)) == json.dumps(report.plan_json(built, "abc123"))
    assert "VM 'vm04999' is not in the fabric" in text
