"""Plan and execute through a management-plane partition of the simulated fabric.

A disaster drctl cannot see into: ams stops answering while its VMs keep
running. drctl fails over (with consent) and then waits: the old copy's
power is Unknown, so it is never stopped blindly nor overwritten by reverse
replication. Once ams answers and reports the copy running, drctl stops it.
"""

from __future__ import annotations

from pathlib import Path

from builders import desired, inventory, inventory_vm, sim_fabric, want

from reconciler.core.plan import Phase
from reconciler.core.state import Operation
from reconciler.engine import execute, journal
from reconciler.kits.clock import VirtualClock

OP = Operation


def test_an_unknown_old_copy_is_never_stopped_and_the_vm_waits_for_its_site(
    tmp_path: Path,
) -> None:
    clock = VirtualClock()
    fabric = sim_fabric(tmp_path, inventory(inventory_vm("sql01")), clock)
    history = journal.Journal(tmp_path)
    try:
        executor = execute.Executor(fabric, history, clock, execute.Settings(poll_interval=1.0))
        fabric.partition("ams")
        wanted = desired(want("sql01", "rtm", allow_data_loss=True))
        outcome = execute.apply(executor, wanted, "rev1", timeout=120)
        assert not outcome.converged
        (sql01,) = outcome.plan.vms
        assert sql01.phase is Phase.WAITING_FOR_SITE
        assert "the power of the copy at ams is unknown" in sql01.reason
        assert [(e.operation, e.target_site) for e in history.entries()] == [
            (OP.UNPLANNED_FAILOVER, "rtm"),
            (OP.COMMIT, "rtm"),
        ]
        assert fabric.observe().vms["sql01"].power_unknown == ("ams",)

        fabric.heal("ams")  # the old copy ran all along: now drctl sees it
        outcome = execute.apply(executor, wanted, "rev1", timeout=600)
        # Stopped (drctl's own unplanned failover made rtm authoritative), then
        # held: reversing replication would overwrite the writes only ams holds.
        (sql01,) = outcome.plan.vms
        assert sql01.phase is Phase.HELD
        later = [(e.operation, e.target_site) for e in history.entries()][2:]
        assert later == [(OP.STOP_VM, "ams")]
        failover = history.entries()[0].job_id
        assert failover is not None
        discard = desired(
            want("sql01", "rtm", allow_data_loss=True)._replace(discard_lost_writes=failover)
        )
        assert execute.apply(executor, discard, "rev2", timeout=600).converged
        later = [(e.operation, e.target_site) for e in history.entries()][2:]
        assert later == [(OP.STOP_VM, "ams"), (OP.REVERSE_REPLICATE, "ams")]
    finally:
        history.close()
        fabric.close()
