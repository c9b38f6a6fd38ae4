"""What the simulated fabric says in its own words: raw states, failover health, ids, names.

Its raw protection states are ASR's texts, read back through the one map a
provider uses, so a text injected with `raw-state` is reported Unknown with
the text; each VM has a stable id beside its name, and a name two VMs report
(after a rename) is in no `vms` entry and resolves to neither.
"""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from builders import inventory, inventory_vm, timings

from reconciler import errors
from reconciler.core import lifecycle
from reconciler.core.state import FailoverKind, Operation, ProtectionState
from reconciler.core.state import TestFailoverState as DrillState
from reconciler.fabric.base import Request
from reconciler.fabric.sim import provider as sim
from reconciler.fabric.sim import raw
from reconciler.fabric.sim import store as sim_store
from reconciler.kits.clock import VirtualClock

OP = Operation
PS = ProtectionState
START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
INTERVAL = 30.0
INVENTORY = inventory(
    inventory_vm("web01"),
    inventory_vm("web02"),
    inventory_vm("batch", "rtm", replication=None),
    timings=timings(replication_interval=INTERVAL),
)


def finish(fabric: sim.SimFabric, clock: VirtualClock, vm: str, op: Operation) -> None:
    job_id = fabric.start(Request(vm, op, "rtm" if op is OP.PLANNED_FAILOVER else None))
    while fabric.get_job(job_id).running:
        clock.advance(1)


# --- raw protection states ---------------------------------------------------------------


PROTECTED = lifecycle.protected("ams", "rtm")
FAILED_OVER = lifecycle.VMState("rtm", "ams", frozenset({"rtm"}), PS.COMMIT_PENDING)


@pytest.mark.parametrize(
    ("state", "text"),
    [
        (PROTECTED, ("Protected", "Protected")),
        (
            replace(PROTECTED, test_failover=DrillState.RUNNING),
            ("Protected", "Cleanup test failover pending"),
        ),
        (
            replace(FAILED_OVER, last_failover=FailoverKind.PLANNED),
            ("PlannedFailoverCommitRequired", "Planned failover finished"),
        ),
        (
            replace(FAILED_OVER, last_failover=FailoverKind.UNPLANNED),
            ("UnplannedFailoverCommitPendingStatesBegin", "Failover completed"),
        ),
        (
            replace(FAILED_OVER, protection=PS.COMMITTED, last_failover=FailoverKind.PLANNED),
            ("PlannedFailoverStatesBegin", "Planned failover committed"),
        ),
        (
            replace(FAILED_OVER, protection=PS.COMMITTED, last_failover=FailoverKind.UNPLANNED),
            ("UnplannedFailoverCommitted", "Failover committed"),
        ),
        (lifecycle.unprotected("ams", "rtm"), ("UnprotectedStatesBegin", "Not protected")),
    ],
)
def test_each_state_has_asrs_words_and_reads_back_as_itself(
    state: lifecycle.VMState, text: tuple[str, str]
) -> None:
    assert raw.protection_text(state) == text
    assert raw.protection_of(text[0]) is state.protection


def test_every_known_state_has_words_that_read_back_as_it() -> None:
    """A state added to the model without words would read Unknown (Blocked): caught here."""
    for protection in PS:
        if protection is PS.UNKNOWN:
            continue
        for kind in FailoverKind:
            state = replace(FAILED_OVER, protection=protection, last_failover=kind)
            assert raw.protection_of(raw.protection_text(state)[0]) is protection


def test_the_fabric_reports_its_raw_state_beside_drctls_reading(
    fabric: sim.SimFabric, clock: VirtualClock
) -> None:
    vm = fabric.observe().vms["web01"]
    assert (vm.protection_state, vm.raw_state, vm.raw_state_description) == (
        PS.PROTECTED,
        "Protected",
        "Protected",
    )
    finish(fabric, clock, "web01", OP.PLANNED_FAILOVER)
    vm = fabric.observe().vms["web01"]
    assert (vm.protection_state, vm.raw_state, vm.raw_state_description) == (
        PS.COMMIT_PENDING,
        "PlannedFailoverCommitRequired",
        "Planned failover finished",
    )


def test_an_injected_raw_state_reads_unknown_with_its_text_and_the_fabrics_own_operations(
    fabric: sim.SimFabric,
) -> None:
    """The fabric still allows what it allows: knowing the state is drctl's precondition."""
    before = fabric.observe().vms["web01"]
    fabric.set_raw_state("web01", "FailoverInProgressMystery", "Something odd")
    vm = fabric.observe().vms["web01"]
    assert (vm.protection_state, vm.raw_state, vm.raw_state_description) == (
        PS.UNKNOWN,
        "FailoverInProgressMystery",
        "Something odd",
    )
    assert vm.allowed_operations == before.allowed_operations
    assert OP.PLANNED_FAILOVER in vm.allowed_operations
    assert fabric.observe().vms["web02"].protection_state is PS.PROTECTED  # one VM only
    fabric.set_raw_state("web01", None)
    assert fabric.observe().vms["web01"] == before


