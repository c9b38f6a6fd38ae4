"""`drctl import`'s specs (ui/imported.py): what a fabric reports, as specs drctl plans nothing for.

Each provider case observes a real provider on a virtual clock (the
simulator, the ASR test vault through the real SDK, the emulated Hyper-V
hosts), imports it, loads the text as `drctl plan` does and plans it against
the same observation: no action, and the VMs mid-failover or unprotected
carry their comment. The real `drctl import` and `drctl plan` processes are
tests/e2e/test_import.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import builders
import fabrics
import pytest
from builders import TIMINGS
from fabric.hyperv import harness
from fabric.hyperv.controls import HostControls

from reconciler.core import plan, spec, state
from reconciler.core.desired import EMBEDDED_FABRIC
from reconciler.core.state import Operation
from reconciler.fabric import base
from reconciler.fabric.sim.inventory import Inventory, InventoryVM
from reconciler.kits.clock import VirtualClock
from reconciler.ui import imported

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
INVENTORY = Inventory(
    ("ams", "rtm"),
    (
        InventoryVM("sql01", "ams", ("ams", "rtm")),
        InventoryVM("app01", "ams", ("ams", "rtm")),
        InventoryVM("app02", "ams", ("ams", "rtm")),
        InventoryVM("web01", "rtm", ("rtm", "ams")),
        InventoryVM("web02", "ams", ("ams", "rtm")),
        InventoryVM("batch", "rtm", None),  # only the simulator reports a VM not replicated
    ),
    TIMINGS,
)
PROVIDERS = ("sim", "asr", "hyperv")
LAB = imported.Request(fabric=EMBEDDED_FABRIC, declared=False, plan="lab")


@dataclasses.dataclass
class Fabric:
    kind: str
    under: fabrics.FabricUnderTest
    clock: VirtualClock

    @property
    def provider(self) -> base.Provider:
        return self.under.provider

    @property
    def controls(self) -> fabrics.Controls:
        return self.under.controls


@pytest.fixture(params=PROVIDERS)
def fabric(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Fabric]:
    clock = VirtualClock(T0)
    with fabrics.FACTORIES[request.param](tmp_path / "fabric", clock, INVENTORY) as under:
        yield Fabric(request.param, under, clock)


def _import(
    observed: state.Observed, asked: imported.Request = LAB
) -> tuple[imported.Imported, dict[str, str], plan.Plan]:
    """Import, then plan the result against the same observation, as `drctl plan` would."""
    now = observed.at or T0
    found = imported.import_specs(observed, asked, {}, now)
    texts = found.texts()
    desired = spec.load_files({Path(n): t for n, t in texts.items()})
    built = plan.build_plans(desired, {EMBEDDED_FABRIC: observed}, now)
    return found, texts, built


def _fail_over_by_hand(under: Fabric, vm: str, site: str) -> None:
    """An operator's unplanned failover outside drctl, to its end: CommitPending at `site`."""
    if under.kind == "hyperv":
        for line in (f"Start-VMFailover -VMName '{vm}' -Confirm:$false", f"Start-VM -Name '{vm}'"):
            controls = under.controls
            assert isinstance(controls, HostControls)
            script = f"$ErrorActionPreference = 'Stop'\n{line}"
            result = controls.emulator.run(harness.host_of(site), script, 60)
            assert not result.errors, result.errors
        return
    under.controls.start_by_hand(base.Request(vm, Operation.UNPLANNED_FAILOVER, site))
    under.clock.advance(30)


def test_an_import_of_a_fabric_at_rest_plans_nothing(fabric: Fabric) -> None:
    """Every VM where it runs, replicating as it does; the common placement in the defaults."""
    observed = fabric.provider.observe()
    found, texts, built = _import(observed)

    text = texts["lab.yaml"]
    assert built.actions == ()
    assert [vp.name for vp in built.vms if vp.action is not None] == []
    assert "  defaults: {activeSite: ams, replication: ams->rtm}" in text
    assert "    - name: sql01\n" in text
    assert "    - {name: web01, activeSite: rtm, replication: rtm->ams}\n" in text
    placed = {vp.name: vp.phase for vp in built.vms}
    expected = {"sql01", "app01", "app02", "web01", "web02"}
    if fabric.under.reports_unprotected:
        expected.add("batch")
    assert set(placed) == expected
    # ASR reports no power: a VM it keeps active is as placed as drctl can know it.
    if fabric.kind == "sim":
        assert set(placed.values()) == {plan.Phase.CONVERGED}
    assert found.counts() == (len(expected), 0)


def test_a_vm_failed_over_by_hand_and_not_committed_is_left_out_with_why(
    fabric: Fabric,
) -> None:
    """No spec is safe for it: wanting the new site commits it, the old one fails it back."""
    _fail_over_by_hand(fabric, "web02", "rtm")
    observed = fabric.provider.observe()
    assert observed.vms["web02"].protection_state is state.ProtectionState.COMMIT_PENDING

    _, texts, built = _import(observed)

    text = texts["lab.yaml"]
    assert "    # - name: web02\n" in text
    assert "web02 is left out, so that drctl leaves it alone: mid-failover: failed over to rtm" in (
        " ".join(line.strip("# ") for line in text.splitlines())
    )
    assert built.actions == ()
    assert "web02" in built.unmanaged
    assert "web02" not in {vp.name for vp in built.vms}


