"""The test vault as ASR shows it: items, jobs, containers and providers in the examples' shapes.

`server.ArmServer` renders `vault.Vault` state through these, keyed and worded as
the official examples (../shared/asr/examples) spell them; the words are
written here independently of the provider's reading of them (reconciler/fabric/asr).
They read the vault's state and change nothing.
"""

from __future__ import annotations

import uuid
from typing import Any

from fabric.asr import vault as v
from fabric.asr.vault import JOB_FRIENDLY, JOB_WORDS, NAME_AFTER_SECONDS, NEVER, iso

from reconciler.core.state import Health, JobState, ProtectionState, TestFailoverState

JSON = dict[str, Any]


def item_json(vault: v.Vault, item: v.ItemState) -> JSON:
    vault.resync_due(item)
    state = item.state
    text, description = vault.protection_words(item)
    primary, recovery = vault.sites[item.primary], vault.sites[item.recovery]
    job = vault.jobs.get(item.job) if item.job else None
    health = vault.health(item)
    testing = state.test_failover is TestFailoverState.RUNNING
    props: JSON = {
        "activeLocation": "Primary" if state.active_site == item.primary else "Recovery",
        "allowedOperations": vault.allowed_words(item),
        "currentScenario": {
            "jobId": f"{vault.vault_path}/replicationJobs/{job.name if job else 'None'}",
            "scenarioName": JOB_FRIENDLY[job.op][0] if job else "None",
            "startTime": iso(job.started) if job else NEVER,
        },
        "friendlyName": item.friendly,
        "policyFriendlyName": "protectionprofile1",
        "policyId": f"{vault.vault_path}/replicationPolicies/protectionprofile1",
        "primaryFabricFriendlyName": primary.fabric_friendly,
        "primaryProtectionContainerFriendlyName": primary.container_friendly,
        "protectableItemId": vault.item_path(item).replace(
            "replicationProtectedItems", "replicationProtectableItems"
        ),
        "protectedItemType": "HyperVVirtualMachine",
        "protectionState": text,
        "protectionStateDescription": description,
        "providerSpecificDetails": _details(vault, item),
        "recoveryContainerId": f"{vault.vault_path}/replicationFabrics/{recovery.fabric}/"
        f"replicationProtectionContainers/{recovery.container}",
        "recoveryFabricFriendlyName": recovery.fabric_friendly,
        # Hyper-V to Azure names the Azure fabric by its friendly name (the examples).
        "recoveryFabricId": v.AZURE_FRIENDLY
        if vault.azure
        else f"{vault.vault_path}/replicationFabrics/{recovery.fabric}",
        "recoveryProtectionContainerFriendlyName": recovery.container_friendly,
        "replicationHealth": str(health),
        "failoverHealth": "Normal" if health is Health.NORMAL else "Warning",
        "healthErrors": []
        if health is Health.NORMAL
        else [{"errorCode": "RPOBreach", "errorMessage": "Replication is behind its RPO."}],
        "testFailoverState": "WaitingForCompletion" if testing else "None",
        "testFailoverStateDescription": "Cleanup test failover pending" if testing else "None",
    }
    if item.last_failover_at is not None:
        props["lastSuccessfulFailoverTime"] = iso(item.last_failover_at)
    if item.point is not None:
        props["failoverRecoveryPointId"] = f"{vault.item_path(item)}/recoveryPoints/{item.point}"
    return {
        "name": item.name,
        "type": "Microsoft.RecoveryServices/vaults/replicationFabrics/"
        "replicationProtectionContainers/replicationProtectedItems",
        "id": vault.item_path(item),
        "properties": props,
    }


