"""Every script the Hyper-V provider sends, written in one place.

Each starts with `$ErrorActionPreference = 'Stop'`, so that a refusal ends
the script instead of running on past it, and holds one cmdlet (or the
projection). None names `-ComputerName`: drctl connects to the host (or
cluster node) that holds the VM and runs there, so nothing hops again.
`Start-VMFailover` and `Complete-VMFailover` carry `-Confirm:$false` and
`Stop-VM` `-Force`: a confirmation prompt fails over remoting. Names are
quoted as PowerShell single-quoted strings. The tests' emulator parses
exactly these texts and refuses any other (tests/fabric/hyperv).
"""

from __future__ import annotations

PREAMBLE = "$ErrorActionPreference = 'Stop'\n"

# One projection per host: every VM with replication, names (never integer
# enums, whose numbers differ between module versions 1.1 and 2.0), ISO times
# in UTC, forced to a JSON array (5.1 writes one object bare, none as nothing).
# A replica's recovery snapshots (`-SnapshotType Replica`: the standard points;
# app-consistent ones are another type) come newest first, by CreationTime.
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


def quoted(text: str) -> str:
    """`text` as a PowerShell single-quoted string."""
    return "'" + text.replace("'", "''") + "'"


def stop_vm(vm: str, *, turn_off: bool = False) -> str:
    """Shut the VM down (`-Force`: no prompt), or turn it off (a stale copy: its writes are
    not drctl's to keep)."""
    return PREAMBLE + f"Stop-VM -Name {quoted(vm)}{' -TurnOff' if turn_off else ''} -Force"


def start_vm(vm: str) -> str:
    return PREAMBLE + f"Start-VM -Name {quoted(vm)}"


def prepare_failover(vm: str) -> str:
    return PREAMBLE + f"Start-VMFailover -VMName {quoted(vm)} -Prepare -Confirm:$false"


def failover(vm: str) -> str:
    """On the replica: fail over to the latest recovery point (planned or unplanned)."""
    return PREAMBLE + f"Start-VMFailover -VMName {quoted(vm)} -Confirm:$false"


def failover_to_point(vm: str, snapshot_id: str) -> str:
    """On the replica: an unplanned failover to the recovery snapshot `snapshot_id` (its Id).
    The only moment Hyper-V takes a point: after Start-VMFailover the VM runs from it until
    Complete-VMFailover; no cmdlet applies another one to a failed-over VM. A snapshot the
    host no longer keeps is refused by id (RecoverySnapshotNotFound) before any failover."""
    return (
        PREAMBLE
        + f"$s = @(Get-VMSnapshot -VMName {quoted(vm)} -SnapshotType Replica | "
        + f'Where-Object {{ "$($_.Id)" -eq {quoted(snapshot_id)} }})\n'
        + "if ($s.Count -ne 1) { Write-Error -Message 'no such recovery snapshot' "
        + "-ErrorId RecoverySnapshotNotFound -Category ObjectNotFound }\n"
        + "Start-VMFailover -VMRecoverySnapshot $s[0] -Confirm:$false"
    )


def test_failover(vm: str) -> str:
    return PREAMBLE + f"Start-VMFailover -VMName {quoted(vm)} -AsTest -Confirm:$false"


def test_vm_name(vm: str) -> str:
    """The name Hyper-V gives the test VM of a test failover."""
    return f"{vm} - Test"


def stop_failover(vm: str) -> str:
    """Hyper-V's undo: removes a test VM, or reverts a -Prepare on the primary
    (allowed only so: engine.guard.STEP_SCOPES)."""
    return PREAMBLE + f"Stop-VMFailover -VMName {quoted(vm)}"


def reverse(vm: str) -> str:
    """On the failed-over replica of a planned failover: it becomes the primary."""
    return PREAMBLE + f"Set-VMReplication -VMName {quoted(vm)} -Reverse"


def as_replica(vm: str) -> str:
    """On the old primary after an unplanned failover: make it a replica again."""
    return PREAMBLE + f"Set-VMReplication -VMName {quoted(vm)} -AsReplica"


def reverse_to(vm: str, replica_server: str) -> str:
    """On the committed replica after an unplanned failover: replicate back to the old primary."""
    return (
        PREAMBLE
        + f"Set-VMReplication -VMName {quoted(vm)} -Reverse -ReplicaServerName "
        + quoted(replica_server)
    )


def start_initial_replication(vm: str) -> str:
    return PREAMBLE + f"Start-VMInitialReplication -VMName {quoted(vm)}"


def complete_failover(vm: str) -> str:
    return PREAMBLE + f"Complete-VMFailover -VMName {quoted(vm)} -Confirm:$false"


def resynchronize(vm: str) -> str:
    return PREAMBLE + f"Resume-VMReplication -VMName {quoted(vm)} -Resynchronize"
