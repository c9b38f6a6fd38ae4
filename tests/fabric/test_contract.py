"""The Provider contract: what the executor and the planner count on from every fabric.

Each case runs once per provider in `fabrics.FACTORIES` (the `make_fabric`
fixture), on a virtual clock, and reaches the fabric only through the
Provider Protocol and the test `Controls`. A new provider passes this file
before anything drives it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import fabrics
import pytest
from builders import TIMINGS

from reconciler import errors
from reconciler.core.state import Job, JobState, Operation, ProtectionState
from reconciler.fabric import base
from reconciler.fabric.sim.inventory import Inventory, InventoryVM
from reconciler.kits.clock import VirtualClock

OP = Operation
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
INVENTORY = Inventory(
    ("ams", "rtm"),
    (
        InventoryVM("web01", "ams", ("ams", "rtm")),
        InventoryVM("db01", "ams", ("ams", "rtm")),
        InventoryVM("batch", "rtm", None),
    ),
    TIMINGS,
)


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(T0)


@pytest.fixture
def fut(
    make_fabric: fabrics.Factory, tmp_path: Path, clock: VirtualClock
) -> Iterator[fabrics.FabricUnderTest]:
    with make_fabric(tmp_path, clock, INVENTORY) as built:
        yield built


def quick(fut: fabrics.FabricUnderTest, vm: str, intent_id: str | None = None) -> base.Request:
    """A short operation `vm` allows on every fabric: StopVM at its active site where the
    fabric can stop VMs, else a test failover to its peer (ASR cannot stop a VM)."""
    seen = fut.provider.observe()
    active = seen.vms[vm].active_site
    if seen.can_stop_vms:
        return base.Request(vm, OP.STOP_VM, active, intent_id=intent_id)
    peer = next(site for site in seen.sites if site != active)
    return base.Request(vm, OP.TEST_FAILOVER, peer, intent_id=intent_id)


def reported(fut: fabrics.FabricUnderTest) -> set[str]:
    """The inventory's VMs the fabric reports: every one, or only the replicated ones where
    an unprotected VM is no protected item (ASR)."""
    return {vm.name for vm in INVENTORY.vms if vm.replication or fut.reports_unprotected}


def wait_for(provider: base.Provider, clock: VirtualClock, job_id: str) -> Job:
    """Poll the job to a terminal state, as the executor does; a minute at most."""
    for _ in range(60):
        job = provider.get_job(job_id)
        if not job.running:
            return job
        clock.advance(1)
    raise AssertionError(f"job {job_id} still runs after 60 s")


def test_a_job_is_accepted_then_fails_later_leaving_the_vm_as_it_was(
    fut: fabrics.FabricUnderTest, clock: VirtualClock
) -> None:
    before = fut.provider.observe().vms["web01"]
    fut.controls.inject_failure("web01", OP.PLANNED_FAILOVER)
    job_id = fut.provider.start(base.Request("web01", OP.PLANNED_FAILOVER, "rtm"))
    accepted = fut.provider.get_job(job_id)
    assert (accepted.vm, accepted.operation, accepted.state) == (
        "web01",
        OP.PLANNED_FAILOVER,
        JobState.RUNNING,
    )
    assert fut.provider.observe().vms["web01"].job == accepted
    failed = wait_for(fut.provider, clock, job_id)
    assert failed.state is JobState.FAILED
    assert failed.error
    after = fut.provider.observe().vms["web01"]
    assert after.job is None
    assert (after.active_site, after.running, after.protection_state) == (
        before.active_site,
        before.running,
        before.protection_state,
    )
    assert after.replication_text == before.replication_text == "ams->rtm"
    assert after.allowed_operations == before.allowed_operations


def test_a_second_job_on_a_busy_vm_is_rejected(
    fut: fabrics.FabricUnderTest, clock: VirtualClock
) -> None:
    first = fut.provider.start(base.Request("web01", OP.PLANNED_FAILOVER, "rtm"))
    busy = fut.provider.observe().vms["web01"]
    assert busy.job is not None
    assert busy.job.id == first
    for op, target in [(OP.PLANNED_FAILOVER, "rtm"), (OP.TEST_FAILOVER, "rtm")]:
        with pytest.raises(errors.RejectedError):
            fut.provider.start(base.Request("web01", op, target))
    assert [j.id for j in fut.provider.list_jobs()] == [first]
    assert wait_for(fut.provider, clock, first).state is JobState.SUCCEEDED


def test_a_fabric_that_keeps_intent_ids_reports_each_jobs_and_one_that_does_not_none(
    fut: fabrics.FabricUnderTest, clock: VirtualClock
) -> None:
    """The executor adopts an interrupted call's job by its intent id alone where it is kept."""
    ours = fut.provider.start(quick(fut, "web01", intent_id="intent-1"))
    theirs = fut.controls.start_by_hand(quick(fut, "db01"))
    kept = "intent-1" if fut.provider.keeps_intent_ids else None
    if not fut.foreign_jobs_seen:
        # No service-side jobs (Hyper-V): the operator's cmdlet leaves none; ours is drctl's.
        seen = fut.provider.observe()
        assert [(j.id, j.intent_id) for j in seen.jobs] == [(ours, kept)]
        assert seen.vms["web01"].job == seen.jobs[0]
        wait_for(fut.provider, clock, ours)
        assert fut.provider.get_job(ours).intent_id == kept
        assert [(j.id, j.intent_id) for j in fut.reopen().list_jobs()] == [(ours, kept)]
        return

    def intents(jobs: list[Job] | tuple[Job, ...]) -> list[tuple[str, str | None]]:
        # A job started outside drctl reports no intent id, or (ASR) its caller's own.
        return [
            (j.id, None if j.id == theirs and not fut.foreign_intents_none else j.intent_id)
            for j in jobs
        ]

    seen = fut.provider.observe()
    assert intents(seen.jobs) == [(ours, kept), (theirs, None)]
    assert seen.jobs[1].intent_id != "intent-1"
    assert seen.vms["web01"].job == seen.jobs[0]
    wait_for(fut.provider, clock, ours)
    assert fut.provider.get_job(ours).intent_id == kept
    assert intents(fut.reopen().list_jobs()) == [(ours, kept), (theirs, None)]