@pytest.mark.parametrize("fabric", ["sim", "asr"], indirect=True)
def test_a_vm_whose_failover_runs_is_left_out_and_nothing_is_planned(
    fabric: Fabric,
) -> None:
    """It may end at either site: a spec naming the other would move it (Hyper-V: no jobs)."""
    job = fabric.controls.start_by_hand(base.Request("app01", Operation.PLANNED_FAILOVER, "rtm"))
    observed = fabric.provider.observe()
    assert observed.vms["app01"].job is not None

    _, texts, built = _import(observed)

    said = " ".join(line.strip("# ") for line in texts["lab.yaml"].splitlines())
    assert (
        "app01 is left out, so that drctl leaves it alone: mid-failover: PlannedFailover to "
        in said
    )
    assert job.rsplit("/", 1)[-1] in said
    assert "    # - name: app01\n" in texts["lab.yaml"]
    assert built.actions == ()
    assert "app01" in built.unmanaged


@pytest.mark.parametrize("fabric", ["sim"], indirect=True)
def test_an_unprotected_vm_is_written_with_replication_off_and_its_comment(
    fabric: Fabric,
) -> None:
    """Off, unconfirmed: drctl enables nothing, and never disables what someone sets up later."""
    _, texts, built = _import(fabric.provider.observe())

    text = texts["lab.yaml"]
    assert "    - {name: batch, activeSite: rtm, replication: off}\n" in text
    said = " ".join(line.strip("# ") for line in text.splitlines())
    assert "unprotected: batch runs at rtm with no replication." in said
    assert "Commit `replication: rtm->ams` to protect it." in said
    assert "confirmDisableReplication: true" not in text.replace(
        "`confirmDisableReplication: true`", ""
    )
    batch = next(vp for vp in built.vms if vp.name == "batch")
    assert batch.phase is plan.Phase.CONVERGED
    assert batch.action is None


def test_a_plan_of_500_vms_is_a_line_per_vm() -> None:
    """The defaults carry the common placement: a VM at the usual site is `- name: X`."""
    vms = [builders.vm(f"vm{i:03}") for i in range(495)]
    vms += [builders.vm(f"dr{i}", "rtm") for i in range(5)]
    _, texts, built = _import(builders.observed(*vms))

    lines = texts["lab.yaml"].splitlines()
    assert len(lines) <= 500 + 15
    assert max(len(line) for line in lines) <= 100
    assert built.actions == ()
    assert sum(1 for line in lines if line.startswith("    - {name: dr")) == 5


def test_each_recovery_plan_becomes_a_plan_with_its_groups_in_boot_order() -> None:
    """A VM in no recovery plan goes to --plan; drctl's own `drctl-P` comes back as P."""
    observed = builders.observed(*(builders.vm(n) for n in ("sql01", "app01", "web01", "x1")))
    plans = (
        base.FabricPlan("drctl-finance", (("sql01",), ("app01", "web01"))),
        base.FabricPlan("empty", ((), ("nowhere",))),
    )
    _, texts, built = _import(observed, dataclasses.replace(LAB, recovery_plans=plans))

    assert sorted(texts) == ["finance.yaml", "lab.yaml"]
    finance = texts["finance.yaml"]
    assert "metadata: {name: finance}" in finance
    assert (
        "  groups:\n"
        "    - {name: boot1, vms: [sql01]}\n"
        "    - {name: boot2, after: [boot1], vms: [app01, web01]}\n"
    ) in finance
    assert "From the recovery plan 'drctl-finance'" in finance
    assert "    - name: x1\n" in texts["lab.yaml"]
    assert built.actions == ()
    assert {vp.name: vp.plan for vp in built.vms}["web01"] == "finance"


def test_names_a_yaml_reader_would_take_for_something_else_are_quoted() -> None:
    """`off`, `true`, `0123`, a colon: each reads back as the VM's own name."""
    names = ("off", "true", "0123", "a: b", "web 01", "#x")
    _, texts, built = _import(builders.observed(*(builders.vm(n) for n in names)))

    desired = spec.load_files({Path(n): t for n, t in texts.items()})
    assert sorted(vm.name for vm in desired.vms()) == sorted(names)
    assert built.actions == ()


def test_a_vm_the_planner_would_act_on_is_left_out_with_its_reason() -> None:
    """The last word is the planner's: here a resync it would start."""
    allowed = builders.PROTECTED_OPS | {Operation.RESYNC}
    needs = builders.vm("db", rstate=state.ReplicationState.RESYNC_REQUIRED, allowed=allowed)
    _, texts, built = _import(builders.observed(needs, builders.vm("ok")))

    said = " ".join(line.strip("# ") for line in texts["lab.yaml"].splitlines())
    assert "db is left out, so that drctl leaves it alone: drctl would act on it now:" in said
    assert "resyncing it" in said
    assert built.actions == ()
    assert [vp.name for vp in built.vms] == ["ok"]


def test_vms_already_in_a_plan_and_the_glob() -> None:
    """--vms picks by name; a VM some plan already has is not imported again."""
    observed = builders.observed(*(builders.vm(n) for n in ("web01", "web02", "sql01")))
    found, texts, _ = _import(
        observed, dataclasses.replace(LAB, vms="web*", managed=frozenset({"web02"}))
    )

    assert found.managed == ("web02",)
    assert "    - name: web01\n" in texts["lab.yaml"]
    assert "web02" not in texts["lab.yaml"]
    assert "sql01" not in texts["lab.yaml"]
