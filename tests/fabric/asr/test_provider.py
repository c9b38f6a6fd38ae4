"""The ASR provider through the real SDK and azure-identity against the local ARM test server.

What the provider contract does not cover: paging, ASR's words read back,
the request bodies (direction, sourceSiteOperations), one POST per action
even when its answer is lost, ARM's throttling and pacing, the token's
lifecycle and TLS.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from builders import TIMINGS
from fabric.asr import harness
from fabric.asr.server import Fault

from reconciler import errors
from reconciler.core.state import (
    JobState,
    Operation,
    Power,
    ProtectionState,
    ReplicationState,
)
from reconciler.fabric import base
from reconciler.fabric.asr.settings import Rates
from reconciler.fabric.sim.inventory import Inventory, InventoryVM
from reconciler.kits.clock import VirtualClock

OP = Operation
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
NAMES = ("sql01", "app01", "app02", "web01", "web02")
INVENTORY = Inventory(
    ("ams", "rtm"), tuple(InventoryVM(n, "ams", ("ams", "rtm")) for n in NAMES), TIMINGS
)


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(T0)


@pytest.fixture
def asr(tmp_path: Path, clock: VirtualClock) -> Iterator[harness.AsrUnderTest]:
    built = harness.open_fabric(tmp_path, clock, INVENTORY, page_size=2)
    try:
        yield built
    finally:
        built.close()


finish = harness.finish


def test_observe_follows_every_page_and_reads_asr_in_its_own_words(
    asr: harness.AsrUnderTest,
) -> None:
    seen = asr.open().observe()
    assert sorted(seen.vms) == sorted(NAMES)
    # Five items in pages of two: three requests, each page followed by its nextLink.
    assert asr.server.count("GET", "/replicationProtectedItems?") == 3
    assert seen.can_stop_vms is False
    assert {s.name: s.connected for s in seen.sites.values()} == {"ams": True, "rtm": True}
    sql = seen.vms["sql01"]
    assert (sql.active_site, sql.protection_state, sql.replication_text) == (
        "ams",
        ProtectionState.PROTECTED,
        "ams->rtm",
    )
    assert (sql.raw_state, sql.raw_state_description, sql.failover_health) == (
        "Protected",
        "Protected",
        "Normal",
    )
    # ASR reports no power: the active copy may run; the replica it feeds cannot.
    assert sql.power_by_site() == {"ams": Power.UNKNOWN, "rtm": Power.OFF}
    assert sql.allowed_operations == {OP.PLANNED_FAILOVER, OP.UNPLANNED_FAILOVER, OP.TEST_FAILOVER}
    assert sql.vm_id == asr.vault.by_friendly("sql01").name


def test_a_site_is_connected_while_its_vmm_server_is(asr: harness.AsrUnderTest) -> None:
    provider = asr.open()
    asr.controls.site_down("rtm")
    seen = provider.observe()
    assert {s.name: s.connected for s in seen.sites.values()} == {"ams": True, "rtm": False}
    assert OP.PLANNED_FAILOVER not in seen.vms["sql01"].allowed_operations


def test_a_500_after_the_job_started_starts_no_second_job(
    asr: harness.AsrUnderTest, clock: VirtualClock
) -> None:
    """The answer is lost after ASR started the job: the provider adopts it, never re-POSTs."""
    provider = asr.open()
    provider.observe()
    asr.server.inject(Fault(500, method="POST", after_start=True))
    job_id = provider.start(base.Request("sql01", OP.PLANNED_FAILOVER, "rtm", intent_id="i-42"))
    assert [j.name for j in asr.vault.jobs.values()] == [job_id]
    assert [(r.status, r.client_request_id) for r in asr.server.seen("POST")] == [(500, "i-42")]
    assert finish(provider, clock, job_id).state is JobState.SUCCEEDED
    assert provider.observe().vms["sql01"].active_site == "rtm"


def test_an_answer_lost_before_the_job_started_is_transient_and_starts_nothing(
    asr: harness.AsrUnderTest,
) -> None:
    provider = asr.open()
    for status in (500, 503):
        asr.server.inject(Fault(status, method="POST"))
        with pytest.raises(errors.TransientError, match=f"\\({status}\\)"):
            provider.start(base.Request("sql01", OP.PLANNED_FAILOVER, "rtm"))
    assert asr.vault.jobs == {}
    # One POST each: the SDK retries nothing.
    assert asr.server.count("POST") == 2


@pytest.mark.parametrize("retry_after", ["17", None])
def test_a_throttled_action_says_when_to_retry_and_is_sent_once(
    asr: harness.AsrUnderTest, retry_after: str | None
) -> None:
    provider = asr.open()
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    asr.server.inject(Fault(429, method="POST", headers=headers))
    with pytest.raises(errors.ThrottledError) as throttled:
        provider.start(base.Request("sql01", OP.PLANNED_FAILOVER, "rtm"))
    assert throttled.value.retry_after == (None if retry_after is None else 17.0)
    assert (asr.server.count("POST"), asr.vault.jobs) == (1, {})


def test_a_busy_vm_is_refused_before_anything_is_sent(asr: harness.AsrUnderTest) -> None:
    provider = asr.open()
    provider.start(base.Request("sql01", OP.TEST_FAILOVER, "rtm"))
    with pytest.raises(errors.RejectedError, match="is running on this VM"):
        provider.start(base.Request("sql01", OP.PLANNED_FAILOVER, "rtm"))
    assert asr.server.count("POST") == 1


@pytest.mark.parametrize(
    ("op", "says"),
    [
        (OP.STOP_VM, "ASR cannot stop or start a VM"),
        (OP.START_VM, "ASR cannot stop or start a VM"),
        (OP.CANCEL_FAILOVER, "drctl never calls it"),
        (OP.COMPLETE_MIGRATION, "drctl never calls it"),
        (OP.DISABLE_REPLICATION, "this provider does not offer it"),
    ],
)
def test_what_asr_cannot_do_or_drctl_never_does_is_refused_without_a_request(
    asr: harness.AsrUnderTest, op: Operation, says: str
) -> None:
    provider = asr.open()
    with pytest.raises(errors.RejectedError, match=says):
        provider.start(base.Request("sql01", op, "ams"))
    assert asr.server.requests == []


def test_a_failover_and_the_failback_send_the_observed_direction(
    asr: harness.AsrUnderTest, clock: VirtualClock
) -> None:
    """The whole round trip: failover, commit, reprotect, failback, commit, reprotect."""
    provider = asr.open()
    steps = [
        (OP.PLANNED_FAILOVER, "PrimaryToRecovery"),
        (OP.COMMIT, None),
        (OP.REVERSE_REPLICATE, "RecoveryToPrimary"),
        (OP.PLANNED_FAILOVER, "RecoveryToPrimary"),
        (OP.COMMIT, None),
        (OP.REVERSE_REPLICATE, "PrimaryToRecovery"),
    ]
    for op, _direction in steps:
        job_id = provider.start(base.Request("sql01", op))
        assert finish(provider, clock, job_id).state is JobState.SUCCEEDED
    sent = [
        None if r.body is None else r.body["properties"].get("failoverDirection")
        for r in asr.server.seen("POST")
    ]
    assert sent == [direction for _op, direction in steps]
    back = provider.observe().vms["sql01"]
    assert (back.active_site, back.replication_text, back.protection_state) == (
        "ams",
        "ams->rtm",
        ProtectionState.PROTECTED,
    )


@pytest.mark.parametrize(("source_down", "sent"), [(False, "Required"), (True, "NotRequired")])
def test_an_unplanned_failover_shuts_the_source_down_unless_it_is_known_unreachable(
    asr: harness.AsrUnderTest, clock: VirtualClock, source_down: bool, sent: str
) -> None:
    provider = asr.open()
    if source_down:
        asr.controls.site_down("ams")
    provider.observe()
    request = base.Request("sql01", OP.UNPLANNED_FAILOVER, "rtm", shutdown_source=True)
    finish(provider, clock, provider.start(request))
    (post,) = asr.server.seen("POST")
    assert post.body["properties"]["sourceSiteOperations"] == sent
    item = asr.vault.by_friendly("sql01")
    # The old copy stopped where ASR could reach it; else it may still run (split brain).
    assert item.state.running == ({"rtm", "ams"} if source_down else {"rtm"})
    seen = provider.observe().vms["sql01"]
    assert seen.protection_state is ProtectionState.COMMIT_PENDING
    assert seen.power_by_site() == {"ams": Power.UNKNOWN, "rtm": Power.UNKNOWN}
    assert seen.recovery_points  # the points to choose from before the commit


def test_jobs_are_polled_no_more_often_than_their_retry_after(
    tmp_path: Path, clock: VirtualClock
) -> None:
    built = harness.open_fabric(tmp_path, clock, INVENTORY, retry_after=30)
    try:
        provider = built.open()
        job_id = provider.start(base.Request("sql01", OP.PLANNED_FAILOVER, "rtm"))
        for _ in range(10):
            assert provider.get_job(job_id).running
            clock.advance(2)
        # One read at once, then nothing until 30 s have passed.
        assert built.server.count("GET", f"/replicationJobs/{job_id}") == 1
        clock.advance(10)
        assert provider.get_job(job_id).state is JobState.SUCCEEDED
        assert built.server.count("GET", f"/replicationJobs/{job_id}") == 2
    finally:
        built.close()


def test_a_suspended_job_waits_for_a_person_and_a_failed_one_says_why(
    asr: harness.AsrUnderTest, clock: VirtualClock
) -> None:
    provider = asr.open()
    asr.controls.suspend_next("sql01", OP.PLANNED_FAILOVER)
    waiting = provider.start(base.Request("sql01", OP.PLANNED_FAILOVER, "rtm"))
    clock.advance(10)
    job = provider.get_job(waiting)
    assert job.state is JobState.SUSPENDED
    assert job.state_description == (
        "Waiting for the manual action 'Confirm the database is consistent' to complete"
    )
    asr.controls.resume(waiting)
    assert finish(provider, clock, waiting).state is JobState.SUCCEEDED

    asr.controls.inject_failure("web01", OP.PLANNED_FAILOVER)
    failed = finish(provider, clock, provider.start(base.Request("web01", OP.PLANNED_FAILOVER)))
    assert failed.state is JobState.FAILED
    assert failed.error == (
        "Planned failover of web01 failed (injected). Possible causes: See the job's tasks. "
        "Recommended action: Fix the cause and retry the operation."
    )
    seen = provider.observe().vms["web01"]
    assert (seen.active_site, seen.replication and seen.replication.state) == (
        "ams",
        ReplicationState.REPLICATING,
    )


def test_a_rotated_token_is_refreshed_once(asr: harness.AsrUnderTest) -> None:
    provider = asr.open()
    provider.observe()
    asked = asr.server.authority.calls()
    asr.server.authority.rotate()  # the token the provider holds is refused from now on
    assert sorted(provider.observe().vms) == sorted(NAMES)
    assert asr.server.authority.calls() == asked + 1
    assert [r.status for r in asr.server.requests].count(401) == 1


def test_a_token_refused_twice_is_terminal_and_names_the_credential(
    asr: harness.AsrUnderTest,
) -> None:
    provider = asr.open()
    provider.observe()
    asr.server.refuse_tokens = True
    with pytest.raises(errors.TerminalError) as refused:
        provider.observe()
    message = str(refused.value)
    assert message.startswith(
        "fabric 'contoso': credential 'cli', AzureCliCredential (the az on PATH: check "
        "`az account show`, or run `az login`) failed to list the recovery services providers: "
        "ARM refused its token twice (401), a fresh one too"
    )
    assert asr.server.authority.current() not in message


def test_a_signed_out_cli_is_terminal_and_says_so(asr: harness.AsrUnderTest) -> None:
    asr.server.authority.sign_out()
    try:
        with pytest.raises(errors.TerminalError, match=r"could not get a token.*az login"):
            asr.open().observe()
    finally:
        asr.server.authority.rotate()
    assert asr.server.requests == []


def test_tls_is_verified_against_requests_ca_bundle(
    asr: harness.AsrUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the server's CA the certificate does not verify; with it in the bundle, it does."""
    with pytest.raises(errors.TerminalError, match=r"did not verify.*REQUESTS_CA_BUNDLE"):
        asr.open(verify=None).observe()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(asr.server.ca_path))
    assert sorted(asr.open(verify=None).observe().vms) == sorted(NAMES)


def test_the_client_side_bucket_keeps_drctl_within_arms_limits(
    tmp_path: Path, clock: VirtualClock
) -> None:
    """ARM refills 25 reads a second after a burst of 250: drctl waits on its own clock
    rather than meet a 429; without the bucket it meets one."""
    built = harness.open_fabric(tmp_path, clock, INVENTORY, page_size=2)
    built.server.arm_limits = True
    try:
        provider = built.open()
        for _ in range(80):  # 4 reads each: the providers, 3 pages of items
            provider.observe()
        assert [r.status for r in built.server.requests].count(429) == 0
        waited = provider.buckets.counts.waited_seconds
        assert (provider.buckets.counts.reads, round(waited, 1)) == (321, 2.8)
        assert (clock.now() - T0).total_seconds() == pytest.approx(waited)

        unbounded = dataclasses.replace(built.settings, rates=Rates(1e6, 1e6, 1e6, 1e6))
        built.settings = unbounded
        greedy = built.open()
        with pytest.raises(errors.ThrottledError, match="429"):
            for _ in range(80):
                greedy.observe()
    finally:
        built.close()
