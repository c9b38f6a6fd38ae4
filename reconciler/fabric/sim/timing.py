"""How long each simulated operation takes, and how often replication ships.

Part of the simulator, not of the lifecycle model: the model says what an
operation does and when it is allowed; how long it takes is the simulated
fabric's (and the test servers' that imitate the real fabrics). Read from the
inventory's `timings`, stored with the fabric.
"""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.core.lifecycle import VMState
from reconciler.core.state import FailoverKind, Operation

MB_PER_GB = 1024


@dataclass(frozen=True, slots=True)
class Timings:
    """How long each operation takes, in seconds, and how often replication ships.

    `initial_replication` is a full copy of a VM whose size the inventory
    does not give; a VM with a `sizeGB` takes its size at `replication_mbps`.
    """

    planned_failover: float = 3.0
    unplanned_failover: float = 2.0
    commit: float = 1.0
    reverse_replicate: float = 2.0
    initial_replication: float = 6.0
    stop_vm: float = 1.0
    test_failover: float = 2.0
    test_failover_cleanup: float = 1.0
    replication_interval: float = 5.0
    replication_mbps: float = 100.0

    def typical(self) -> dict[Operation, float]:
        """How long each timed operation takes without lag: the planner's default deadlines.

        The full copies (initial replication, resync) are left out: never timed.
        """
        return {
            Operation.PLANNED_FAILOVER: self.planned_failover,
            Operation.UNPLANNED_FAILOVER: self.unplanned_failover,
            Operation.APPLY_RECOVERY_POINT: self.unplanned_failover,
            Operation.COMMIT: self.commit,
            Operation.REVERSE_REPLICATE: self.reverse_replicate,
            Operation.DISABLE_REPLICATION: self.commit,
            Operation.STOP_VM: self.stop_vm,
            Operation.START_VM: self.stop_vm,
            Operation.TEST_FAILOVER: self.test_failover,
            Operation.TEST_FAILOVER_CLEANUP: self.test_failover_cleanup,
        }

    def full_copy(self, size_gb: float | None) -> float:
        """How long an initial replication (or a resync) of a VM of `size_gb` takes."""
        if size_gb is None:
            return self.initial_replication
        return size_gb * MB_PER_GB / self.replication_mbps

    def duration(
        self,
        vm: VMState,
        op: Operation,
        *,
        behind_seconds: float = 0.0,
        size_gb: float | None = None,
    ) -> float:
        """How long `op` takes on `vm`, of `size_gb`, whose replication is `behind_seconds` behind.

        A planned failover ships what replication is behind by before it
        starts the replica: one second more per second of lag (the link
        carries the writes at the pace they were made). Reverse replication
        after a planned failover ships a delta; after an unplanned one the
        copies diverged and it is a full copy, like enabling replication and
        a resync. ApplyRecoveryPoint boots the replica again, as long as an
        unplanned failover; DisableReplication is bookkeeping, as long as a
        commit; StartVM takes as long as StopVM.
        """
        if op is Operation.PLANNED_FAILOVER:
            return self.planned_failover + max(0.0, behind_seconds)
        if op is Operation.REVERSE_REPLICATE and vm.last_failover is not FailoverKind.PLANNED:
            return self.full_copy(size_gb)
        if op in {Operation.ENABLE_REPLICATION, Operation.RESYNC}:
            return self.full_copy(size_gb)
        return self.typical()[op]