@pytest.mark.parametrize("job_id", ["job-999999", "no such job", ""])
def test_an_unknown_job_id_is_terminal(fut: fabrics.FabricUnderTest, job_id: str) -> None:
    fut.provider.start(quick(fut, "web01"))
    with pytest.raises(errors.TerminalError):
        fut.provider.get_job(job_id)


def test_list_jobs_is_in_start_order_and_survives_a_reopen(
    fut: fabrics.FabricUnderTest, clock: VirtualClock
) -> None:
    started = [fut.provider.start(quick(fut, "db01"))]
    clock.advance(0.5)
    started.append(fut.provider.start(base.Request("web01", OP.PLANNED_FAILOVER, "rtm")))
    clock.advance(0.5)
    if "batch" in reported(fut):
        started.append(fut.provider.start(base.Request("batch", OP.ENABLE_REPLICATION, "ams")))
    listed = fut.provider.list_jobs()
    assert [j.id for j in listed] == started
    assert [j.started_at for j in listed] == sorted(j.started_at for j in listed)
    for job_id in started:
        wait_for(fut.provider, clock, job_id)
    finished = fut.provider.list_jobs()
    reopened = fut.reopen()
    assert reopened.list_jobs() == finished
    assert [(j.id, j.state) for j in finished] == [(i, JobState.SUCCEEDED) for i in started]
    assert reopened.get_job(started[1]) == finished[1]


