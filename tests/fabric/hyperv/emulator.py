"""A Hyper-V Replica emulator at the runner interface: hosts, per-side VM records, cmdlets.

It interprets exactly the scripts the provider sends, written here again
independently of `reconciler.fabric.hyperv.script` (the projection as a
fixed text, each cmdlet as a pattern), and fails loudly on anything else: a
script it does not know, a `Start-VMFailover`/`Complete-VMFailover` without
`-Confirm:$false`, a `Stop-VM` without `-Force`, or a `-ComputerName` other
than the host connected to (a second hop: AccessDenied). Each side of a VM
is a record on the host holding it, keeping the WMI state; the PowerShell
state is derived from mode and WMI state as ../shared/hyperv.md table 2.3
says; every refused precondition answers an error record with the id that
section "What an emulator must reproduce" gives (tests assert the id).
Time comes from `now` (the test's virtual clock, or the wall clock for the
stand-in pwsh of the end-to-end tests, which keeps the state in a file).
"""

from __future__ import annotations

import dataclasses
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from reconciler import errors
from reconciler.fabric.hyperv.runner import ErrorRecord, Result

PREAMBLE = "$ErrorActionPreference = 'Stop'\n"
PROJECTION = (
    PREAMBLE
    + """$iso = { param($t) if ($t) { $t.ToUniversalTime().ToString('o') } else { $null } }
$r = @(Get-VMReplication -ReplicationRelationshipType Simple | ForEach-Object {
  $vm = Get-VM -Id $_.VMId
  $m = Measure-VMReplication -VM $vm -ReplicationRelationshipType Simple
  $test = $_.TestVirtualMachine
  [pscustomobject]@{
    VMName = $_.VMName; VMId = "$($_.VMId)"; Power = "$($vm.State)"
    Mode = "$($_.ReplicationMode)"; State = "$($_.ReplicationState)"
    Health = "$($_.ReplicationHealth)"; FrequencySec = $_.ReplicationFrequencySec
    PrimaryServer = $_.PrimaryServerName; ReplicaServer = $_.ReplicaServerName
    CurrentReplicaServer = $_.CurrentReplicaServerName
    LastReplicationTime = & $iso $_.LastReplicationTime
    FailedOverReplicationType = "$($m.FailedOverReplicationType)"
    TestVM = if ($test) { $test.Name } else { $null }
    TestVMPower = if ($test) { "$($test.State)" } else { $null }
    IsClustered = [bool]$vm.IsClustered
    Points = @(if ("$($_.ReplicationMode)" -eq 'Replica') {
      Get-VMSnapshot -VM $vm -SnapshotType Replica | Sort-Object CreationTime -Descending |
        ForEach-Object { [pscustomobject]@{
          Id = "$($_.Id)"; Name = $_.Name; Time = & $iso $_.CreationTime } } })
  } })
ConvertTo-Json -InputObject $r -Compress -Depth 4"""
)
_NAME = r"'(?P<vm>(?:[^']|'')+)'"
# Each cmdlet the provider may send, as one statement after the preamble.
COMMANDS: list[tuple[str, re.Pattern[str]]] = [
    ("stop", re.compile(rf"Stop-VM -Name {_NAME}(?P<off> -TurnOff)? -Force")),
    ("start", re.compile(rf"Start-VM -Name {_NAME}")),
    ("prepare", re.compile(rf"Start-VMFailover -VMName {_NAME} -Prepare -Confirm:\$false")),
    ("test", re.compile(rf"Start-VMFailover -VMName {_NAME} -AsTest -Confirm:\$false")),
    ("failover", re.compile(rf"Start-VMFailover -VMName {_NAME} -Confirm:\$false")),
    (
        "failover-point",
        re.compile(
            r"\$s = @\(Get-VMSnapshot -VMName "
            + _NAME
            + r" -SnapshotType Replica \| Where-Object \{ \"\$\(\$_\.Id\)\" -eq "
            r"'(?P<point>[0-9a-f-]+)' \}\)\n"
            r"if \(\$s\.Count -ne 1\) \{ Write-Error -Message 'no such recovery snapshot' "
            r"-ErrorId RecoverySnapshotNotFound -Category ObjectNotFound \}\n"
            r"Start-VMFailover -VMRecoverySnapshot \$s\[0\] -Confirm:\$false"
        ),
    ),
    ("stop-failover", re.compile(rf"Stop-VMFailover -VMName {_NAME}")),
    (
        "reverse-to",
        re.compile(
            rf"Set-VMReplication -VMName {_NAME} -Reverse -ReplicaServerName '(?P<server>[^']+)'"
        ),
    ),
    ("reverse", re.compile(rf"Set-VMReplication -VMName {_NAME} -Reverse")),
    ("as-replica", re.compile(rf"Set-VMReplication -VMName {_NAME} -AsReplica")),
    ("initial", re.compile(rf"Start-VMInitialReplication -VMName {_NAME}")),
    ("complete", re.compile(rf"Complete-VMFailover -VMName {_NAME} -Confirm:\$false")),
    ("resync", re.compile(rf"Resume-VMReplication -VMName {_NAME} -Resynchronize")),
]
CLASSES = {
    "stop": "StopVM",
    "start": "StartVM",
    "prepare": "StartVMFailover",
    "test": "StartVMFailover",
    "failover": "StartVMFailover",
    "failover-point": "StartVMFailover",
    "stop-failover": "StopVMFailover",
    "reverse-to": "SetVMReplication",
    "reverse": "SetVMReplication",
    "as-replica": "SetVMReplication",
    "initial": "StartVMInitialReplication",
    "complete": "CompleteVMFailover",
    "resync": "ResumeVMReplication",
}
# Table 2.3: the PowerShell state of (mode, WMI state) for a simple relationship.
_PRIMARY = {
    "Ready": "ReadyForInitialReplication",
    "WaitingToCompleteInitialReplication": "InitialReplicationInProgress",
    "Replicating": "Replicating",
    "SyncedReplicationComplete": "PreparedForFailover",
    "Suspended": "Suspended",
    "Critical": "Error",
    "WaitingForStartResynchronize": "WaitingForStartResynchronize",
    "Resynchronizing": "Resynchronizing",
}
_REPLICA = {
    "WaitingToCompleteInitialReplication": "WaitingForInitialReplication",
    "Replicating": "Replicating",
    "Recovered": "FailedOverWaitingCompletion",
    "Committed": "FailedOver",
    "Suspended": "Suspended",
    "Critical": "Error",
    "Resynchronizing": "Resynchronizing",
}