def _details(vault: v.Vault, item: v.ItemState) -> JSON:
    """providerSpecificDetails: HyperVReplicaAzureReplicationDetails's RPO fields in Hyper-V
    to Azure (lastReplicatedTime, rpoInSeconds, lastRpoCalculatedTime), the 2012 R2 one's
    lastReplicatedTime between VMM clouds."""
    last = vault.last_replicated(item)
    if vault.azure is None:
        return {"instanceType": "HyperVReplica2012R2", "lastReplicatedTime": iso(last)}
    details: JSON = {
        "instanceType": v.HYPERV_AZURE,
        "recoveryAzureVMName": item.friendly,
        "vmProtectionState": vault.protection_words(item)[0],
    }
    if item.state.protection is ProtectionState.PROTECTED:
        now = vault.now()
        details.update(
            lastReplicatedTime=iso(last),
            lastRecoveryPointReceived=iso(last),
            rpoInSeconds=round(max(0.0, now - last)),
            lastRpoCalculatedTime=iso(now),
        )
    return details


def job_json(vault: v.Vault, job: v.JobRecord) -> JSON:
    if job.plan is not None:
        return _plan_job_json(vault, job)
    item = vault.items[job.item]
    scenario, friendly = JOB_FRIENDLY[job.op]
    named = vault.now() - job.started >= NAME_AFTER_SECONDS or job.state is not JobState.RUNNING
    waiting = job.state is JobState.SUSPENDED
    props: JSON = {
        "activityId": job.activity,
        "allowedActions": ["Resume"] if waiting else [],
        "customDetails": {"instanceType": "AsrJobDetails", "affectedObjectDetails": {}},
        "errors": [
            {
                "serviceErrorDetails": {
                    "code": "70094",
                    "message": job.error,
                    "possibleCauses": "See the job's tasks.",
                    "recommendedAction": "Fix the cause and retry the operation.",
                },
                "errorLevel": "Error",
            }
        ]
        if job.error
        else [],
        "friendlyName": friendly,
        "scenarioName": scenario,
        "startTime": iso(job.started),
        "state": JOB_WORDS[job.state],
        "stateDescription": "Waiting for the manual action 'Confirm the database is "
        "consistent' to complete"
        if waiting
        else JOB_WORDS[job.state],
        "targetInstanceType": "ProtectionEntity",
        "targetObjectId": item.name,
        "targetObjectName": item.friendly if named else "",
        "tasks": _tasks(vault, job),
    }
    if job.ended is not None:
        props["endTime"] = iso(job.ended)
    return {
        "name": job.name,
        "id": f"{vault.vault_path}/replicationJobs/{job.name}",
        "type": "Microsoft.RecoveryServices/vaults/replicationJobs",
        "properties": props,
    }


def _plan_job_json(vault: v.Vault, job: v.JobRecord) -> JSON:
    scenario, friendly = JOB_FRIENDLY[job.op]
    props: JSON = {
        "activityId": job.activity,
        "allowedActions": [],
        "customDetails": {"instanceType": "AsrJobDetails", "affectedObjectDetails": {}},
        "errors": [
            {
                "serviceErrorDetails": {
                    "code": "70094",
                    "message": job.error,
                    "possibleCauses": "See the job's tasks.",
                    "recommendedAction": "Fix the cause and retry the operation.",
                },
                "errorLevel": "Error",
            }
        ]
        if job.error
        else [],
        "friendlyName": friendly,
        "scenarioName": scenario,
        "startTime": iso(job.started),
        "state": JOB_WORDS[job.state],
        "stateDescription": JOB_WORDS[job.state],
        "targetInstanceType": "RecoveryPlan",
        "targetObjectId": job.plan,
        "targetObjectName": job.plan,
        "tasks": _tasks(vault, job),
    }
    if job.ended is not None:
        props["endTime"] = iso(job.ended)
    return {
        "name": job.name,
        "id": f"{vault.vault_path}/replicationJobs/{job.name}",
        "type": "Microsoft.RecoveryServices/vaults/replicationJobs",
        "properties": props,
    }


