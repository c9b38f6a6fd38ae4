"""What a test does to the emulated hosts besides calling the provider: `fabrics.Controls` for Hyper-V.

A site down (its hosts silent, replication to and from it cut), a partition
(its hosts silent to drctl while replication goes on), a cmdlet that fails
(the first cmdlet of an operation; `after_shutdown`: the replica's
Start-VMFailover, after the source was shut down and prepared), an operator
at the console (the cmdlets run by hand, no job of drctl's), lag and a
resync required. Hyper-V has no service-side jobs, so there is nothing to
suspend or resume.
"""

from __future__ import annotations

from fabric.hyperv.emulator import Emulator, Record

from reconciler import errors
from reconciler.core.state import Health, Job, Operation
from reconciler.fabric import base

# The command (emulator.COMMANDS) that the first cmdlet of each operation is.
FIRST = {
    Operation.PLANNED_FAILOVER: "stop",
    Operation.UNPLANNED_FAILOVER: "failover",
    Operation.COMMIT: "complete",
    Operation.REVERSE_REPLICATE: "as-replica",
    Operation.TEST_FAILOVER: "test",
    Operation.TEST_FAILOVER_CLEANUP: "stop-failover",
    Operation.RESYNC: "resync",
    Operation.STOP_VM: "stop",
    Operation.START_VM: "start",
}


class HostControls:
    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator

    @property
    def _state(self):  # type: ignore[no-untyped-def]
        return self.emulator.state

    def site_down(self, site: str) -> bool:
        self.emulator.advance()
        if site in self._state.down:
            return False
        self._state.down.append(site)
        return True

    def site_up(self, site: str) -> bool:
        if site not in self._state.down:
            return False
        self._state.down.remove(site)
        return True

    def partition(self, site: str) -> bool:
        if site in self._state.partitioned:
            return False
        self._state.partitioned.append(site)
        return True

    def heal(self, site: str) -> bool:
        if site not in self._state.partitioned:
            return False
        self._state.partitioned.remove(site)
        return True

    def inject_failure(
        self, vm: str, operation: Operation, times: int = 1, *, after_shutdown: bool = False
    ) -> None:
        command = "failover" if after_shutdown else FIRST[operation]
        key = f"{vm}|{command}"
        self._state.failures[key] = self._state.failures.get(key, 0) + times

    def suspend_next(self, vm: str, operation: Operation) -> None:
        raise errors.UsageError("Hyper-V Replica has no service-side jobs to suspend")

    def resume(self, job: str) -> Job:
        raise errors.UsageError("Hyper-V Replica has no service-side jobs to resume")

    def start_by_hand(self, request: base.Request) -> str:
        """An operator at a host's console: the first cmdlet of the operation, no drctl job."""
        rec, host = self._find(request.vm, request.target_site)
        script = {
            Operation.STOP_VM: f"$ErrorActionPreference = 'Stop'\nStop-VM -Name '{request.vm}' -Force",
            Operation.TEST_FAILOVER: (
                f"$ErrorActionPreference = 'Stop'\nStart-VMFailover -VMName '{request.vm}' -AsTest -Confirm:$false"
            ),
        }[request.operation]
        result = self.emulator.run(host, script, 60)
        if result.errors:
            raise errors.UsageError(str(result.errors[0]))
        return f"by-hand-{rec.vm_id}"

    def _find(self, vm: str, site: str | None) -> tuple[Record, str]:
        for host, recs in self._state.records.items():
            for rec in recs.values():
                if rec.name == vm and (site is None or self._state.hosts[host] == site):
                    return rec, host
        raise errors.UsageError(f"no VM {vm}")

    def inject_call_error(
        self,
        call: str,
        error: str,
        *,
        times: int = 1,
        vm: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        kind = {"rejected": "InvalidState", "terminal": "ObjectNotFound"}.get(error, error)
        self._state.faults.extend([kind] * times)

    def move(self, vm: str, site: str) -> None:
        """An operator ran a planned failover to `site` by hand, cmdlet by cmdlet."""
        primary = next(
            (h, r)
            for h, recs in self._state.records.items()
            for r in recs.values()
            if r.name == vm and r.mode == "Primary"
        )
        replica = self.emulator.pair(*primary)
        assert replica is not None
        if self._state.hosts[replica[0]] != site:
            raise errors.UsageError(f"{vm} is already at {site}")
        for host, line in [
            (primary[0], f"Stop-VM -Name '{vm}' -Force"),
            (primary[0], f"Start-VMFailover -VMName '{vm}' -Prepare -Confirm:$false"),
            (replica[0], f"Start-VMFailover -VMName '{vm}' -Confirm:$false"),
            (replica[0], f"Set-VMReplication -VMName '{vm}' -Reverse"),
            (replica[0], f"Start-VM -Name '{vm}'"),
        ]:
            result = self.emulator.run(host, "$ErrorActionPreference = 'Stop'\n" + line, 60)
            if result.errors:
                raise errors.UsageError(str(result.errors[0]))

    def lag(self, vm: str, seconds: float) -> Health:
        for recs in self._state.records.values():
            for rec in recs.values():
                if rec.name == vm and rec.mode == "Primary":
                    rec.lag = seconds
                    self.emulator.advance()
                    return Health(self.emulator.health(next(iter(self._state.hosts)), rec))
        raise errors.UsageError(f"no primary of {vm}")

    def resync_required(self, vm: str, *, manual: bool = False) -> float | None:
        for recs in self._state.records.values():
            for rec in recs.values():
                if rec.name == vm and rec.mode == "Primary":
                    rec.wmi = "WaitingForStartResynchronize"
                    return None
        raise errors.UsageError(f"no primary of {vm}")
