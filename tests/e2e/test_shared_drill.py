"""A drill end to end on every provider (sim, ASR, Hyper-V): `drctl apply` runs spec.drill.

A commit of spec.drill on the 3-tier plan; `drctl apply` runs the drill to its end
(it counts a drill under way as not converged, so it waits through keepMinutes, as
an operator who applies a drill expects: the exit code says how the drill ended).
What is asserted is the fabric's own record of what drctl started: only test
operations; on ASR one plan-level TestFailover and one TestFailoverCleanup of the
recovery plan drctl-finance (it boots the test copies by group itself), on the
simulator and Hyper-V one per VM in group order, then the cleanups in reverse group
order. Production stays active at ams, replicating, its last sync advancing; `drctl
drill report` says the drill passed, with each VM's times.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from e2e import providers
from e2e.harness import three_tier
from fabric.hyperv import harness as hv_harness

from reconciler.core.state import Operation

pytestmark = pytest.mark.e2e

GROUPS = (("sql01",), ("app01", "app02"), ("web01", "web02"))
TESTS = {str(Operation.TEST_FAILOVER), str(Operation.TEST_FAILOVER_CLEANUP)}
KEEP_MINUTES = 0.05  # 3 s


@pytest.fixture(params=sorted(providers.DRIVERS))
def driver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[providers.Driver]:
    built = providers.DRIVERS[request.param](tmp_path, providers.TIMINGS)
    built.want(three_tier("ams"))
    try:
        yield built
    finally:
        built.close()


def at(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def rank(vm: str) -> int:
    return next(i for i, group in enumerate(GROUPS) if vm in group)


def test_a_committed_drill_runs_to_passed_with_only_test_operations(
    driver: providers.Driver,
) -> None:
    assert driver.converged_at("ams")
    before = {vm["name"]: at(vm["observed"]["lastSync"]) for vm in driver.status()["vms"]}
    drill = f"  drill: {{id: 2026-q4, keepMinutes: {KEEP_MINUTES}}}\n  groups:\n"
    driver.want(three_tier("ams").replace("  groups:\n", drill))
    done = driver.apply("--timeout", driver.seconds(30))
    assert done.returncode == 0, done.stdout + done.stderr

    started = driver.started()
    assert {op for _, op in started} <= TESTS  # no production operation at all
    if isinstance(driver, providers.HyperVDriver):
        # Every cmdlet a host ran: the test VM made, booted and removed on the replica.
        sent = {(c.host, c.command, c.vm.removesuffix(" - Test")) for c in driver.hosts.calls}
        rtm = hv_harness.host_of("rtm")
        assert sent == {
            (rtm, command, vm)
            for vm in providers.VMS
            for command in ("test", "start", "stop-failover")
        }
    if isinstance(driver, providers.AsrDriver):
        # Through the recovery plan, once each; it booted the copies group by group.
        assert started == [
            ("drctl-finance", str(Operation.TEST_FAILOVER)),
            ("drctl-finance", str(Operation.TEST_FAILOVER_CLEANUP)),
        ]
        booted = [vm for _, step, vm in driver.vault.events if step == "test-boot"]
        assert [rank(vm) for vm in booted] == sorted(rank(vm) for vm in booted)
        assert len(booted) == len(providers.VMS)
        [post] = [
            s for s in driver.server.seen("POST") if s.path.split("?")[0].endswith("testFailover")
        ]
        assert post.body["properties"]["networkType"] == "NoNetworkAttachAsInput"  # isolated
    else:
        tested = ordered(driver)
        ups = [vm for vm, op in tested if op == "up"]
        downs = [vm for vm, op in tested if op == "down"]
        assert sorted(ups) == sorted(downs) == sorted(providers.VMS)  # once each
        assert [rank(vm) for vm in ups] == sorted(rank(vm) for vm in ups)
        assert [rank(vm) for vm in downs] == sorted((rank(vm) for vm in downs), reverse=True)
        assert max(i for i, (_, op) in enumerate(tested) if op == "up") < min(
            i for i, (_, op) in enumerate(tested) if op == "down"
        )

    status = driver.status()
    assert status["converged"] is True
    for vm in status["vms"]:  # production never moved, and replication went on
        seen = vm["observed"]
        assert (seen["activeSite"], seen["replicationState"]) == ("ams", "Replicating")
        assert at(seen["lastSync"]) > before[vm["name"]]
    [last] = [d["last"] for d in status["drills"] if d["plan"] == "finance"]
    assert last["result"] == "passed"

    out = driver.drctl("drill", "report", "finance", "--output", "json")
    assert out.returncode == 0, out.stdout + out.stderr
    [report] = json.loads(out.stdout)["drills"]
    assert (report["id"], report["result"]) == ("2026-q4", "passed")
    assert report["durationSeconds"] >= KEEP_MINUTES * 60
    assert report["testRtoSeconds"] > 0
    vms = {t["vm"]: t for t in report["vms"]}
    assert set(vms) == set(providers.VMS)
    for times in vms.values():
        assert times["testFailoverResult"] == times["cleanupResult"] == "succeeded"
        assert at(times["testFailoverStartedAt"]) <= at(times["testCopyRanAt"])
        assert at(times["testCopyRanAt"]) <= at(times["cleanedUpAt"])


def ordered(driver: providers.Driver) -> list[tuple[str, str]]:
    """Each VM's test copy going up and down, in the order the fabric saw drctl ask it."""
    if isinstance(driver, providers.HyperVDriver):
        rtm = hv_harness.host_of("rtm")
        steps = {"test": "up", "stop-failover": "down"}
        return [
            (c.vm, steps[c.command])
            for c in driver.hosts.calls
            if c.command in steps and c.host == rtm and c.refused is None
        ]
    steps = {str(Operation.TEST_FAILOVER): "up", str(Operation.TEST_FAILOVER_CLEANUP): "down"}
    return [(vm, steps[op]) for vm, op in driver.started()]
