"""A recovery plan's test failover and its cleanup, in the test vault, as hard as ASR.

`vault.Vault.start_plan` hands the plan-level testFailover and
testFailoverCleanup POSTs (ReplicationRecoveryPlans_TestFailover.json,
..._TestFailoverCleanup.json) to `start`, and `Vault._finish_plan` their jobs
to `finish`; `allowed_words` adds them to the plan's allowedOperations.

- TestFailover: `failoverDirection` the items' own, `networkType`
  NoNetworkAttachAsInput (no network: isolated) or VmNetworkAsInput with a
  `networkId`, Hyper-V to Azure a list of one HyperVReplicaAzure
  providerSpecificDetails. Refused (409) while a job runs on one of the plan's
  items (a test failover of one of them in progress) or one of them has a test
  copy not cleaned up; refused (400) when an item is not protected. The job
  boots the items' test copies group after group (each group as long as its
  slowest VM); each item's testFailoverState is then WaitingForCompletion. A
  job that fails on an item leaves the copies of the groups before it up, as
  ASR's does.
- TestFailoverCleanup: takes `comments`, no providerSpecificDetails; refused
  (400) when no item of the plan has a test copy to clean up, and (409) while
  a job runs on one of them; removes every copy, in reverse group order.

Production never changes: no item's activeLocation, protection or
replication is touched, and its last replication goes on advancing.
The HTTP codes and error codes are this server's choice (ASR documents
none for these refusals); the messages say what ASR's would.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fabric.asr import vault as v

from reconciler.core import lifecycle
from reconciler.core.state import JobState, Operation, TestFailoverState

if TYPE_CHECKING:
    from fabric.asr.vault import JSON, ItemState, JobRecord, PlanState, Vault


def _has_copy(item: ItemState) -> bool:
    return item.state.test_failover is TestFailoverState.RUNNING


def start(
    vault: Vault, plan: PlanState, op: Operation, props: JSON, request_id: str | None
) -> JobRecord:
    """Check the plan's test operation against every item; start its one job."""
    items = vault.plan_items(plan)
    friendly = v.JOB_FRIENDLY[op][1]
    network = None
    if op is Operation.TEST_FAILOVER:
        direction = props.get("failoverDirection")
        network = v.test_network(op, props, plan.name)
        for item in items:
            if direction != v.failover_direction(item):
                raise v.VaultError(
                    400,
                    "InvalidFailoverDirection",
                    f"The failover direction {direction} is not valid for the protected item "
                    f"{item.friendly} of the recovery plan {plan.name}.",
                )
            vault.check_plan_details(item, op, props)
    elif props.get("providerSpecificDetails") is not None:
        raise v.VaultError(
            400,
            "InvalidProviderSpecificInput",
            f"{friendly} of a recovery plan takes no provider specific input.",
        )
    acting = items if op is Operation.TEST_FAILOVER else [i for i in items if _has_copy(i)]
    if not acting:
        raise v.VaultError(
            400,
            "OperationNotAllowedInCurrentState",
            f"{friendly} of the recovery plan {plan.name} is not allowed: no test failover of "
            "its protected items waits to be cleaned up.",
            recommendedAction="Run a test failover of the recovery plan first.",
        )
    for item in acting:
        cond = vault.conditions(item)
        if cond.job_running is not None:
            raise v.VaultError(
                409,
                "OperationInProgress",
                f"{friendly} of the recovery plan {plan.name} cannot start: an operation is in "
                f"progress on its protected item {item.friendly}: {cond.job_running}.",
                recommendedAction="Wait for the running job to complete, then retry.",
            )
        if op is Operation.TEST_FAILOVER and _has_copy(item):
            raise v.VaultError(
                409,
                "TestFailoverCleanupPending",
                f"{friendly} of the recovery plan {plan.name} cannot start: the test failover "
                f"of its protected item {item.friendly} is not cleaned up.",
                recommendedAction="Clean up the test failover, then retry.",
            )
        reason = lifecycle.check_operation(item.state, op, cond)
        if reason is not None:
            raise v.VaultError(
                400,
                "OperationNotAllowedInCurrentState",
                f"{friendly} of the recovery plan {plan.name} is not allowed for "
                f"{item.friendly}: {reason}.",
            )
    # Test copies boot group after group; a cleanup removes them side by side.
    spans = [
        max(vault.timings.duration(vault.items[n].state, op) for n in group)
        for group in plan.groups
        if group
    ]
    work = sum(spans) if op is Operation.TEST_FAILOVER else max(spans)
    job = vault.plan_job(plan, op, request_id, work)
    job.network, job.spans = network, spans
    return job


def finish(vault: Vault, job: JobRecord, plan: PlanState) -> None:
    """The plan's test job ends: copies booted by group (up to a failing item), or removed."""
    if job.op is Operation.TEST_FAILOVER_CLEANUP:
        if job.fail:
            failing = vault.items[job.failing] if job.failing else None
            job.state = JobState.FAILED
            job.error = (
                f"Test failover cleanup of {failing.friendly if failing else '?'} in the "
                f"recovery plan {plan.name} failed (injected)."
            )
            return
        for group in reversed(plan.groups):
            for name in group:
                item = vault.items[name]
                if _has_copy(item):
                    item.state = lifecycle.apply_effect(item.state, job.op, vault.flavour)
                    item.test_network = None
                    vault.events.append((job.due, "test-cleanup", item.friendly))
        job.state = JobState.SUCCEEDED
        return
    at = job.started
    for group, span in zip((g for g in plan.groups if g), job.spans, strict=True):
        at += span
        if job.failing in group:
            job.state = JobState.FAILED
            job.error = (
                f"Test failover of {vault.items[job.failing].friendly} in the recovery plan "
                f"{plan.name} failed (injected)."
            )
            return
        for name in group:
            item = vault.items[name]
            item.state = lifecycle.apply_effect(item.state, job.op, vault.flavour)
            item.test_network = job.network
            vault.events.append((at, "test-boot", item.friendly))
    job.state = JobState.SUCCEEDED


def allowed_words(vault: Vault, plan: PlanState) -> list[str]:
    """TestFailover when every item allows it, TestFailoverCleanup when one has a copy."""
    items = vault.plan_items(plan)
    words = []
    if all("TestFailover" in vault.allowed_words(i) for i in items):
        words.append("TestFailover")
    if any("TestFailoverCleanup" in vault.allowed_words(i) for i in items):
        words.append("TestFailoverCleanup")
    return words
