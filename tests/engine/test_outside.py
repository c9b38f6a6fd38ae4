"""An operator fails a VM over in the portal while the spec says otherwise: drctl holds it.

The case of issue 9 rule 1, on the real simulator, executor and journal:
before the rule, drctl committed that failover within a resync, stopped the
copy users were still writing to, reverse-replicated over it and failed back.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from builders import desired, inventory, inventory_vm, want

from reconciler.core.plan import Phase
from reconciler.core.state import Operation
from reconciler.engine import execute, journal
from reconciler.fabric import base
from reconciler.fabric.sim import provider as sim
from reconciler.kits.clock import VirtualClock

REV = "rev1"


def operator_fails_over(tmp_path: Path) -> tuple[VirtualClock, sim.SimFabric, journal.Journal]:
    clock = VirtualClock()
    sim.init_fabric(tmp_path, inventory(inventory_vm("sql01")), clock)
    fabric = sim.SimFabric(tmp_path, clock)
    # In the portal: unplanned, no shutdown of the source; the ams copy runs on.
    fabric.start(base.Request("sql01", Operation.UNPLANNED_FAILOVER, "rtm"))
    clock.advance(10)
    return clock, fabric, journal.Journal(tmp_path)


def test_an_out_of_band_failover_is_held_and_nothing_is_issued(tmp_path: Path) -> None:
    clock, fabric, history = operator_fails_over(tmp_path)
    made_before = clock.now() - timedelta(minutes=5)
    executor = execute.Executor(fabric, history, clock)
    outcome = execute.apply(
        executor, desired(want("sql01", "ams")), REV, timeout=300, revision_made_at=made_before
    )
    assert not outcome.converged
    (vp,) = outcome.plan.vms
    assert vp.phase is Phase.HELD
    assert "outside drctl" in vp.reason and "commit `activeSite: rtm` to accept it" in vp.reason
    assert history.entries() == []  # no commit, no stop, no reverse replication, no failback
    assert [j.operation for j in fabric.list_jobs()] == [Operation.UNPLANNED_FAILOVER]
    assert set(fabric.observe().vms["sql01"].running) == {"ams", "rtm"}


def test_a_revision_made_after_the_move_may_move_it_back(tmp_path: Path) -> None:
    clock, fabric, history = operator_fails_over(tmp_path)
    executor = execute.Executor(fabric, history, clock)
    step = executor.step(desired(want("sql01", "ams")), REV, revision_made_at=clock.now())
    (vp,) = step.vms
    # Two copies run after a failover drctl did not make: still for a person.
    assert vp.phase is Phase.HELD
    assert vp.reason.startswith("copies run at rtm and ams")