def plan_json(vault: v.Vault, plan: v.PlanState) -> JSON:
    """A recovery plan as ReplicationRecoveryPlans_Get.json shows it."""
    items = vault.plan_items(plan)
    first = items[0]
    primary, recovery = vault.sites[first.primary], vault.sites[first.recovery]
    job = vault.jobs.get(plan.job) if plan.job else None
    last = max(
        (j for j in vault.jobs.values() if j.plan == plan.name),
        key=lambda j: j.started,
        default=None,
    )
    empty: JSON = {"startGroupActions": [], "endGroupActions": []}
    groups: list[JSON] = [
        {"groupType": "Shutdown", "replicationProtectedItems": [], **empty},
        {"groupType": "Failover", "replicationProtectedItems": [], **empty},
    ]
    for group in plan.groups:
        refs = [{"id": vault.item_path(vault.items[n]), "virtualMachineId": n} for n in group]
        groups.append({"groupType": "Boot", "replicationProtectedItems": refs, **empty})
    props: JSON = {
        "friendlyName": plan.name,
        "primaryFabricId": f"{vault.vault_path}/replicationFabrics/{primary.fabric}",
        "primaryFabricFriendlyName": primary.fabric_friendly,
        "recoveryFabricId": v.AZURE_FRIENDLY
        if vault.azure
        else f"{vault.vault_path}/replicationFabrics/{recovery.fabric}",
        "recoveryFabricFriendlyName": recovery.fabric_friendly,
        "failoverDeploymentModel": "ResourceManager" if vault.azure else "NotApplicable",
        "replicationProviders": [v.HYPERV_AZURE if vault.azure else "HyperVReplica2012R2"],
        "allowedOperations": [] if job else vault.plan_allowed_words(plan),
        "groups": groups,
    }
    if last is not None:
        props["currentScenario"] = {
            "jobId": f"{vault.vault_path}/replicationJobs/{last.name}",
            "scenarioName": JOB_FRIENDLY[last.op][0],
            "startTime": iso(last.started),
        }
        props["currentScenarioStatus"] = JOB_WORDS[last.state]
        props["currentScenarioStatusDescription"] = JOB_WORDS[last.state]
    return {
        "id": f"{vault.vault_path}/replicationRecoveryPlans/{plan.name}",
        "name": plan.name,
        "type": "Microsoft.RecoveryServices/vaults/replicationRecoveryPlans",
        "properties": props,
    }


def _tasks(vault: v.Vault, job: v.JobRecord) -> list[JSON]:
    span = max(job.due - job.started, 1e-9)
    done = 1.0 if job.state is JobState.SUCCEEDED else min(1.0, (vault.now() - job.started) / span)
    steps = ("Prerequisites check", "Shut down the virtual machine", "Start the replica")
    tasks = []
    for number, step in enumerate(steps):
        finished = done >= (number + 1) / len(steps)
        tasks.append(
            {
                "name": f"Task{number}",
                "friendlyName": step,
                "state": "Succeeded" if finished else JOB_WORDS[job.state],
                "taskType": "TaskDetails",
            }
        )
    return tasks


def containers_json(vault: v.Vault) -> list[JSON]:
    return [
        {
            "name": s.container,
            "id": f"{vault.vault_path}/replicationFabrics/{s.fabric}/"
            f"replicationProtectionContainers/{s.container}",
            "type": "Microsoft.RecoveryServices/vaults/replicationFabrics/"
            "replicationProtectionContainers",
            "properties": {
                "friendlyName": s.container_friendly,
                "fabricFriendlyName": s.fabric_friendly,
                "fabricType": "Azure" if s.name == vault.azure else "VMM",
                "pairingStatus": "Paired",
                "role": "Primary",
            },
        }
        for s in vault.sites.values()
    ]


def providers_json(vault: v.Vault) -> list[JSON]:
    return [
        {
            "name": str(uuid.uuid5(uuid.NAMESPACE_DNS, s.fabric_friendly)),
            "id": f"{vault.vault_path}/replicationFabrics/{s.fabric}/"
            "replicationRecoveryServicesProviders/"
            f"{uuid.uuid5(uuid.NAMESPACE_DNS, s.fabric_friendly)}",
            "type": "Microsoft.RecoveryServices/vaults/replicationFabrics/"
            "replicationRecoveryServicesProviders",
            "properties": {
                "fabricType": "VMM",
                "friendlyName": s.fabric_friendly,
                "fabricFriendlyName": s.fabric_friendly,
                "connectionStatus": "Connected"
                if s.down_since is None and not s.partitioned
                else "NotConnected",
            },
        }
        for s in vault.sites.values()
        if s.name != vault.azure  # Azure has no recovery services provider
    ]
