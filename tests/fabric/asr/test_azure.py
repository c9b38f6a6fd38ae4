"""Hyper-V site to Azure through the real SDK: the HyperVReplicaAzure inputs, read and sent.

The vault holds ams (a Hyper-V site) replicating to rtm, declared `azure: {}`.
The shapes are those of the official examples (../shared/asr/examples): items
with `instanceType: HyperVReplicaAzure` and their RPO fields, a failover
PrimaryToRecovery with HyperVReplicaAzure details, an item committed in Azure
that allows only Failback, a reprotect PrimaryToRecovery after the failback.
The vault refuses what ASR refuses (another scenario's input, an unplanned
failover out of Azure), so a wrong call fails here.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from builders import TIMINGS
from fabric.asr import harness

from reconciler import errors
from reconciler.core.state import Operation, Power, ProtectionState
from reconciler.fabric import base
from reconciler.fabric.asr import bucket, client
from reconciler.fabric.asr.provider import AsrFabric
from reconciler.fabric.asr.settings import ItemRef
from reconciler.fabric.sim.inventory import Inventory, InventoryVM
from reconciler.kits.clock import VirtualClock

OP = Operation
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
INVENTORY = Inventory(
    ("ams", "rtm"),
    tuple(InventoryVM(n, "ams", ("ams", "rtm")) for n in ("sql01", "web01")),
    TIMINGS,
)


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(T0)


@pytest.fixture
def azure(tmp_path: Path, clock: VirtualClock) -> Iterator[harness.AsrUnderTest]:
    built = harness.open_fabric(tmp_path, clock, INVENTORY, azure="rtm")
    try:
        yield built
    finally:
        built.close()


finish = harness.finish


def run(provider: AsrFabric, clock: VirtualClock, op: Operation, target: str) -> None:
    job = finish(provider, clock, provider.start(base.Request("sql01", op, target)))
    assert job.error is None, job.error


def bodies(built: harness.AsrUnderTest) -> list[tuple[str, Any]]:
    """Each action POST's last path segment and the properties it carried."""
    return [
        (r.path.split("?")[0].rsplit("/", 1)[-1], (r.body or {}).get("properties"))
        for r in built.server.seen("POST")
    ]


def test_items_are_read_in_the_hyperv_to_azure_shapes(
    azure: harness.AsrUnderTest, clock: VirtualClock
) -> None:
    clock.advance(3)
    seen = azure.open().observe()
    assert {name: (s.connected, s.azure) for name, s in seen.sites.items()} == {
        "ams": (True, False),
        "rtm": (True, True),
    }
    sql = seen.vms["sql01"]
    assert (sql.active_site, sql.replication_text) == ("ams", "ams->rtm")
    assert sql.allowed_operations == {OP.PLANNED_FAILOVER, OP.UNPLANNED_FAILOVER, OP.TEST_FAILOVER}
    # lastReplicatedTime of HyperVReplicaAzureReplicationDetails: the RPO's measure.
    assert sql.replication is not None
    assert sql.replication.last_sync == T0 + timedelta(seconds=3)


def test_a_round_trip_sends_the_hyperv_replica_azure_inputs(
    azure: harness.AsrUnderTest, clock: VirtualClock
) -> None:
    provider = azure.open()
    run(provider, clock, OP.PLANNED_FAILOVER, "rtm")
    run(provider, clock, OP.COMMIT, "rtm")
    in_azure = provider.observe().vms["sql01"]
    assert (in_azure.active_site, in_azure.protection_state, in_azure.replication) == (
        "rtm",
        ProtectionState.COMMITTED,
        None,
    )
    # Failback, CompleteMigration, DisableProtection: only the failback is drctl's.
    assert in_azure.allowed_operations == {OP.PLANNED_FAILOVER}
    assert (in_azure.power_at("ams"), in_azure.power_at("rtm")) == (Power.OFF, Power.UNKNOWN)
    run(provider, clock, OP.PLANNED_FAILOVER, "ams")
    run(provider, clock, OP.COMMIT, "ams")
    run(provider, clock, OP.REVERSE_REPLICATE, "rtm")
    back = provider.observe().vms["sql01"]
    assert (back.active_site, back.protection_state, back.replication_text) == (
        "ams",
        ProtectionState.PROTECTED,
        "ams->rtm",
    )
    azure_details = {"instanceType": "HyperVReplicaAzure"}
    assert bodies(azure) == [
        (
            "plannedFailover",
            {"failoverDirection": "PrimaryToRecovery", "providerSpecificDetails": azure_details},
        ),
        ("failoverCommit", None),
        (
            "plannedFailover",
            {
                "failoverDirection": "RecoveryToPrimary",
                "providerSpecificDetails": {
                    "instanceType": "HyperVReplicaAzureFailback",
                    "dataSyncOption": "ForDownTime",
                    "recoveryVmCreationOption": "NoAction",
                },
            },
        ),
        ("failoverCommit", None),
        (
            "reProtect",
            {"failoverDirection": "PrimaryToRecovery", "providerSpecificDetails": azure_details},
        ),
    ]


