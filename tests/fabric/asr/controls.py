"""What a test does to the test vault besides calling the provider: `fabrics.Controls` for ASR.

A site down (its VMM server's provider NotConnected, replication frozen), a
partition (NotConnected while replication goes on), a job that fails or
suspends, an operator in the portal (a job drctl's journal does not know),
a move behind drctl's back, an item renamed, lag and a resync; errors of the API itself go
through `server.ArmServer.inject` (the HTTP answer of the next matching
request), which `inject_call_error` maps each Provider call to.
"""

from __future__ import annotations

import dataclasses
import math
import uuid

from fabric.asr import vault as v
from fabric.asr.server import ArmServer, Fault

from reconciler import errors
from reconciler.core import lifecycle
from reconciler.core.state import (
    FailoverKind,
    Health,
    Job,
    JobState,
    Operation,
    ProtectionState,
    ReplicationState,
)
from reconciler.fabric import base

# Which requests each Provider call begins with (the first one a fault hits).
CALLS = {
    "observe": ("GET", "replicationRecoveryServicesProviders"),
    "start": ("POST", ""),
    "get_job": ("GET", "replicationJobs/"),
    "list_jobs": ("GET", "replicationJobs?"),
    "*": ("", ""),
}
# The actions whose body says which way they go (failoverDirection).
DIRECTED = frozenset(
    {
        Operation.PLANNED_FAILOVER,
        Operation.UNPLANNED_FAILOVER,
        Operation.REVERSE_REPLICATE,
        Operation.TEST_FAILOVER,
    }
)
STATUS = {"rejected": 400, "transient": 503, "throttled": 429, "terminal": 404}


class VaultControls:
    """The `fabrics.Controls` of one test vault and its server."""

    def __init__(self, vault: v.Vault, server: ArmServer) -> None:
        self.vault = vault
        self.server = server

    def site_down(self, site: str) -> bool:
        with self.vault.lock:
            self.vault.advance()
            s = self.vault.sites[site]
            if s.down_since is not None:
                return False
            s.down_since = self.vault.now()
            s.cuts.append([s.down_since, None])
            return True

    def site_up(self, site: str) -> bool:
        with self.vault.lock:
            self.vault.advance()
            s = self.vault.sites[site]
            if s.down_since is None:
                return False
            now = self.vault.now()
            # What the replicas missed while the site was dark ships again from now on.
            for item in self.vault.items.values():
                if site in {item.state.active_site, item.state.peer_site}:
                    item.synced_at = max(item.synced_at, s.down_since - item.lag)
                    item.lag = max(item.lag, now - s.down_since)
            s.down_since = None
            _close(s, now)
            return True

    def partition(self, site: str) -> bool:
        with self.vault.lock:
            self.vault.advance()
            s = self.vault.sites[site]
            if s.partitioned:
                return False
            s.partitioned = True
            s.cuts.append([self.vault.now(), None])
            return True

    def heal(self, site: str) -> bool:
        with self.vault.lock:
            self.vault.advance()
            s = self.vault.sites[site]
            if not s.partitioned:
                return False
            s.partitioned = False
            _close(s, self.vault.now())
            return True

    def inject_failure(
        self, vm: str, operation: Operation, times: int = 1, *, after_shutdown: bool = False
    ) -> None:
        with self.vault.lock:
            self.vault.failures.setdefault((vm, operation), []).extend([after_shutdown] * times)

    def suspend_next(self, vm: str, operation: Operation) -> None:
        with self.vault.lock:
            key = (vm, operation)
            self.vault.suspensions[key] = self.vault.suspensions.get(key, 0) + 1

    def resume(self, job: str) -> Job:
        with self.vault.lock:
            self.vault.advance()
            found = self.vault.jobs[job]
            if found.state is not JobState.SUSPENDED:
                raise errors.UsageError(f"{job} is {found.state}, not Suspended")
            rest = found.due - found.started
            found.state, found.due = JobState.RUNNING, self.vault.now() + rest
            return _job(self.vault, found)

    def start_by_hand(self, request: base.Request) -> str:
        """An operator in the portal: checked as drctl's calls are, not through drctl's link."""
        with self.vault.lock:
            item = self.vault.by_friendly(request.vm)
            props: dict[str, object] = {}
            if request.operation in DIRECTED:
                props["failoverDirection"] = v.failover_direction(item)
            if request.operation is Operation.TEST_FAILOVER:
                props["networkType"] = "NoNetworkAttachAsInput"  # the portal always names one
            details = self.vault.details_for(item, request.operation)
            if details is not None:
                props["providerSpecificDetails"] = details
            body = {"properties": props} if props else {}
            try:
                # The portal sends a client request id of its own, which ASR keeps too.
                return self.vault.start(item, request.operation, body, str(uuid.uuid4())).name
            except v.VaultError as exc:
                raise errors.UsageError(str(exc)) from exc

    def inject_call_error(
        self,
        call: str,
        error: str,
        *,
        times: int = 1,
        vm: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        method, path = CALLS[call]
        if vm is not None:
            path = self.vault.by_friendly(vm).name + "/"
        headers = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
        for _ in range(times):
            self.server.inject(Fault(STATUS[error], method=method, path=path, headers=headers))

    def move(self, vm: str, site: str) -> None:
        """Someone failed `vm` over to `site` in the portal and reprotected it: a succeeded job.

        Into Azure it stays committed there: nothing replicates out of Azure."""
        with self.vault.lock:
            self.vault.advance()
            item = self.vault.by_friendly(vm)
            if item.job is not None or item.state.active_site == site:
                raise errors.UsageError(f"{vm} is busy or already at {site}")
            peer = item.state.active_site
            now = self.vault.now()
            moved = lifecycle.protected(site, peer, azure_site=self.vault.azure)
            if moved.in_azure:
                moved = dataclasses.replace(
                    moved, protection=ProtectionState.COMMITTED, replication=ReplicationState.OFF
                )
            item.state = dataclasses.replace(moved, last_failover=FailoverKind.PLANNED)
            item.synced_at, item.lag, item.last_failover_at = now, 0.0, now
            job = self.vault.begin(item, Operation.PLANNED_FAILOVER, None)
            job.state, job.ended, job.due, job.target, item.job = (
                JobState.SUCCEEDED,
                now,
                now,
                site,
                None,
            )

    def rename(self, vm: str, name: str) -> None:
        """An operator renames `vm`'s protected item (its friendly name) in the portal; its
        item name stays. Renamed to another item's name, two items share one friendly name."""
        with self.vault.lock:
            self.vault.by_friendly(vm).friendly = name

    def lag(self, vm: str, seconds: float) -> Health:
        with self.vault.lock:
            item = self.vault.by_friendly(vm)
            item.lag = seconds
            return self.vault.health(item)

    def resync_required(self, vm: str, *, manual: bool = False) -> float | None:
        with self.vault.lock:
            item = self.vault.by_friendly(vm)
            if item.state.replication is not ReplicationState.REPLICATING:
                raise errors.UsageError(f"{vm} does not replicate")
            seconds = None if manual else self.vault.timings.full_copy(None)
            item.resync_until = math.inf if seconds is None else self.vault.now() + seconds
            item.synced_at = self.vault.last_replicated(item)
            return seconds


def _close(site: v.SiteState, now: float) -> None:
    for cut in site.cuts:
        if cut[1] is None:
            cut[1] = now


def _job(vault: v.Vault, job: v.JobRecord) -> Job:
    return Job(
        job.name,
        vault.items[job.item].friendly,
        job.op,
        job.state,
        vault.clock.now(),
    )