class HvError(Exception):
    def __init__(self, error_id: str, category: str, message: str) -> None:
        super().__init__(message)
        self.record = (error_id, category, message)


def _state_error(
    message: str = "The operation cannot be performed while the object is in its current state.",
) -> HvError:
    return HvError("InvalidState", "InvalidOperation", message)


@dataclass
class Record:
    """One side of a replicated VM, on the host holding it."""

    name: str
    vm_id: str
    mode: str  # Primary | Replica
    wmi: str
    power: str  # Running | Off
    primary: str  # host names of the relationship
    replica: str
    synced: float | None  # the newest write this side holds from replication (epoch s)
    frequency: float = 30.0
    failed_over_type: str = "None"
    test_vm: str | None = None
    test_power: str = "Off"
    busy_until: float | None = None  # initial replication or resync finishing
    lag: float = 0.0
    # A replica's recovery snapshots (type Replica), one per replication interval,
    # the newest `history` kept: [id, epoch s], oldest first.
    points: list[list[Any]] = field(default_factory=list)
    history: int = 4

    @property
    def ps_state(self) -> str:
        table = _PRIMARY if self.mode == "Primary" else _REPLICA
        return table.get(self.wmi, "Disabled")


@dataclass
class State:
    """Everything the emulated hosts hold; JSON-able, for the stand-in pwsh's file."""

    hosts: dict[str, str]  # host -> site
    records: dict[str, dict[str, Record]] = field(default_factory=dict)  # host -> vm_id -> record
    down: list[str] = field(default_factory=list)  # sites dark (replication cut)
    partitioned: list[str] = field(default_factory=list)  # sites drctl cannot reach
    failures: dict[str, int] = field(default_factory=dict)  # "vm|command" -> times left
    faults: list[str] = field(default_factory=list)  # the next scripts' transport faults
    calls: list[str] = field(default_factory=list)  # "host|command|vm" of every cmdlet run
    initial_seconds: float = 3.0
    resync_seconds: float = 3.0

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> State:
        raw = json.loads(text)
        raw["records"] = {
            h: {i: Record(**r) for i, r in recs.items()} for h, recs in raw["records"].items()
        }
        return cls(**raw)