def test_an_unplanned_failover_to_azure_sends_its_source_site_operations(
    azure: harness.AsrUnderTest, clock: VirtualClock
) -> None:
    provider = azure.open()
    request = base.Request("sql01", OP.UNPLANNED_FAILOVER, "rtm", shutdown_source=True)
    finish(provider, clock, provider.start(request))
    assert bodies(azure) == [
        (
            "unplannedFailover",
            {
                "failoverDirection": "PrimaryToRecovery",
                "sourceSiteOperations": "Required",
                "providerSpecificDetails": {"instanceType": "HyperVReplicaAzure"},
            },
        )
    ]


@pytest.mark.parametrize("op", [OP.UNPLANNED_FAILOVER, OP.TEST_FAILOVER, OP.REVERSE_REPLICATE])
def test_the_provider_never_posts_what_azure_lacks(
    azure: harness.AsrUnderTest, clock: VirtualClock, op: Operation
) -> None:
    provider = azure.open()
    run(provider, clock, OP.PLANNED_FAILOVER, "rtm")
    run(provider, clock, OP.COMMIT, "rtm")
    posts = azure.server.count("POST")
    with pytest.raises(errors.RejectedError, match="it allows: CompleteMigration"):
        provider.start(base.Request("sql01", op, "ams"))
    assert azure.server.count("POST") == posts


def arm(built: harness.AsrUnderTest) -> client.ArmClient:
    """A bare ARM client on the vault: it sends what it is given, checked by ASR alone."""
    buckets = bucket.Buckets(built.settings.rates, built.clock)
    return client.ArmClient(built.settings, buckets, connection_verify=str(built.server.ca_path))


def ref_of(built: harness.AsrUnderTest, vm: str) -> ItemRef:
    item = built.vault.by_friendly(vm)
    site = built.vault.sites[item.primary]
    return ItemRef(site.fabric, site.container, item.name)


def test_the_vault_refuses_an_unplanned_failover_out_of_azure(
    azure: harness.AsrUnderTest, clock: VirtualClock
) -> None:
    provider = azure.open()
    run(provider, clock, OP.PLANNED_FAILOVER, "rtm")
    run(provider, clock, OP.COMMIT, "rtm")
    bare = arm(azure)
    try:
        found = bare.get_item(ref_of(azure, "sql01"))
        assert found["properties"]["allowedOperations"] == [
            "Failback",
            "DisableProtection",
            "CompleteMigration",
        ]
        body = {
            "properties": {
                "failoverDirection": "RecoveryToPrimary",
                "sourceSiteOperations": "NotRequired",
                "providerSpecificDetails": {"instanceType": "HyperVReplicaAzure"},
            }
        }
        with pytest.raises(errors.RejectedError) as refused:
            bare.post_action(ref_of(azure, "sql01"), "unplanned_failover", body, None)
    finally:
        bare.close()
    assert "from Azure there is no UnplannedFailover" in str(refused.value)
    item = azure.vault.by_friendly("sql01")
    assert (item.state.active_site, item.job) == ("rtm", None)


def test_the_vault_refuses_the_input_of_the_other_scenario(
    azure: harness.AsrUnderTest, clock: VirtualClock
) -> None:
    """A VMM-to-VMM body (no providerSpecificDetails) is refused on a Hyper-V-to-Azure item."""
    provider = azure.open()
    provider.observe()
    bare = arm(azure)
    try:
        with pytest.raises(errors.RejectedError, match="HyperVReplicaAzure"):
            bare.post_action(
                ref_of(azure, "sql01"),
                "planned_failover",
                {"properties": {"failoverDirection": "PrimaryToRecovery"}},
                None,
            )
    finally:
        bare.close()
    assert azure.vault.by_friendly("sql01").job is None


def test_a_recovery_plan_fails_over_to_azure_with_a_list_of_provider_inputs(
    azure: harness.AsrUnderTest, clock: VirtualClock
) -> None:
    """A recovery plan takes one providerSpecificDetails per provider, as a list
    (ReplicationRecoveryPlans_PlannedFailover.json)."""
    provider = azure.open()
    request = base.Request(
        "sql01", OP.PLANNED_FAILOVER, "rtm", plan="finance", plan_groups=(("sql01",), ("web01",))
    )
    assert finish(provider, clock, provider.start(request)).error is None
    (posted,) = azure.server.seen("POST", "/replicationRecoveryPlans/drctl-finance/")
    assert posted.body["properties"] == {
        "failoverDirection": "PrimaryToRecovery",
        "providerSpecificDetails": [{"instanceType": "HyperVReplicaAzure"}],
    }
    assert {i.friendly: i.state.active_site for i in azure.vault.items.values()} == {
        "sql01": "rtm",
        "web01": "rtm",
    }
