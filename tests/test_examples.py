"""The examples a newcomer runs: every spec in specs/ loads, plans and converges on the
example inventory (what `make run` does, here on a virtual clock)."""

from __future__ import annotations

from pathlib import Path

from reconciler.core import plan
from reconciler.engine import execute, journal
from reconciler.fabric.sim import inventory
from reconciler.fabric.sim import provider as sim
from reconciler.gitops import specdir
from reconciler.kits.clock import VirtualClock

ROOT = Path(__file__).resolve().parent.parent


def test_every_example_spec_validates() -> None:
    files = specdir.spec_files(ROOT / "specs")
    assert files, "specs/ holds the example desired state"
    desired = specdir.load_specs(ROOT / "specs")
    assert {Path(p.file).name for p in desired.plans} == {f.name for f in files}


def test_examples_plan_and_converge_on_the_example_inventory(tmp_path: Path) -> None:
    desired = specdir.load_specs(ROOT / "specs")
    clock = VirtualClock()
    sim.init_fabric(tmp_path, inventory.load_inventory(ROOT / "examples" / "inventory.yaml"), clock)
    with sim.SimFabric(tmp_path, clock) as fabric:
        first = plan.build_plan(desired, fabric.observe(), clock.now())
        assert first.unmanaged == ("legacy01",)
        assert [a.operation for a in first.ready_actions()] == ["StopVM", "StopVM"]
        executor = execute.Executor(fabric, journal.Journal(tmp_path), clock)
        outcome = execute.apply(executor, desired, "examples", timeout=600)
        history = fabric.list_jobs()
    assert outcome.converged
    jobs = [j for j in history if j.operation in {"PlannedFailover", "UnplannedFailover"}]
    assert [j.operation for j in jobs] == ["PlannedFailover"] * 5
    assert all(j.data_loss_seconds == 0 for j in jobs)
