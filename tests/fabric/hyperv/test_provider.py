"""The Hyper-V provider's own cases: the documented cmdlet sequences, resuming after a crash
between two cmdlets, Hyper-V's undo only where allowed, a silent host, the emulator's refusals.

The real provider, its steps in a real journal, the emulated hosts at the runner
interface, a virtual clock. Each case asserts what the hosts were sent (the
emulator's `calls`, `host|command|vm`), the journal's steps, and errors by id.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import etcdproc
import pytest
from builders import TIMINGS
from fabric.hyperv import harness
from fabric.hyperv.emulator import PREAMBLE

from reconciler import errors
from reconciler.core.desired import EMBEDDED_FABRIC
from reconciler.core.state import JobState, Operation, Power, ProtectionState
from reconciler.engine import etcd_gateway, fabrics, guard, journal_etcd
from reconciler.engine.lease import etcd as election_
from reconciler.fabric import base
from reconciler.fabric.hyperv import provider as hv
from reconciler.fabric.sim.inventory import Inventory, InventoryVM
from reconciler.kits.clock import VirtualClock

OP = Operation
AMS, RTM = "hv01.ams.example", "hv01.rtm.example"
INVENTORY = Inventory(("ams", "rtm"), (InventoryVM("web01", "ams", ("ams", "rtm")),), TIMINGS)


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(datetime(2026, 3, 1, 9, 0, tzinfo=UTC))


@pytest.fixture
def hvt(tmp_path: Path, clock: VirtualClock) -> Iterator[harness.HyperVUnderTest]:
    built = harness.open_fabric(tmp_path, clock, INVENTORY)
    yield built
    built.close()


def run_job(provider: base.Provider, clock: VirtualClock, job_id: str) -> base.Job:  # type: ignore[name-defined]
    for _ in range(60):
        job = provider.get_job(job_id)
        if not job.running:
            return job
        clock.advance(1)
    raise AssertionError(f"{job_id} still runs")


def calls(hvt: harness.HyperVUnderTest) -> list[str]:
    return list(hvt.emulator.state.calls)


def test_a_planned_failover_sends_the_documented_cmdlets_in_order_and_ends_reversed(
    hvt: harness.HyperVUnderTest, clock: VirtualClock
) -> None:
    provider = hvt.open()
    job = run_job(
        provider, clock, provider.start(base.Request("web01", OP.PLANNED_FAILOVER, "rtm"))
    )
    assert job.state is JobState.SUCCEEDED
    assert calls(hvt) == [
        f"{AMS}|stop|web01",
        f"{AMS}|prepare|web01",
        f"{RTM}|failover|web01",
        f"{RTM}|reverse|web01",
        f"{RTM}|start|web01",
    ]
    seen = provider.observe().vms["web01"]
    assert (seen.active_site, seen.running, seen.replication_text) == ("rtm", ("rtm",), "rtm->ams")
    assert seen.protection_state is ProtectionState.PROTECTED
    assert seen.last_failover_job == job.id


class CrashAfter:
    """A step log that 'crashes' (raises) once the `done` record of step `index` is due:
    the cmdlet was sent and took effect, its outcome never journaled."""

    def __init__(self, inner: base.StepLog, index: int) -> None:
        self.inner, self.index, self.crashed = inner, index, False

    def record_step(self, step: base.Step) -> None:
        if step.kind == "done" and f'"step": {self.index}' in step.detail and not self.crashed:
            self.crashed = True
            raise KeyboardInterrupt("killed between two cmdlets")
        self.inner.record_step(step)

    def steps(self) -> list[base.Step]:
        return self.inner.steps()


def test_a_crash_between_start_vmfailover_and_reverse_resumes_without_sending_a_step_twice(
    hvt: harness.HyperVUnderTest, clock: VirtualClock
) -> None:
    first = hvt.open()
    crashing = CrashAfter(first._log, index=2)  # after Start-VMFailover on rtm
    first.use_step_log(crashing)
    job_id = first.start(base.Request("web01", OP.PLANNED_FAILOVER, "rtm"))
    with pytest.raises(KeyboardInterrupt):
        for _ in range(10):
            first.get_job(job_id)
    assert calls(hvt)[-1] == f"{RTM}|failover|web01"
    # A new drctl: memory gone, the journal says Start-VMFailover was sent, never that it
    # ended; the hosts say rtm is FailedOverWaitingCompletion, so the job goes on at -Reverse.
    job = run_job(hvt.open(), clock, job_id)
    assert job.state is JobState.SUCCEEDED
    assert calls(hvt) == [
        f"{AMS}|stop|web01",
        f"{AMS}|prepare|web01",
        f"{RTM}|failover|web01",
        f"{RTM}|reverse|web01",
        f"{RTM}|start|web01",
    ]


def test_a_non_idempotent_step_sent_but_not_shown_done_is_never_sent_again(
    hvt: harness.HyperVUnderTest, clock: VirtualClock
) -> None:
    provider = hvt.open()
    job_id = provider.start(base.Request("web01", OP.PLANNED_FAILOVER, "rtm"))
    provider.get_job(job_id)  # Stop-VM
    hvt.emulator.state.faults.append("lost")  # the Prepare is lost before it reaches ams
    with pytest.raises(errors.TransientError):
        provider.get_job(job_id)
    job = run_job(hvt.open(), clock, job_id)
    assert job.state is JobState.FAILED
    assert "drctl never sends it twice" in (job.error or "")
    assert calls(hvt) == [f"{AMS}|stop|web01"]  # the lost Prepare is never sent again
    issued = [s.detail for s in hvt.journal.steps(harness.FABRIC) if s.kind == "issue"]
    assert sum("-Prepare" in d for d in issued) == 1


def test_the_real_host_answers_invalid_state_to_a_repeated_non_idempotent_cmdlet(
    hvt: harness.HyperVUnderTest,
) -> None:
    emu = hvt.emulator
    assert not emu.run(AMS, PREAMBLE + "Stop-VM -Name 'web01' -Force", 60).errors
    prepare = PREAMBLE + "Start-VMFailover -VMName 'web01' -Prepare -Confirm:$false"
    assert not emu.run(AMS, prepare, 60).errors
    assert [e.id for e in emu.run(AMS, prepare, 60).errors] == ["InvalidState"]
    failover = PREAMBLE + "Start-VMFailover -VMName 'web01' -Confirm:$false"
    assert not emu.run(RTM, failover, 60).errors
    assert [e.id for e in emu.run(RTM, failover, 60).errors] == ["InvalidState"]
    reverse = PREAMBLE + "Set-VMReplication -VMName 'web01' -Reverse"
    assert not emu.run(RTM, reverse, 60).errors
    assert [e.id for e in emu.run(RTM, reverse, 60).errors] == ["OperationFailed"]
    # Stop-VM twice: a warning only.
    again = emu.run(RTM, PREAMBLE + "Stop-VM -Name 'web01' -Force", 60)
    assert (again.errors, len(again.warnings)) == ((), 1)


@pytest.mark.parametrize(
    "script",
    [
        "Start-VMFailover -VMName 'web01' -Prepare",  # no -Confirm:$false: a prompt
        "Stop-VM -Name 'web01'",  # no -Force
        "Get-VM | Remove-VM -Force",
        "Remove-VMReplication -VMName 'web01'",
    ],
)
def test_the_emulator_refuses_any_script_the_provider_does_not_send(
    hvt: harness.HyperVUnderTest, script: str
) -> None:
    with pytest.raises(AssertionError, match="does not know this script"):
        hvt.emulator.run(AMS, PREAMBLE + script, 60)
    with pytest.raises(AssertionError, match="ErrorActionPreference"):
        hvt.emulator.run(AMS, "Stop-VM -Name 'web01' -Force", 60)


def test_a_second_hop_is_access_denied(hvt: harness.HyperVUnderTest) -> None:
    answer = hvt.emulator.run(AMS, PREAMBLE + "Get-VM -ComputerName 'hv01.rtm.example'", 60)
    assert [e.id for e in answer.errors] == ["AccessDenied"]


def test_a_planned_failover_that_cannot_complete_reverts_its_own_prepare_saying_why(
    hvt: harness.HyperVUnderTest, clock: VirtualClock
) -> None:
    provider = hvt.open()
    hvt.controls.inject_failure("web01", OP.PLANNED_FAILOVER, after_shutdown=True)
    job = run_job(
        provider, clock, provider.start(base.Request("web01", OP.PLANNED_FAILOVER, "rtm"))
    )
    assert job.state is JobState.FAILED
    assert "OperationFailed" in (job.error or "")
    assert calls(hvt)[-1] == f"{AMS}|stop-failover|web01"
    reverts = [s for s in hvt.journal.steps(harness.FABRIC) if s.kind == "revert"]
    assert [(s.cmdlet, s.purpose) for s in reverts] == [("Stop-VMFailover", "revert-own-prepare")]
    assert "reverting the -Prepare this job issued" in reverts[0].detail
    seen = provider.observe().vms["web01"]
    assert (seen.active_site, seen.running, seen.replication_text) == ("ams", (), "ams->rtm")
    assert OP.START_VM in seen.allowed_operations  # no longer locked as PreparedForFailover


def test_stop_vmfailover_is_refused_for_any_other_purpose(hvt: harness.HyperVUnderTest) -> None:
    assert guard.step_refusal("hyperv", "Stop-VMFailover", "test-cleanup") is None
    assert guard.step_refusal("hyperv", "Stop-VMFailover", "revert-own-prepare") is None
    assert guard.step_refusal("hyperv", "Stop-VMFailover", "cancel-failover") is not None
    assert guard.step_refusal("asr", "Stop-VMFailover", None) is None  # per provider
    with pytest.raises(errors.TerminalError, match="hard rule"):
        hvt.open()._log.record_step(
            base.Step("hv-1", "web01", "issue", "{}", None, "Stop-VMFailover", "cancel-failover")
        )


def test_unplanned_failover_commit_and_reverse_after_it_follow_microsofts_sequence(
    hvt: harness.HyperVUnderTest, clock: VirtualClock
) -> None:
    provider = hvt.open()
    assert hvt.controls.site_down("ams")
    clock.advance(30)
    seen = provider.observe().vms["web01"]
    assert seen.power_at("ams") is Power.UNKNOWN
    assert not provider.observe().sites["ams"].connected
    job = run_job(provider, clock, provider.start(base.Request("web01", OP.UNPLANNED_FAILOVER)))
    assert job.state is JobState.SUCCEEDED
    assert (job.data_loss_seconds or 0) > 0
    seen = provider.observe().vms["web01"]
    assert (seen.active_site, seen.protection_state) == ("rtm", ProtectionState.COMMIT_PENDING)
    run_job(provider, clock, provider.start(base.Request("web01", OP.COMMIT)))
    hvt.controls.site_up("ams")
    seen = provider.observe().vms["web01"]
    assert seen.protection_state is ProtectionState.COMMITTED
    assert seen.running == ("ams", "rtm")  # split brain: the old copy came back running
    with pytest.raises(errors.RejectedError, match="stop it first"):
        provider.start(base.Request("web01", OP.REVERSE_REPLICATE))
    run_job(provider, clock, provider.start(base.Request("web01", OP.STOP_VM, "ams")))
    job = run_job(provider, clock, provider.start(base.Request("web01", OP.REVERSE_REPLICATE)))
    assert job.state is JobState.SUCCEEDED
    assert calls(hvt) == [
        f"{RTM}|failover|web01",
        f"{RTM}|start|web01",
        f"{RTM}|complete|web01",
        f"{AMS}|stop|web01",
        f"{AMS}|as-replica|web01",
        f"{RTM}|reverse-to|web01",
        f"{RTM}|initial|web01",
    ]
    assert "-TurnOff" in next(
        s.detail for s in hvt.journal.steps(harness.FABRIC) if "TurnOff" in s.detail
    )
    seen = provider.observe().vms["web01"]
    assert (seen.protection_state, seen.replication_text) == (
        ProtectionState.PROTECTED,
        "rtm->ams",
    )


def test_a_test_failover_and_its_cleanup(hvt: harness.HyperVUnderTest, clock: VirtualClock) -> None:
    provider = hvt.open()
    run_job(provider, clock, provider.start(base.Request("web01", OP.TEST_FAILOVER)))
    assert provider.observe().vms["web01"].test_failover.value == "Running"
    run_job(provider, clock, provider.start(base.Request("web01", OP.TEST_FAILOVER_CLEANUP)))
    assert provider.observe().vms["web01"].test_failover.value == "None"
    assert calls(hvt) == [
        f"{RTM}|test|web01",
        f"{RTM}|start|web01 - Test",
        f"{RTM}|stop-failover|web01",
    ]


def test_the_emulated_test_failover_is_hyper_vs_one_at_a_time_and_replication_goes_on(
    hvt: harness.HyperVUnderTest, clock: VirtualClock
) -> None:
    """hyperv.md 1.4, T12/T13: "<name> - Test" on the replica host, replication going on;
    one test failover at a time; only the replica's Stop-VMFailover removes it (the test
    VM itself, mode TestReplica, has no replication); -AsTest on the primary is refused."""
    provider = hvt.open()
    before = provider.observe().vms["web01"]
    run_job(provider, clock, provider.start(base.Request("web01", OP.TEST_FAILOVER)))
    clock.advance(120)

    def ran(host: str, line: str) -> tuple[str, ...]:
        return tuple(
            e.fq_id.split(",")[0] for e in hvt.emulator.run(host, PREAMBLE + line, 60).errors
        )

    assert ran(RTM, "Start-VMFailover -VMName 'web01' -AsTest -Confirm:$false") == (
        "InvalidOperation",
    )
    assert ran(RTM, "Stop-VMFailover -VMName 'web01 - Test'") == ("OperationFailed",)
    assert ran(AMS, "Start-VMFailover -VMName 'web01' -AsTest -Confirm:$false") == (
        "InvalidParameter",
    )
    during = provider.observe().vms["web01"]
    assert during.test_failover.value == "Running"
    assert (during.active_site, during.protection_state) == ("ams", ProtectionState.PROTECTED)
    assert during.replication is not None and before.replication is not None
    assert during.replication.state == before.replication.state
    assert during.replication.last_sync is not None and before.replication.last_sync is not None
    assert during.replication.last_sync > before.replication.last_sync  # replication goes on
    assert ran(RTM, "Stop-VMFailover -VMName 'web01'") == ()
    assert provider.observe().vms["web01"].test_failover.value == "None"
    assert ran(RTM, "Stop-VMFailover -VMName 'web01'") == ("InvalidState",)


def test_the_open_provider_without_pypsrp_names_the_extra() -> None:
    assert hv.INSTALL == "pip install 'drctl[hyperv]'"


def test_with_the_shared_journal_in_etcd_the_steps_are_kept_there_for_a_new_leader(
    hvt: harness.HyperVUnderTest, etcd: etcdproc.Cluster, clock: VirtualClock
) -> None:
    """`run --lock etcd://...`: drctl's own jobs journal each step in etcd, fenced, so a
    replica at the other site that takes over sees which cmdlets were sent; a deposed
    leader records no step, so it sends no cmdlet."""
    target = etcd_gateway.parse_target(etcd.url())
    gateway = etcd_gateway.Gateway(target.endpoints)
    try:
        leader = election_.Election(gateway, "/drctl", "ams", 3)
        leader.tick()
        shared = journal_etcd.EtcdJournal(gateway, target, leader.fence, leader.lost)
        opened = fabrics.Fabrics.of(hvt.open())
        opened.keep_steps(shared)
        provider = opened.provider(EMBEDDED_FABRIC)
        job = run_job(
            provider, clock, provider.start(base.Request("web01", OP.PLANNED_FAILOVER, "rtm"))
        )
        assert job.state is JobState.SUCCEEDED
        issued = [s.cmdlet for s in shared.steps(EMBEDDED_FABRIC) if s.kind == "issue"]
        assert len(issued) == 5  # stop, prepare, failover, reverse, start: each before its call
        # Another replica reads the same steps, in the same order, from etcd.
        other = journal_etcd.EtcdJournal(gateway, target)
        assert other.steps(EMBEDDED_FABRIC) == shared.steps(EMBEDDED_FABRIC)
        # A reader (a follower, or a leader deposed) records no step: no cmdlet is sent.
        before = calls(hvt)
        follower = fabrics.Fabrics.of(hvt.open())
        follower.keep_steps(other)
        with pytest.raises(errors.DrctlError):
            follower.provider(EMBEDDED_FABRIC).start(
                base.Request("web01", OP.PLANNED_FAILOVER, "ams")
            )
        assert calls(hvt) == before
    finally:
        gateway.close()