class Emulator:
    """The hosts of both sites; `run` is the runner interface (`hyperv.runner.Runner`)."""

    def __init__(self, state: State, now: Callable[[], float]) -> None:
        self.state = state
        self.now = now

    # --- building ------------------------------------------------------------------

    def add_vm(self, name: str, primary: str, replica: str, *, running: bool = True) -> str:
        vm_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"hv/{name}"))
        now = self.now()
        power = "Running" if running else "Off"
        self.state.records.setdefault(primary, {})[vm_id] = Record(
            name, vm_id, "Primary", "Replicating", power, primary, replica, now
        )
        copy = Record(name, vm_id, "Replica", "Replicating", "Off", primary, replica, now)
        _keep_points(copy, now)
        self.state.records.setdefault(replica, {})[vm_id] = copy
        return vm_id

    def site_of(self, host: str) -> str:
        return self.state.hosts[host]

    def pair(self, host: str, record: Record) -> tuple[str, Record] | None:
        """The other side of `record` (its host and record), wherever it is."""
        for other, recs in self.state.records.items():
            if other != host and record.vm_id in recs:
                return other, recs[record.vm_id]
        return None

    def linked(self, a: str, b: str) -> bool:
        """Replication flows between hosts a and b (neither site dark)."""
        return self.site_of(a) not in self.state.down and self.site_of(b) not in self.state.down

    # --- time ----------------------------------------------------------------------

    def advance(self) -> None:
        now = self.now()
        for host, recs in self.state.records.items():
            for rec in recs.values():
                if rec.mode != "Primary":
                    continue
                other = self.pair(host, rec)
                if other is None or not self.linked(host, other[0]):
                    continue
                peer = other[1]
                if rec.busy_until is not None and rec.busy_until <= now:
                    rec.busy_until = None
                    rec.wmi = peer.wmi = "Replicating"
                if rec.wmi == "Replicating" and peer.wmi == "Replicating":
                    rec.synced = peer.synced = max(rec.synced or 0, now - rec.lag)
                    _keep_points(peer, peer.synced)

    # --- the runner interface ----------------------------------------------------------

    def run(self, host: str, script: str, timeout: float) -> Result:
        if host not in self.state.hosts:
            raise errors.TransientError(f"{host}: no such host (name resolution failed)")
        site = self.site_of(host)
        if site in self.state.down or site in self.state.partitioned:
            raise errors.TransientError(f"{host} does not answer over WinRM (connection refused)")
        if self.state.faults and script != PROJECTION and self.state.faults[0] == "lost":
            # A cmdlet's request lost on the way: the host never ran it, drctl saw a timeout.
            self.state.faults.pop(0)
            raise errors.TransientError(f"{host}: read timed out")
        if self.state.faults and self.state.faults[0] != "lost":
            fault = self.state.faults.pop(0)
            if fault == "throttled":
                raise errors.ThrottledError(f"{host}: WinRM quota reached", None)
            if fault == "transient":
                raise errors.TransientError(f"{host}: read timed out")
            return Result(
                (),
                (
                    ErrorRecord(
                        f"{fault},Microsoft.HyperV.PowerShell.Commands.GetVM",
                        "InvalidOperation",
                        "injected",
                    ),
                ),
            )
        self.advance()
        if script == PROJECTION:
            return Result((json.dumps(self.project(host), separators=(",", ":")),))
        if not script.startswith(PREAMBLE):
            raise AssertionError(f"script without $ErrorActionPreference = 'Stop': {script!r}")
        body = script[len(PREAMBLE) :]
        hop = re.search(r"-ComputerName '?([^' ]+)", body)
        if hop and hop.group(1).lower() != host.lower():
            return _error(
                "AccessDenied",
                "PermissionDenied",
                "GetVMCommand",
                "Access is denied (a second hop)",
            )
        for command, pattern in COMMANDS:
            found = pattern.fullmatch(body)
            if found is None:
                continue
            vm = found.group("vm").replace("''", "'")
            self.state.calls.append(f"{host}|{command}|{vm}")
            try:
                self._fail_if_injected(vm, command)
                warnings = self._apply(host, command, vm, found)
            except HvError as exc:
                error_id, category, message = exc.record
                return _error(error_id, category, CLASSES[command], message)
            return Result((), (), tuple(warnings))
        raise AssertionError(f"the emulator does not know this script: {script!r}")

    def close(self) -> None:
        """Nothing to release."""

    def _fail_if_injected(self, vm: str, command: str) -> None:
        key = f"{vm}|{command}"
        if self.state.failures.get(key, 0) > 0:
            self.state.failures[key] -= 1
            raise HvError("OperationFailed", "NotSpecified", f"'{vm}' failed (injected fault)")

    # --- observation ---------------------------------------------------------------

    def project(self, host: str) -> list[dict[str, Any]]:
        return [
            {
                "VMName": rec.name,
                "VMId": rec.vm_id,
                "Power": rec.power,
                "Mode": rec.mode,
                "State": rec.ps_state,
                "Health": self.health(host, rec),
                "FrequencySec": int(rec.frequency),
                "PrimaryServer": rec.primary,
                "ReplicaServer": rec.replica,
                "CurrentReplicaServer": rec.replica,
                "LastReplicationTime": None
                if rec.synced is None
                else datetime.fromtimestamp(rec.synced, UTC).isoformat(),
                "FailedOverReplicationType": rec.failed_over_type,
                "TestVM": rec.test_vm,
                "TestVMPower": rec.test_power if rec.test_vm else None,
                "IsClustered": False,
                "Points": [
                    {
                        "Id": point_id,
                        "Name": f"{rec.name} - Standard Replica - "
                        f"({datetime.fromtimestamp(t, UTC):%m/%d/%Y - %H:%M:%S})",
                        "Time": datetime.fromtimestamp(t, UTC).isoformat(),
                    }
                    for point_id, t in sorted(rec.points, key=lambda p: -p[1])
                ]
                if rec.mode == "Replica"
                else [],
            }
            for rec in self.state.records.get(host, {}).values()
        ]

    def health(self, host: str, rec: Record) -> str:
        if rec.wmi in {"Critical", "WaitingForStartResynchronize"}:
            return "Critical"
        if rec.wmi in {"Ready", "WaitingToCompleteInitialReplication", "Committed", "Suspended"}:
            return "Warning"
        if rec.mode == "Primary" and rec.wmi == "Replicating" and rec.synced is not None:
            behind = self.now() - rec.synced
            if behind > 5 * rec.frequency:
                return "Critical"
            if behind > 2 * rec.frequency:
                return "Warning"
        return "Normal"

    # --- cmdlets ---------------------------------------------------------------------

    def _named(self, host: str, vm: str) -> Record:
        for rec in self.state.records.get(host, {}).values():
            if rec.name == vm:
                return rec
            if rec.test_vm == vm:
                return rec
        raise HvError(
            "InvalidParameter",
            "InvalidArgument",
            f'Hyper-V was unable to find a virtual machine with name "{vm}".',
        )

    def _apply(  # noqa: PLR0915 (one cmdlet per branch, as the table in hyperv.md reads)
        self, host: str, command: str, vm: str, found: re.Match[str]
    ) -> list[str]:
        rec = self._named(host, vm)
        now = self.now()
        other = self.pair(host, rec)
        if command in {"stop", "start"} and rec.test_vm == vm and rec.name != vm:
            want = "Off" if command == "stop" else "Running"
            if rec.test_power == want:
                return [f"The virtual machine '{vm}' is already in the desired state."]
            rec.test_power = want
            return []
        if rec.test_vm == vm and rec.name != vm:
            # The test VM's own mode is TestReplica: no replication of its own, so no
            # failover cmdlet applies to it (only its replica's Stop-VMFailover removes it).
            raise HvError(
                "OperationFailed",
                "InvalidOperation",
                f"Replication is not enabled for virtual machine '{vm}'.",
            )
        if command == "stop":
            if rec.power == "Off":
                return [f"The virtual machine '{vm}' is already in the desired state."]
            rec.power = "Off"
            return []
        if command == "start":
            if rec.power == "Running":
                return [f"The virtual machine '{vm}' is already in the desired state."]
            if rec.mode == "Replica" and rec.wmi not in {"Recovered", "Committed"}:
                raise _state_error(
                    "A replica virtual machine cannot be started unless it is failed over."
                )
            if rec.mode == "Primary" and rec.wmi == "SyncedReplicationComplete":
                raise _state_error(
                    "The virtual machine is prepared for failover and cannot be started."
                )
            rec.power = "Running"
            return []
        if command == "prepare":
            if rec.mode != "Primary":
                raise HvError(
                    "OperationFailed",
                    "InvalidOperation",
                    "The operation is not applicable on a replica virtual machine.",
                )
            if rec.power != "Off":
                raise _state_error(
                    "The primary virtual machine must be shut down to prepare it for failover."
                )
            if rec.wmi != "Replicating":
                raise _state_error(
                    "Virtual machine is not in a valid replication state to perform the operation."
                )
            if other is None or not self.linked(host, other[0]):
                raise HvError(
                    "OperationFailed",
                    "NotSpecified",
                    "Hyper-V failed to send the pending changes to the replica server.",
                )
            rec.wmi = "SyncedReplicationComplete"
            rec.synced = other[1].synced = now
            return []
        if command == "failover-point":
            point = found.group("point")
            if rec.mode != "Replica" or all(p[0] != point for p in rec.points):
                raise HvError(
                    "RecoverySnapshotNotFound", "ObjectNotFound", "no such recovery snapshot"
                )
        if command in {"failover", "failover-point", "test"}:
            if rec.mode == "Primary":
                raise HvError(
                    "InvalidParameter",
                    "InvalidArgument",
                    "The Prepare parameter must be provided on a primary virtual machine.",
                )
            if rec.power != "Off":
                raise _state_error()
            allowed = (
                {"Replicating", "Suspended"}
                if command == "test"
                else {"Replicating", "Resynchronizing", "Suspended"}
            )
            if rec.wmi not in allowed or rec.synced is None:
                raise _state_error()
            if command == "test":
                if rec.test_vm is not None:
                    raise HvError(
                        "InvalidOperation",
                        "InvalidOperation",
                        "A test failover is already running for this virtual machine.",
                    )
                rec.test_vm, rec.test_power = f"{rec.name} - Test", "Off"
                return []
            prepared = (
                other is not None
                and other[1].wmi == "SyncedReplicationComplete"
                and other[1].synced == rec.synced
            )
            rec.wmi = "Recovered"
            rec.busy_until = None
            rec.failed_over_type = "Planned" if prepared else "Regular"
            if command == "failover-point":
                # The VM boots the chosen point: the writes replicated after it are gone.
                rec.synced = next(t for i, t in rec.points if i == found.group("point"))
                rec.failed_over_type = "Regular"
            return []
        if command == "stop-failover":
            if rec.test_vm is not None:
                rec.test_vm = None
                return []
            if rec.mode == "Replica" and rec.wmi == "Recovered":
                rec.wmi, rec.power, rec.failed_over_type = "Replicating", "Off", "None"
                return []
            if rec.mode == "Primary" and rec.wmi == "SyncedReplicationComplete":
                rec.wmi = "Replicating"
                return []
            raise _state_error()
        if command == "reverse":
            if rec.mode == "Primary":
                raise HvError(
                    "OperationFailed",
                    "InvalidOperation",
                    "The operation is not applicable on a primary virtual machine.",
                )
            if rec.wmi != "Recovered":
                raise _state_error()
            if (
                other is None
                or not self.linked(host, other[0])
                or other[1].wmi != "SyncedReplicationComplete"
            ):
                raise HvError(
                    "OperationFailed",
                    "NotSpecified",
                    "The primary server is not ready to receive replication.",
                )
            old_host, old = other
            rec.mode, rec.wmi, rec.failed_over_type = "Primary", "Replicating", "None"
            old.mode, old.wmi, old.power = "Replica", "Replicating", "Off"
            rec.points, old.points = [], []  # the recovery points are merged
            rec.primary = old.primary = host
            rec.replica = old.replica = old_host
            rec.synced = old.synced = now
            return []
        if command == "complete":
            if rec.mode == "Primary":
                raise HvError(
                    "OperationFailed",
                    "InvalidOperation",
                    "The operation is not applicable on a primary virtual machine.",
                )
            if rec.wmi != "Recovered":
                raise _state_error()
            rec.wmi = "Committed"
            rec.points = []  # Complete-VMFailover removes the other recovery points
            return []
        if command == "as-replica":
            if rec.mode != "Primary":
                raise HvError(
                    "OperationFailed",
                    "InvalidOperation",
                    "The virtual machine is already a replica.",
                )
            if rec.power != "Off":
                raise _state_error("The virtual machine must be turned off to make it a replica.")
            rec.mode, rec.wmi = "Replica", "WaitingToCompleteInitialReplication"
            return []
        if command == "reverse-to":
            server = found.group("server")
            if rec.mode == "Primary":
                raise HvError(
                    "OperationFailed",
                    "InvalidOperation",
                    "The operation is not applicable on a primary virtual machine.",
                )
            if rec.wmi not in {"Committed", "Recovered"}:
                raise _state_error()
            if server not in self.state.hosts or other is None or other[0] != server:
                raise HvError(
                    "InvalidParameter",
                    "InvalidArgument",
                    f"'{server}' is not the server holding the replica.",
                )
            if not self.linked(host, server) or other[1].mode != "Replica":
                raise HvError(
                    "OperationFailed",
                    "NotSpecified",
                    f"'{server}' does not accept replication for this virtual machine.",
                )
            rec.mode, rec.wmi, rec.failed_over_type = "Primary", "Ready", "None"
            rec.primary = other[1].primary = host
            rec.replica = other[1].replica = server
            return []
        if command == "initial":
            if rec.mode != "Primary" or rec.wmi != "Ready":
                raise _state_error()
            rec.wmi = "WaitingToCompleteInitialReplication"
            rec.busy_until = now + self.state.initial_seconds
            return []
        if command == "resync":
            if rec.wmi not in {
                "Suspended",
                "WaitingForStartResynchronize",
                "ResynchronizeSuspended",
                "Critical",
            }:
                raise _state_error(
                    "Could not change the replication state. Virtual machine is not in a valid replication state to perform the operation."
                )
            rec.wmi = "Resynchronizing"
            if other is not None:
                other[1].wmi = "Resynchronizing"
                other[1].points = []  # a resync deletes the recovery points
            rec.busy_until = now + self.state.resync_seconds
            return []
        raise AssertionError(command)


def _keep_points(replica: Record, synced: float) -> None:
    """The replica's recovery snapshots up to `synced`: one per replication interval (the
    cycle's end), the newest `history` kept, as Hyper-V prunes its recovery history."""
    step = max(replica.frequency, 1.0)
    last = replica.points[-1][1] if replica.points else None
    first = synced - step * (replica.history - 1)
    t = synced if last is None else max(last + step, first)
    while t <= synced + 1e-9:
        point_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"hv-point/{replica.vm_id}/{t:.3f}"))
        replica.points.append([point_id, t])
        t += step
    del replica.points[: max(0, len(replica.points) - replica.history)]


def _error(error_id: str, category: str, cls: str, message: str) -> Result:
    return Result(
        (),
        (ErrorRecord(f"{error_id},Microsoft.HyperV.PowerShell.Commands.{cls}", category, message),),
    )
