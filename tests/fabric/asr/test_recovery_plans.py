"""ASR recovery plans on the test server, through the real SDK (the provider's ArmClient).

A recovery plan holds protected items in boot groups; its plan-level POSTs
answer 202 with the job, as an item's do, and its failover shuts the VMs down
in reverse group order, fails them over, then boots them group by group.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from builders import TIMINGS
from fabric.asr import harness
from fabric.asr.server import RESET, Fault

from reconciler import errors
from reconciler.core.state import FailoverKind, JobState, Operation, ProtectionState
from reconciler.fabric.asr import bucket, client
from reconciler.fabric.asr.provider import AsrFabric
from reconciler.fabric.asr.settings import ItemRef
from reconciler.fabric.base import Request
from reconciler.fabric.sim.inventory import Inventory, InventoryVM
from reconciler.kits.clock import VirtualClock

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
GROUPS = (("sql01",), ("app01", "app02"), ("web01",))
INVENTORY = Inventory(
    ("ams", "rtm"),
    tuple(InventoryVM(n, "ams", ("ams", "rtm")) for g in GROUPS for n in g),
    TIMINGS,
)


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(T0)


@pytest.fixture
def asr(tmp_path: Path, clock: VirtualClock) -> Iterator[harness.AsrUnderTest]:
    built = harness.open_fabric(tmp_path, clock, INVENTORY)
    try:
        yield built
    finally:
        built.close()


def arm_of(asr: harness.AsrUnderTest) -> client.ArmClient:
    buckets = bucket.Buckets(asr.settings.rates, asr.clock)
    return client.ArmClient(asr.settings, buckets, connection_verify=str(asr.server.ca_path))


def plan_body(asr: harness.AsrUnderTest, groups: tuple[tuple[str, ...], ...]) -> dict[str, Any]:
    vault = asr.vault
    return {
        "properties": {
            "primaryFabricId": f"{vault.vault_path}/replicationFabrics/vmm-ams",
            "recoveryFabricId": f"{vault.vault_path}/replicationFabrics/vmm-rtm",
            "failoverDeploymentModel": "NotApplicable",
            "groups": [
                {
                    "groupType": "Boot",
                    "replicationProtectedItems": [
                        {"id": vault.item_path(vault.by_friendly(n))} for n in group
                    ],
                }
                for group in groups
            ],
        }
    }


def boot_groups(plan: dict[str, Any]) -> list[list[str]]:
    return [
        [ref["virtualMachineId"] for ref in g.get("replicationProtectedItems") or []]
        for g in plan["properties"]["groups"]
        if g["groupType"] == "Boot"
    ]


def run(arm: client.ArmClient, clock: VirtualClock, accepted: client.Accepted) -> dict[str, Any]:
    job = accepted.headers["Location"].split("/replicationJobs/")[1].split("/")[0]
    for _ in range(600):
        seen = arm.get_job(job)
        if seen["properties"]["state"] not in {"InProgress", "NotStarted"}:
            return seen
        clock.advance(5)
    raise AssertionError(f"job {job} still runs")


def test_a_plan_is_created_read_back_in_boot_order_and_updated(
    asr: harness.AsrUnderTest,
) -> None:
    arm = arm_of(asr)
    try:
        assert arm.get_plan("drctl-shop") is None
        made = arm.write_plan("drctl-shop", plan_body(asr, GROUPS), create=True)
        names = [[asr.vault.by_friendly(n).name for n in g] for g in GROUPS]
        assert boot_groups(made) == names
        assert boot_groups(arm.get_plan("drctl-shop") or {}) == names
        shapes = [g["groupType"] for g in made["properties"]["groups"]]
        assert shapes[:2] == ["Shutdown", "Failover"]
        assert "PlannedFailover" in made["properties"]["allowedOperations"]
        arm.write_plan("drctl-shop", plan_body(asr, GROUPS[:2]), create=False)
        assert boot_groups(arm.get_plan("drctl-shop") or {}) == names[:2]
        assert asr.server.count("PUT", "/replicationRecoveryPlans/drctl-shop") == 1
        assert asr.server.count("PATCH", "/replicationRecoveryPlans/drctl-shop") == 1
    finally:
        arm.close()


def test_a_plan_failover_shuts_down_in_reverse_order_fails_over_and_boots_by_group(
    asr: harness.AsrUnderTest, clock: VirtualClock
) -> None:
    arm = arm_of(asr)
    try:
        arm.write_plan("drctl-shop", plan_body(asr, GROUPS), create=True)
        body = {"properties": {"failoverDirection": "PrimaryToRecovery"}}
        accepted = arm.post_plan_action("drctl-shop", "planned_failover", body, "intent-1")
        assert accepted.status == 202
        assert "Azure-AsyncOperation" in accepted.headers
        # While its job runs the plan is not changed, nor any of its items moved alone.
        with pytest.raises(errors.ProviderError, match="cannot be changed while its job"):
            arm.write_plan("drctl-shop", plan_body(asr, GROUPS[:1]), create=False)
        item = asr.vault.by_friendly("app01")
        with pytest.raises(errors.ProviderError, match="already in progress"):
            arm.post_action(
                ItemRef("vmm-ams", asr.vault.sites["ams"].container, item.name),
                "planned_failover",
                body,
                None,
            )
        job = run(arm, clock, accepted)
        assert job["properties"]["state"] == "Succeeded"
        assert job["properties"]["targetObjectName"] == "drctl-shop"
        assert job["properties"]["activityId"].startswith("intent-1")
        steps = [(step, vm) for _, step, vm in asr.vault.events]
        assert steps == [
            ("shutdown", "web01"),
            ("shutdown", "app01"),
            ("shutdown", "app02"),
            ("shutdown", "sql01"),
            ("failover", "sql01"),
            ("failover", "app01"),
            ("failover", "app02"),
            ("failover", "web01"),
            ("boot", "sql01"),
            ("boot", "app01"),
            ("boot", "app02"),
            ("boot", "web01"),
        ]
        for _, vm in steps:
            state = asr.vault.by_friendly(vm).state
            assert (state.active_site, state.protection) == ("rtm", ProtectionState.COMMIT_PENDING)
        done = run(arm, clock, arm.post_plan_action("drctl-shop", "failover_commit", None, None))
        assert done["properties"]["state"] == "Succeeded"
        done = run(arm, clock, arm.post_plan_action("drctl-shop", "reprotect", None, None))
        assert done["properties"]["state"] == "Succeeded"
        back = {"properties": {"failoverDirection": "RecoveryToPrimary"}}
        done = run(arm, clock, arm.post_plan_action("drctl-shop", "planned_failover", back, None))
        assert done["properties"]["state"] == "Succeeded"
        assert {asr.vault.by_friendly(n).state.active_site for g in GROUPS for n in g} == {"ams"}
    finally:
        arm.close()


def test_a_plan_job_that_fails_names_the_item_and_the_plan(
    asr: harness.AsrUnderTest, clock: VirtualClock
) -> None:
    arm = arm_of(asr)
    try:
        arm.write_plan("drctl-shop", plan_body(asr, GROUPS), create=True)
        asr.vault.failures[("app02", Operation.PLANNED_FAILOVER)] = [False]
        body = {"properties": {"failoverDirection": "PrimaryToRecovery"}}
        job = run(arm, clock, arm.post_plan_action("drctl-shop", "planned_failover", body, None))
        assert job["properties"]["state"] == "Failed"
        text = job["properties"]["errors"][0]["serviceErrorDetails"]["message"]
        assert "app02" in text and "drctl-shop" in text
        with pytest.raises(errors.ProviderError, match="direction"):
            arm.post_plan_action(
                "drctl-shop", "planned_failover", {"properties": {"failoverDirection": "X"}}, None
            )
    finally:
        arm.close()


def test_the_provider_moves_a_whole_plan_through_its_recovery_plan_drctl_plan(
    asr: harness.AsrUnderTest, clock: VirtualClock
) -> None:
    provider = asr.open()
    assert provider.offers_plan_failover
    groups = [list(g) for g in GROUPS]
    assert provider.observe().plan_failover
    # The executor's request for a whole-plan move (Action.plan_groups) goes to start_plan.
    request = Request(
        "sql01",
        Operation.PLANNED_FAILOVER,
        "rtm",
        intent_id="intent-7",
        plan="shop",
        plan_groups=tuple(GROUPS),
    )
    job_id = provider.start(request)
    plan = asr.vault.plans["drctl-shop"]
    assert plan.groups == [[asr.vault.by_friendly(n).name for n in g] for g in GROUPS]
    assert plan.job == job_id
    # While its job runs, every VM of the plan reports that job, and the recovery
    # plan is not rewritten (a VM of it is busy): the change waits for the job.
    seen = provider.observe()
    jobs = [seen.vms[n].job for g in GROUPS for n in g]
    assert [j.id if j is not None else None for j in jobs] == [job_id] * len(jobs)
    with pytest.raises(errors.RejectedError, match="is running on this VM"):
        provider.start_plan("shop", groups[:2], request)
    for _ in range(600):
        job = provider.get_job(job_id)
        if not job.running:
            break
        clock.advance(5)
    assert job.state is JobState.SUCCEEDED
    assert [step for _, step, _ in asr.vault.events][:4] == ["shutdown"] * 4
    # Unchanged groups: no second write; the commit goes through the plan too.
    commit = Request("sql01", Operation.COMMIT, "rtm")
    provider.start_plan("shop", groups, commit)
    assert plan.writes == 1
    assert asr.server.count("POST", "/replicationRecoveryPlans/drctl-shop/failoverCommit") == 1


@pytest.mark.parametrize(
    "fault",
    [
        Fault(500, method="POST", path="/replicationRecoveryPlans/", after_start=True),
        Fault(500, method="POST", path="/replicationRecoveryPlans/", after_start=True, reset=True),
    ],
    ids=["500", "reset"],
)
def test_a_lost_answer_to_a_plan_post_adopts_the_plan_job_and_posts_nothing_twice(
    asr: harness.AsrUnderTest, clock: VirtualClock, fault: Fault
) -> None:
    """ASR started the plan's job, then its answer was lost: the provider reads the plan,
    adopts its job (of that operation, with that intent id), and never POSTs again."""
    provider = asr.open()
    provider.observe()
    asr.server.inject(fault)
    request = Request(
        "sql01",
        Operation.PLANNED_FAILOVER,
        "rtm",
        intent_id="intent-77",
        plan="shop",
        plan_groups=GROUPS,
    )
    job_id = provider.start(request)
    assert [j.name for j in asr.vault.jobs.values()] == [job_id]
    posts = asr.server.seen("POST")
    assert [(r.status, r.client_request_id) for r in posts] == [
        (fault.status if not fault.reset else RESET, "intent-77")
    ]
    for _ in range(600):
        job = provider.get_job(job_id)
        if not job.running:
            break
        clock.advance(5)
    assert (job.state, job.intent_id) == (JobState.SUCCEEDED, "intent-77")
    # An answer lost before the job started is transient: nothing to adopt, nothing started.
    asr.server.inject(Fault(503, method="POST", path="/replicationRecoveryPlans/"))
    commit = dataclasses.replace(request, operation=Operation.COMMIT, intent_id="intent-78")
    with pytest.raises(errors.TransientError, match="503"):
        provider.start(commit)
    assert len(asr.vault.jobs) == 1


def finish(provider: AsrFabric, clock: VirtualClock, job_id: str) -> None:
    for _ in range(600):
        if not provider.get_job(job_id).running:
            return
        clock.advance(5)
    raise AssertionError(f"job {job_id} still runs")


def test_a_retired_plans_recovery_plan_is_deleted_by_the_drctl_that_wrote_it_only(
    asr: harness.AsrUnderTest, clock: VirtualClock, tmp_path: Path
) -> None:
    """Deleted once its job has ended; an operator's plan, another drctl's, never."""
    arm = arm_of(asr)
    arm.write_plan("drctl-ops", plan_body(asr, GROUPS[:1]), create=True)  # an operator's own
    arm.close()
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    provider = asr.open(data_dir=ours)
    provider.observe()
    job_id = provider.start(
        Request("sql01", Operation.PLANNED_FAILOVER, "rtm", plan="shop", plan_groups=GROUPS)
    )
    assert "drctl-shop" in (ours / "recovery-plans.json").read_text()
    (waits,) = provider.retire_plans(keep=())
    assert (waits.name, waits.deleted) == ("drctl-shop", False)
    assert f"its job {job_id} runs: deleted once it ends" in waits.reason
    assert asr.server.count("DELETE") == 0  # not even tried while the job runs
    finish(provider, clock, job_id)
    assert provider.retire_plans(keep=("shop",)) == []
    assert provider.retire_plans(keep=()) == []  # tried again 30 s after, not at every pass
    clock.advance(30)
    # Another drctl on the same vault, with its own state dir, deletes nothing.
    assert asr.open(data_dir=theirs).retire_plans(keep=()) == []
    # The drctl that wrote it, started again on its state dir, deletes it, and only it.
    (done,) = asr.open(data_dir=ours).retire_plans(keep=())
    assert (done.plan, done.name, done.deleted) == ("shop", "drctl-shop", True)
    assert asr.vault.deleted == ["drctl-shop"]
    assert sorted(asr.vault.plans) == ["drctl-ops"]
    assert asr.open(data_dir=ours).retire_plans(keep=()) == []


def test_a_recovery_plan_drctl_did_not_write_is_used_as_it_is_or_not_at_all(
    asr: harness.AsrUnderTest, tmp_path: Path
) -> None:
    arm = arm_of(asr)
    arm.write_plan("drctl-shop", plan_body(asr, GROUPS[:2]), create=True)
    provider = asr.open(data_dir=tmp_path / "state")
    provider.observe()
    request = Request("sql01", Operation.PLANNED_FAILOVER, "rtm", plan="shop", plan_groups=GROUPS)
    with pytest.raises(errors.TerminalError, match="that this drctl did not write"):
        provider.start(request)
    assert (asr.vault.plans["drctl-shop"].writes, asr.vault.jobs) == (1, {})
    # The same groups (a standby drctl taking over its peer's plan): used, not rewritten.
    arm.write_plan("drctl-shop", plan_body(asr, GROUPS), create=False)
    arm.close()
    provider.start(request)
    assert asr.vault.plans["drctl-shop"].writes == 2
    assert provider.retire_plans(keep=()) == []


def test_a_plan_failover_ships_the_lag_of_its_vms_first(
    asr: harness.AsrUnderTest, clock: VirtualClock
) -> None:
    """Rule 5: a planned failover of a lagging plan takes longer, and is planned."""
    asr.vault.by_friendly("app02").lag = 600.0
    clock.advance(900)  # app02's replica is 600 s behind, less one replication interval
    provider = asr.open()
    provider.observe()
    job_id = provider.start(
        Request("sql01", Operation.PLANNED_FAILOVER, "rtm", plan="shop", plan_groups=GROUPS)
    )
    job = asr.vault.jobs[job_id]
    assert job.due - job.started >= 600 - TIMINGS.replication_interval
    finish(provider, clock, job_id)
    assert asr.vault.by_friendly("app02").state.last_failover is FailoverKind.PLANNED


def test_a_plan_failover_is_each_vms_last_failover_and_read_once(
    asr: harness.AsrUnderTest, clock: VirtualClock
) -> None:
    """After the plan's failover each VM names that job (for `commitApproved: <job>`), also
    for a drctl started again, and observing does not list the jobs at every pass."""
    provider = asr.open()
    provider.observe()
    job_id = provider.start(
        Request("sql01", Operation.PLANNED_FAILOVER, "rtm", plan="shop", plan_groups=GROUPS)
    )
    finish(provider, clock, job_id)
    for fresh in (provider, asr.open()):
        seen = fresh.observe()
        assert {seen.vms[n].last_failover_job for g in GROUPS for n in g} == {job_id}
        listed = asr.server.count("GET", "/replicationJobs?")
        fresh.observe()
        assert asr.server.count("GET", "/replicationJobs?") == listed