@pytest.mark.parametrize("text", ["Protected", "PlannedFailoverCommitRequired", " "])
def test_a_raw_state_fault_must_be_a_text_the_fabric_does_not_know(
    fabric: sim.SimFabric, text: str
) -> None:
    with pytest.raises(errors.UsageError, match=r"give a text it does not know|not empty"):
        fabric.set_raw_state("web01", text)


# --- failover health -----------------------------------------------------------------------


def test_failover_health_warns_with_an_error_while_replication_lags_or_needs_a_resync(
    fabric: sim.SimFabric,
) -> None:
    vm = fabric.observe().vms["web01"]
    assert (vm.failover_health, vm.health_errors) == ("Normal", ())
    fabric.lag("web01", 3 * INTERVAL)
    vm = fabric.observe().vms["web01"]
    assert vm.failover_health == "Warning"
    assert vm.health_errors == (
        "Replication is 90 s behind its schedule of one recovery point every 30 s",
    )
    fabric.lag("web01", 0)
    fabric.resync_required("web01", manual=True)
    vm = fabric.observe().vms["web01"]
    assert vm.failover_health == "Warning"
    assert vm.health_errors == (
        "Replication needs a resynchronization: nothing is replicated until it completes",
    )
    batch = fabric.observe().vms["batch"]  # replication off
    assert (batch.failover_health, batch.health_errors) == ("Normal", ())


# --- ids and names -----------------------------------------------------------------------


def test_each_vm_has_a_stable_id_of_its_own(
    tmp_path: Path, fabric: sim.SimFabric, clock: VirtualClock
) -> None:
    ids = {name: vm.vm_id for name, vm in fabric.observe().vms.items()}
    assert len(set(ids.values())) == 3
    assert all(vm_id and len(vm_id) == 36 for vm_id in ids.values())  # GUID-shaped
    finish(fabric, clock, "web01", OP.PLANNED_FAILOVER)
    with sim.SimFabric(tmp_path, clock) as again:
        assert {name: vm.vm_id for name, vm in again.observe().vms.items()} == ids


def test_a_fabric_made_before_ids_gets_them_as_init_gives_them(
    tmp_path: Path, fabric: sim.SimFabric, clock: VirtualClock
) -> None:
    ids = {name: vm.vm_id for name, vm in fabric.observe().vms.items()}
    fabric.close()
    with sqlite3.connect(tmp_path / sim_store.DB_NAME) as db:
        db.execute("ALTER TABLE vms DROP COLUMN vm_id")
        db.execute("DROP TABLE overrides")
    with sim.SimFabric(tmp_path, clock) as older:
        assert {name: vm.vm_id for name, vm in older.observe().vms.items()} == ids


def test_a_renamed_vm_reports_its_new_name_and_keeps_its_id(
    fabric: sim.SimFabric, clock: VirtualClock
) -> None:
    web02 = fabric.observe().vms["web02"]
    assert fabric.rename("web02", "web09") == (web02.vm_id,)
    observed = fabric.observe()
    assert "web02" not in observed.vms
    assert observed.vms["web09"].vm_id == web02.vm_id
    assert observed.duplicates == {}
    # A Provider call names it as the fabric does; its jobs name it so too.
    job_id = fabric.start(Request("web09", OP.STOP_VM, "ams"))
    assert fabric.get_job(job_id).vm == "web09"
    with pytest.raises(errors.TerminalError, match="no VM 'web02'"):
        fabric.start(Request("web02", OP.PLANNED_FAILOVER, "rtm"))


def test_two_vms_of_one_name_are_reported_apart_and_neither_is_in_vms(
    fabric: sim.SimFabric,
) -> None:
    ids = {name: vm.vm_id for name, vm in fabric.observe().vms.items()}
    assert fabric.rename("web02", "web01") == (ids["web01"], ids["web02"])
    observed = fabric.observe()
    assert set(observed.vms) == {"batch"}
    same = observed.duplicates["web01"]
    assert [(vm.name, vm.vm_id) for vm in same] == [
        ("web01", ids["web01"]),
        ("web01", ids["web02"]),
    ]
    fabric.rename("web02", "web02")  # back to its inventory name
    observed = fabric.observe()
    assert (set(observed.vms), observed.duplicates) == ({"web01", "web02", "batch"}, {})


def test_a_renamed_vm_listed_first_still_makes_a_duplicate(fabric: sim.SimFabric) -> None:
    """Inventory order does not decide: web01, renamed batch, comes before batch."""
    fabric.rename("web01", "batch")
    observed = fabric.observe()
    assert set(observed.vms) == {"web02"}
    assert len(observed.duplicates["batch"]) == 2


def test_a_call_naming_a_name_two_vms_report_is_refused_never_resolved(
    fabric: sim.SimFabric,
) -> None:
    fabric.rename("web02", "web01")
    with pytest.raises(errors.TerminalError, match="2 VMs are named 'web01'"):
        fabric.start(Request("web01", OP.PLANNED_FAILOVER, "rtm"))
    assert fabric.list_jobs() == []