@pytest.mark.parametrize("call", ["observe", "start", "get_job", "list_jobs"])
@pytest.mark.parametrize("retry_after", [7.0, None])
def test_throttling_says_when_to_retry_and_changes_nothing(
    fut: fabrics.FabricUnderTest, call: str, retry_after: float | None
) -> None:
    job_id = fut.provider.start(quick(fut, "db01"))
    another = quick(fut, "web01")
    before = fut.provider.observe()
    fut.controls.inject_call_error("*", "throttled", retry_after=retry_after)
    calls = {
        "observe": fut.provider.observe,
        "start": lambda: fut.provider.start(another),
        "get_job": lambda: fut.provider.get_job(job_id),
        "list_jobs": fut.provider.list_jobs,
    }
    if call == "list_jobs" and fut.jobs_listed_by_drctl:
        # drctl's own job list (its journal) asks no fabric: nothing to throttle.
        assert [j.id for j in fut.provider.list_jobs()] == [job_id]
        fut.controls.inject_call_error("*", "throttled", times=0)
        return
    with pytest.raises(errors.ThrottledError) as throttled:
        calls[call]()
    # 429 with or without Retry-After: the executor needs to tell the two apart.
    assert throttled.value.retry_after == (retry_after if fut.retry_after_kept else None)
    assert [j.id for j in fut.provider.list_jobs()] == [job_id]
    assert fut.provider.observe().vms == before.vms


def test_observe_reports_every_vm_with_the_operations_it_allows(
    make_fabric: fabrics.Factory, tmp_path: Path, clock: VirtualClock
) -> None:
    """Allowed means the fabric accepts it: the planner decides from this set alone."""
    with make_fabric(tmp_path / "seen", clock, INVENTORY) as fut:
        observed = fut.provider.observe()
        assert set(observed.vms) == reported(fut)
    assert {name: s.connected for name, s in observed.sites.items()} == {"ams": True, "rtm": True}
    for vm in (vm for vm in INVENTORY.vms if vm.name in observed.vms):
        seen = observed.vms[vm.name]
        assert seen.active_site == vm.active_site
        assert seen.job is None
        if vm.replication is None:
            assert seen.protection_state is ProtectionState.UNPROTECTED
            assert OP.ENABLE_REPLICATION in seen.allowed_operations
        else:
            assert seen.protection_state is ProtectionState.PROTECTED
            assert OP.PLANNED_FAILOVER in seen.allowed_operations
        assert OP.COMMIT not in seen.allowed_operations
    for number, (name, op) in enumerate(
        (vm, op) for vm, seen in sorted(observed.vms.items()) for op in sorted(Operation)
    ):
        # A fresh fabric per operation: an accepted job makes the VM busy.
        with make_fabric(tmp_path / str(number), clock, INVENTORY) as fut:
            if op in observed.vms[name].allowed_operations:
                fut.provider.start(base.Request(name, op))
            else:
                with pytest.raises(errors.RejectedError):
                    fut.provider.start(base.Request(name, op))
                assert fut.provider.list_jobs() == []


def test_a_disconnected_site_is_observed_state_not_an_error(
    fut: fabrics.FabricUnderTest, clock: VirtualClock
) -> None:
    if "rtm" in fut.always_connected:
        pytest.skip("rtm is Azure: it is never disconnected while its vault answers")
    job_id = fut.provider.start(quick(fut, "db01"))
    assert fut.controls.site_down("rtm")
    clock.advance(5)
    observed = fut.provider.observe()
    assert not observed.sites["rtm"].connected
    assert observed.sites["ams"].connected
    assert set(observed.vms) == reported(fut)
    # What needs the lost site is not allowed, and the fabric says so when asked.
    assert OP.PLANNED_FAILOVER not in observed.vms["web01"].allowed_operations
    assert OP.UNPLANNED_FAILOVER not in observed.vms["web01"].allowed_operations
    with pytest.raises(errors.RejectedError):
        fut.provider.start(base.Request("web01", OP.PLANNED_FAILOVER, "rtm"))
    assert fut.provider.get_job(job_id).id == job_id
    assert [j.id for j in fut.provider.list_jobs()] == [job_id]
