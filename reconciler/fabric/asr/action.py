"""The request body of each action drctl starts on a protected item, and the job id ASR answers.

`asr.provider` calls `body_for` before each action POST and `job_name_of` on
its answer. Pure. Shapes from the official examples (../shared/asr/examples):
Hyper-V to Azure sends `providerSpecificDetails: {instanceType:
HyperVReplicaAzure}`; VMM to VMM sends none (the API defines no
HyperVReplica2012R2 input for these actions). `failoverDirection` follows
the observed direction: PrimaryToRecovery while the item is active at its
primary location, RecoveryToPrimary while it is active at its recovery one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.core.state import Operation

HYPERV_AZURE = "HyperVReplicaAzure"
# The failback from Azure to the Hyper-V site (a planned failover RecoveryToPrimary):
# ship the changes made in Azure before shutting the Azure VM down, and boot the
# on-premises VM that replication kept. Not verified against a live vault.
HYPERV_AZURE_FAILBACK = {
    "instanceType": "HyperVReplicaAzureFailback",
    "dataSyncOption": "ForDownTime",
    "recoveryVmCreationOption": "NoAction",
}


@dataclass(frozen=True)
class Direction:
    """Where an item is active, in ASR's terms, and which scenario it replicates in."""

    active_is_primary: bool
    instance_type: str | None  # providerSpecificDetails.instanceType of the item

    @property
    def failover(self) -> str:
        return "PrimaryToRecovery" if self.active_is_primary else "RecoveryToPrimary"

    @property
    def to_azure(self) -> bool:
        return self.instance_type == HYPERV_AZURE

    @property
    def from_azure(self) -> bool:
        """Active in Azure (the recovery location of a Hyper-V-to-Azure item)."""
        return self.to_azure and not self.active_is_primary


def body_for(
    op: Operation,
    direction: Direction,
    *,
    shutdown_source: bool = False,
    recovery_point_id: str | None = None,
    network: str | None = None,
) -> dict[str, Any] | None:
    """The JSON body of the action POST that starts `op` (None: the action takes none).

    A TestFailover's `network` (spec.drill.network) is the id of the network the
    test copy joins at the recovery site (an Azure virtual network's resource id
    to Azure, a VMM VM network's between VMM clouds): `VmNetworkAsInput` with it
    as `networkId`; None: `NoNetworkAttachAsInput`, no network at all (isolated).
    """
    if op is Operation.COMMIT or op is Operation.RESYNC:
        return None
    if op is Operation.TEST_FAILOVER_CLEANUP:
        return {"properties": {"comments": "drctl: test failover cleanup"}}
    props: dict[str, Any] = {}
    if op is Operation.APPLY_RECOVERY_POINT:
        props["recoveryPointId"] = recovery_point_id
    else:
        props["failoverDirection"] = direction.failover
    if op is Operation.UNPLANNED_FAILOVER:
        # Try to shut the source down first, and go on if it cannot: never
        # skipped while the source answers (a copy left running is a split brain).
        props["sourceSiteOperations"] = "Required" if shutdown_source else "NotRequired"
    if op is Operation.TEST_FAILOVER and network is not None:
        props.update(networkType="VmNetworkAsInput", networkId=network)
    elif op is Operation.TEST_FAILOVER:
        # An isolated test: the test copy is attached to no network.
        props["networkType"] = "NoNetworkAttachAsInput"
    if direction.to_azure:
        if op is Operation.PLANNED_FAILOVER and direction.from_azure:
            props["providerSpecificDetails"] = dict(HYPERV_AZURE_FAILBACK)
        else:
            props["providerSpecificDetails"] = {"instanceType": HYPERV_AZURE}
    return {"properties": props}


def for_plan(body: dict[str, Any] | None) -> dict[str, Any] | None:
    """An item's action body as a recovery plan takes it: providerSpecificDetails is a
    list there, one per replication provider (ReplicationRecoveryPlans_PlannedFailover.json)."""
    if body is None:
        return None
    props = dict(body.get("properties") or {})
    details = props.get("providerSpecificDetails")
    if isinstance(details, dict):
        props["providerSpecificDetails"] = [details]
    return {**body, "properties": props}


_JOB_IN = (
    re.compile(r"/replicationJobs/([^/?#]+)", re.IGNORECASE),
    re.compile(r"/operationresults/([^/?#]+)", re.IGNORECASE),
    re.compile(r"/replicationOperationStatus/([^/?#]+)", re.IGNORECASE),
)


def job_name_of(headers: Mapping[str, str]) -> str | None:
    """The job's name in a 202's Location or Azure-AsyncOperation header, if one names it."""
    lowered = {k.lower(): v for k, v in headers.items()}
    for header in ("location", "azure-asyncoperation"):
        value = lowered.get(header)
        if not value:
            continue
        for pattern in _JOB_IN:
            found = pattern.search(value)
            if found and found.group(1).lower() != "none":
                return found.group(1)
    return None


def retry_after_of(headers: Mapping[str, str]) -> float | None:
    """The seconds a 202 (or a job's GET) asks the caller to wait before polling again."""
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        return float(lowered["retry-after"])
    except (KeyError, ValueError):
        return None
