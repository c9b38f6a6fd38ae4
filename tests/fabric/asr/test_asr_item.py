"""`asrItem: <item name>` on a VM entry: the protected item a plan means when two share a name.

Validated at its file:line (on an ASR fabric only); the provider matches the
request's item by its name and checks its friendly name, through the real SDK
against the test vault, before anything is sent.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from builders import TIMINGS
from fabric.asr import harness

from reconciler import errors
from reconciler.core.state import Operation
from reconciler.errors import SpecError
from reconciler.fabric import base
from reconciler.fabric.sim.inventory import Inventory, InventoryVM
from reconciler.gitops import specdir
from reconciler.kits.clock import WallClock

ASR = """\
apiVersion: drctl/v1
kind: Fabric
metadata: {name: contoso}
spec:
  asr: {subscriptionId: 7f3c2a9e-5b1d-4c8e-9a6f-2d4b8e1c0a53, resourceGroup: rg, vault: v}
  sites: {ams: {protectionContainer: cloud-ams}, rtm: {protectionContainer: cloud-rtm}}
"""
SIMULATOR = """\
apiVersion: drctl/v1
kind: Fabric
metadata: {name: lab}
spec:
  simulator: {}
  sites: {ams: {}, rtm: {}}
"""
PLAN = textwrap.dedent("""\
    apiVersion: drctl/v1
    kind: RecoveryPlan
    metadata: {name: finance}
    spec:
      sites: [ams, rtm]
      defaults: {activeSite: ams, replication: ams->rtm}
      vms:
        - name: sql01
        - name: web01
          asrItem: 0c6e8a3c-2f7b-5d1e-9a40-7b2d9e6c1f85
    """)


def test_an_asr_item_on_an_asr_fabric_is_kept_with_its_vm(tmp_path: Path) -> None:
    (tmp_path / "contoso.yaml").write_text(ASR)
    (tmp_path / "finance.yaml").write_text(PLAN)
    vms = {vm.name: vm for vm in specdir.load_specs(tmp_path).vms()}
    assert (vms["web01"].vm_id, vms["sql01"].vm_id) == (
        "0c6e8a3c-2f7b-5d1e-9a40-7b2d9e6c1f85",
        None,
    )


@pytest.mark.parametrize(
    ("fabric", "runs_on"),
    [
        (SIMULATOR, "fabric 'lab', a simulator"),
        (None, "the embedded simulator (the specs declare no Fabric)"),
    ],
)
def test_an_asr_item_on_another_fabric_is_an_error_at_its_line(
    tmp_path: Path, fabric: str | None, runs_on: str
) -> None:
    if fabric is not None:
        (tmp_path / "fabric.yaml").write_text(fabric)
    (tmp_path / "finance.yaml").write_text(PLAN)
    with pytest.raises(SpecError) as caught:
        specdir.load_specs(tmp_path)
    assert [(Path(p.file).name, p.line, p.message) for p in caught.value.problems] == [
        (
            "finance.yaml",
            10,
            (
                "asrItem names a protected item of an Azure Site Recovery vault, but plan "
                f"'finance' runs on {runs_on}, whose VMs are known by name only: remove asrItem"
            ),
        )
    ]


NAMES = ("sql01", "web01", "web02")


@pytest.fixture
def twins(tmp_path: Path) -> Iterator[harness.AsrUnderTest]:
    """A vault where web02's item is renamed web01 in the portal: two items named web01."""
    inventory = Inventory(
        ("ams", "rtm"), tuple(InventoryVM(n, "ams", ("ams", "rtm")) for n in NAMES), TIMINGS
    )
    built = harness.open_fabric(tmp_path, WallClock(), inventory)
    built.controls.rename("web02", "web01")
    try:
        yield built
    finally:
        built.close()


def item_of(asr: harness.AsrUnderTest, vm: str) -> str:
    return next(i.name for i in asr.vault.items.values() if i.friendly == vm)


def test_the_provider_starts_on_the_item_the_request_names(twins: harness.AsrUnderTest) -> None:
    provider = twins.open()
    seen = provider.observe()
    assert [vm.vm_id for vm in seen.duplicates["web01"]] == [
        i.name for i in twins.vault.items.values() if i.friendly == "web01"
    ]
    wanted = seen.duplicates["web01"][1].vm_id
    assert wanted is not None
    with pytest.raises(errors.RejectedError, match="two protected items"):
        provider.start(base.Request("web01", Operation.PLANNED_FAILOVER, "rtm"))
    provider.start(
        base.Request("web01", Operation.PLANNED_FAILOVER, "rtm", vm_ids=(("web01", wanted),))
    )
    (post,) = twins.server.seen("POST")
    assert f"/replicationProtectedItems/{wanted}/plannedFailover" in post.path
    assert [i.name for i in twins.vault.items.values() if i.job is not None] == [wanted]


@pytest.mark.parametrize(
    ("pinned", "says"),
    [
        (
            "no-such-item",
            (
                "web01: asrItem 'no-such-item' names no protected item of vault vault-dr; the "
                "items named web01 are "
            ),
        ),
        (
            "sql01",  # replaced by sql01's item name below
            (
                "web01: asrItem 'SQL' is the protected item whose friendly name is 'sql01', "
                "not 'web01': fix asrItem, or the VM's name"
            ),
        ),
    ],
)
def test_an_item_that_is_not_the_vms_is_refused_before_anything_is_sent(
    twins: harness.AsrUnderTest, pinned: str, says: str
) -> None:
    provider = twins.open()
    provider.observe()
    sql = item_of(twins, "sql01")
    item = sql if pinned == "sql01" else pinned
    with pytest.raises(errors.RejectedError) as refused:
        provider.start(
            base.Request("web01", Operation.PLANNED_FAILOVER, "rtm", vm_ids=(("web01", item),))
        )
    assert str(refused.value).startswith(says.replace("SQL", sql))
    assert twins.server.count("POST") == 0


def test_an_asr_item_beside_the_plans_keys_says_it_goes_on_a_vm_entry(tmp_path: Path) -> None:
    (tmp_path / "contoso.yaml").write_text(ASR)
    (tmp_path / "finance.yaml").write_text(
        PLAN.replace("  vms:\n", "  asrItem: 0c6e8a3c\n  vms:\n", 1)
    )
    with pytest.raises(SpecError) as caught:
        specdir.load_specs(tmp_path)
    assert [(p.line, p.message) for p in caught.value.problems] == [
        (7, "'asrItem' does not go in spec: set it on a VM entry (spec.vms[N])")
    ]
