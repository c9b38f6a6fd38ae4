"""A VM entry pinned to one fabric item (`asrItem`): which of two items with one name it means.

Two items with one friendly name are reported (`Observed.duplicates`) and neither
is touched; a pin resolves the entry to the item it names. A pin that names no
item, or an item of another name, is a clear reason, and nothing moves.
"""

from __future__ import annotations

import dataclasses

from builders import NOW, desired, observed, vm, want

from reconciler.core import pin, plan
from reconciler.core.desired import DesiredState
from reconciler.core.plan import Phase
from reconciler.core.state import Observed


def decide(d: DesiredState, o: Observed) -> dict[str, plan.VMPlan]:
    return {vp.name: vp for vp in plan.build_plan(d, o, NOW).vms}


def twins() -> Observed:
    """web01 twice: item-a active at ams, item-b active at rtm; sql01 once (item-s)."""
    a = dataclasses.replace(vm("web01"), vm_id="item-a")
    b = dataclasses.replace(vm("web01", "rtm"), vm_id="item-b")
    o = observed(dataclasses.replace(vm("sql01"), vm_id="item-s"))
    return dataclasses.replace(o, duplicates={"web01": (a, b)})


def pinned(vm_id: str, site: str = "rtm") -> DesiredState:
    return desired(want("web01", site)._replace(vm_id=vm_id), want("sql01"))


def test_a_pin_resolves_a_name_two_items_share_to_the_one_it_names() -> None:
    o = twins()
    got = decide(pinned("item-b"), pin.pinned(o, {"web01": "item-b"}))
    assert got["web01"].phase is Phase.CONVERGED
    assert got["web01"].observed is not None
    assert got["web01"].observed.vm_id == "item-b"
    # The other one is no longer taken for it: a pin on item-a moves item-a.
    got = decide(pinned("item-a"), pin.pinned(o, {"web01": "item-a"}))
    assert got["web01"].observed is not None
    assert got["web01"].observed.vm_id == "item-a"
    assert got["web01"].phase is not Phase.BLOCKED
    assert got["web01"].action is not None
    assert got["sql01"].phase is Phase.CONVERGED


def test_a_pin_that_names_no_item_is_blocked_and_nothing_moves() -> None:
    o = pin.pinned(twins(), {"web01": "item-x"})
    got = decide(pinned("item-x"), o)
    assert (got["web01"].phase, got["web01"].action) == (Phase.BLOCKED, None)
    assert got["web01"].reason == (
        "asrItem 'item-x' names no item of the fabric; the items named 'web01' are "
        "item-a, item-b: set asrItem to one of them"
    )


def test_a_pin_on_a_name_only_one_item_reports_still_needs_that_item() -> None:
    """A pin is a promise: the unique web01 of another id is not the one the spec means."""
    o = observed(dataclasses.replace(vm("web01"), vm_id="item-a"))
    got = decide(pinned("item-b"), pin.pinned(o, {"web01": "item-b"}))
    assert (got["web01"].phase, got["web01"].action) == (Phase.BLOCKED, None)
    assert got["web01"].reason == (
        "asrItem 'item-b' names no item of the fabric; the items named 'web01' are "
        "item-a: set asrItem to one of them"
    )


def test_a_pin_on_an_item_of_another_name_is_blocked_and_touches_neither() -> None:
    o = pin.pinned(twins(), {"web01": "item-s"})
    got = decide(pinned("item-s"), o)
    assert (got["web01"].phase, got["web01"].action) == (Phase.BLOCKED, None)
    assert got["web01"].reason == (
        "asrItem 'item-s' is the item the fabric names 'sql01', not 'web01': fix asrItem, "
        "or the VM's name"
    )
    assert got["sql01"].phase is Phase.CONVERGED


def test_pinning_twice_changes_nothing_and_no_pin_is_the_observation_itself() -> None:
    o = twins()
    once = pin.pinned(o, {"web01": "item-b"})
    assert pin.pinned(once, {"web01": "item-b"}) == once
    assert pin.pinned(o, {}) is o
