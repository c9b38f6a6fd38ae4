"""A recovery plan's test failover and cleanup on the test server, through the real SDK.

The plan's testFailover (ReplicationRecoveryPlans_TestFailover.json) runs one
job that boots the items' test copies group by group, each item's
testFailoverState then WaitingForCompletion; it is refused while a test
failover of one of its items runs or is not cleaned up, or an item is not
protected. Its cleanup removes every copy in reverse group order and is
refused when there is none. Production never changes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fabric.asr import harness
from fabric.asr.test_recovery_plans import GROUPS, INVENTORY, T0, arm_of, plan_body, run

from reconciler import errors
from reconciler.core import state
from reconciler.core.state import JobState, Operation
from reconciler.fabric.asr.settings import ItemRef
from reconciler.fabric.base import Request
from reconciler.kits.clock import VirtualClock

VNET = (
    "/subscriptions/c183865e-6077-46f2-a3b1-deb0f4f4650a/resourceGroups/dr/providers/"
    "Microsoft.Network/virtualNetworks/drill"
)
NAMES = [n for g in GROUPS for n in g]
ISOLATED = {
    "properties": {
        "failoverDirection": "PrimaryToRecovery",
        "networkType": "NoNetworkAttachAsInput",
    }
}


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


def item_props(asr: harness.AsrUnderTest, vm: str) -> dict[str, Any]:
    item = asr.vault.by_friendly(vm)
    site = asr.vault.sites[item.primary]
    arm = arm_of(asr)
    try:
        found: dict[str, Any] = arm.get_item(ItemRef(site.fabric, site.container, item.name))
    finally:
        arm.close()
    return found.get("properties") or found


def test_a_plan_test_failover_boots_the_test_copies_by_group_and_leaves_production(
    asr: harness.AsrUnderTest, clock: VirtualClock
) -> None:
    arm = arm_of(asr)
    try:
        arm.write_plan("drctl-shop", plan_body(asr, GROUPS), create=True)
        before = {n: item_props(asr, n) for n in NAMES}
        body = {
            "properties": {
                "failoverDirection": "PrimaryToRecovery",
                "networkType": "VmNetworkAsInput",
                "networkId": VNET,
            }
        }
        job = run(arm, clock, arm.post_plan_action("drctl-shop", "test_failover", body, "i-1"))
        assert job["properties"]["state"] == "Succeeded"
        assert job["properties"]["scenarioName"] == "TestFailover"
        booted = [(at, vm) for at, step, vm in asr.vault.events if step == "test-boot"]
        assert [vm for _, vm in booted] == NAMES
        # Group after group: app's copies boot after sql01's, web01's after app's.
        times = {vm: at for at, vm in booted}
        assert times["sql01"] < times["app01"] == times["app02"] < times["web01"]
        after = {n: item_props(asr, n) for n in NAMES}
        for n in NAMES:
            assert after[n]["testFailoverState"] == "WaitingForCompletion"
            assert "TestFailoverCleanup" in after[n]["allowedOperations"]
            assert asr.vault.by_friendly(n).test_network == VNET
            for key in ("activeLocation", "protectionState", "replicationHealth"):
                assert after[n][key] == before[n][key], key
            assert (
                after[n]["providerSpecificDetails"]["lastReplicatedTime"]
                > before[n]["providerSpecificDetails"]["lastReplicatedTime"]
            )
        plan = arm.get_plan("drctl-shop") or {}
        assert plan["properties"]["allowedOperations"] == ["TestFailoverCleanup"]
        # Once more, before the cleanup: refused, and nothing starts.
        with pytest.raises(errors.RejectedError, match=r"\(409\).*not cleaned up"):
            arm.post_plan_action("drctl-shop", "test_failover", ISOLATED, None)
        cleanup = {"properties": {"comments": "drctl: drill 2026-q4"}}
        done = run(
            arm, clock, arm.post_plan_action("drctl-shop", "test_failover_cleanup", cleanup, None)
        )
        assert done["properties"]["state"] == "Succeeded"
        cleaned = [vm for _, step, vm in asr.vault.events if step == "test-cleanup"]
        assert cleaned == ["web01", "app01", "app02", "sql01"]  # reverse group order
        assert {item_props(asr, n)["testFailoverState"] for n in NAMES} == {"None"}
        # Nothing left to clean up: refused.
        with pytest.raises(errors.RejectedError, match=r"\(400\).*no test failover"):
            arm.post_plan_action("drctl-shop", "test_failover_cleanup", cleanup, None)
    finally:
        arm.close()


def test_a_plan_test_failover_is_refused_while_an_items_own_runs_or_one_is_not_protected(
    asr: harness.AsrUnderTest, clock: VirtualClock
) -> None:
    arm = arm_of(asr)
    try:
        arm.write_plan("drctl-shop", plan_body(asr, GROUPS), create=True)
        item = asr.vault.by_friendly("app02")
        ref = ItemRef("vmm-ams", asr.vault.sites["ams"].container, item.name)
        mine = arm.post_action(ref, "test_failover", ISOLATED, None)
        with pytest.raises(
            errors.RejectedError, match=r"\(409\).*in progress on its protected item app02"
        ):
            arm.post_plan_action("drctl-shop", "test_failover", ISOLATED, None)
        run(arm, clock, mine)
        with pytest.raises(errors.RejectedError, match=r"\(409\).*app02 is not cleaned up"):
            arm.post_plan_action("drctl-shop", "test_failover", ISOLATED, None)
        cleanup = {"properties": {"comments": "by hand"}}
        run(arm, clock, arm.post_action(ref, "test_failover_cleanup", cleanup, None))
        # web01 failed over by hand: not protected, so the plan's test failover is refused.
        asr.controls.start_by_hand(Request("web01", Operation.PLANNED_FAILOVER, "rtm"))
        clock.advance(60)
        with pytest.raises(errors.RejectedError, match=r"\(400\).*web01"):
            arm.post_plan_action("drctl-shop", "test_failover", ISOLATED, None)
        bad = {
            "properties": {
                "failoverDirection": "PrimaryToRecovery",
                "networkType": "VmNetworkAsInput",
            }
        }
        with pytest.raises(errors.RejectedError, match="networkId"):
            arm.post_plan_action("drctl-shop", "test_failover", bad, None)
        assert not [j for j in asr.vault.jobs.values() if j.plan]  # nothing started
    finally:
        arm.close()


def test_a_plan_test_failover_failing_at_a_group_leaves_the_copies_before_it(
    asr: harness.AsrUnderTest, clock: VirtualClock
) -> None:
    arm = arm_of(asr)
    try:
        arm.write_plan("drctl-shop", plan_body(asr, GROUPS), create=True)
        asr.vault.failures[("app01", Operation.TEST_FAILOVER)] = [False]
        job = run(arm, clock, arm.post_plan_action("drctl-shop", "test_failover", ISOLATED, None))
        assert job["properties"]["state"] == "Failed"
        assert "app01" in job["properties"]["errors"][0]["serviceErrorDetails"]["message"]
        up = {
            n
            for n in NAMES
            if asr.vault.by_friendly(n).state.test_failover is state.TestFailoverState.RUNNING
        }
        assert up == {"sql01"}
        cleanup = {"properties": {"comments": "drctl"}}
        done = run(
            arm, clock, arm.post_plan_action("drctl-shop", "test_failover_cleanup", cleanup, None)
        )
        assert done["properties"]["state"] == "Succeeded"
        assert [vm for _, step, vm in asr.vault.events if step == "test-cleanup"] == ["sql01"]
    finally:
        arm.close()


def test_the_provider_drills_a_whole_plan_through_its_recovery_plan(
    asr: harness.AsrUnderTest, clock: VirtualClock
) -> None:
    provider = asr.open()
    request = Request(
        "sql01",
        Operation.TEST_FAILOVER,
        "rtm",
        intent_id="intent-9",
        plan="shop",
        plan_groups=GROUPS,
        network=VNET,
    )
    job_id = provider.start(request)
    [post] = asr.server.seen("POST")
    assert post.path.split("?")[0].endswith("/replicationRecoveryPlans/drctl-shop/testFailover")
    observed = provider.observe()
    jobs = [observed.vms[n].job for n in NAMES]
    assert [j.id if j is not None else None for j in jobs] == [job_id] * len(NAMES)
    assert harness.finish(provider, clock, job_id).state is JobState.SUCCEEDED
    observed = provider.observe()
    assert {observed.vms[n].test_failover for n in NAMES} == {state.TestFailoverState.RUNNING}
    assert {asr.vault.by_friendly(n).test_network for n in NAMES} == {VNET}
    cleanup = Request(
        "sql01", Operation.TEST_FAILOVER_CLEANUP, "rtm", plan="shop", plan_groups=GROUPS
    )
    assert harness.finish(provider, clock, provider.start(cleanup)).state is JobState.SUCCEEDED
    observed = provider.observe()
    assert {observed.vms[n].test_failover for n in NAMES} == {state.TestFailoverState.NONE}
    assert {observed.vms[n].active_site for n in NAMES} == {"ams"}
    assert asr.server.count("POST", "/replicationRecoveryPlans/drctl-shop/testFailoverCleanup") == 1
