"""The planner reads Unknown power as "may run": never placed, never stopped or started blindly.

Each case is one a real fabric produces (ASR keeps no power state, a Hyper-V
host that does not answer reports nothing): the site itself may be reported
connected, and the fabric may even list StopVM as allowed.
"""

from __future__ import annotations

from builders import NOW, PROTECTED_OPS, desired, observed, vm, want
from hypothesis import given
from hypothesis import strategies as st

from reconciler.core import plan
from reconciler.core.desired import Group
from reconciler.core.plan import Phase
from reconciler.core.state import Operation, Power, ProtectionState

OP = Operation
GROUPS = (Group("db", (), ("sql01",)), Group("web", ("db",), ("web01",)))


def one(d: plan.Plan, name: str) -> plan.VMPlan:
    return next(vp for vp in d.vms if vp.name == name)


def test_power_reads_running_off_or_unknown_per_site() -> None:
    o = vm("sql01", "rtm", running=("rtm",), unknown=("ams",))
    assert (o.power_at("rtm"), o.power_at("ams"), o.power_at("lon")) == (
        Power.RUNNING,
        Power.UNKNOWN,
        Power.OFF,
    )
    assert (o.may_run("ams"), o.may_run("rtm"), o.may_run("lon")) == (True, True, False)
    assert o.maybe_running == ("rtm", "ams")
    assert o.power_by_site() == {"ams": Power.UNKNOWN, "rtm": Power.RUNNING}


def test_a_vm_whose_peer_power_is_unknown_is_not_placed_and_waits_naming_the_site() -> None:
    """Running at its desired site is not enough: rtm may run a copy too."""
    o = observed(vm("sql01", "ams", unknown=("rtm",)))  # rtm reported connected
    got = one(plan.build_plan(desired(want("sql01", "ams")), o, NOW), "sql01")
    assert (got.placed, got.converged, got.phase, got.action) == (
        False,
        False,
        Phase.WAITING_FOR_SITE,
        None,
    )
    assert got.reason == (
        "the power of the copy at rtm is unknown (last seen 2026-11-26T11:58:30+00:00): it "
        "may run, and drctl does not stop a copy it cannot see; waiting for rtm to report "
        "its power"
    )


def test_the_same_vm_is_placed_once_its_peer_is_known_off() -> None:
    o = observed(vm("sql01", "ams"))
    assert one(plan.build_plan(desired(want("sql01", "ams")), o, NOW), "sql01").converged


def test_no_stop_is_issued_against_an_unknown_stale_copy() -> None:
    """After a failover, the old copy's power is unknown: no StopVM, no reverse replication
    over it, although the fabric lists StopVM and the site is connected."""
    for running in (("rtm",), ()):
        o = vm(
            "sql01",
            "rtm",
            running=running,
            unknown=("ams",),
            protection=ProtectionState.COMMITTED,
            replication=None,
            allowed=frozenset({OP.STOP_VM, OP.REVERSE_REPLICATE, OP.START_VM}),
        )
        got = one(plan.build_plan(desired(want("sql01", "rtm")), observed(o), NOW), "sql01")
        assert (got.phase, got.action) == (Phase.WAITING_FOR_SITE, None)
        assert "the power of the copy at ams is unknown" in got.reason


def test_an_unknown_copy_at_the_desired_site_is_not_started() -> None:
    o = vm("sql01", "ams", unknown=("ams",), allowed=PROTECTED_OPS | {OP.START_VM})
    got = one(plan.build_plan(desired(want("sql01", "ams")), observed(o), NOW), "sql01")
    assert (got.phase, got.action) == (Phase.WAITING_FOR_SITE, None)
    assert "does not start a copy it cannot see; waiting for ams" in got.reason


def test_a_dependent_whose_power_at_the_source_is_unknown_may_still_run() -> None:
    """On a planned move, the database is not stopped while the web server may run at ams."""
    d = desired(want("sql01", "rtm", group="db"), want("web01", "rtm", group="web"), groups=GROUPS)
    o = observed(vm("sql01"), vm("web01", unknown=("ams",)))
    stop = one(plan.build_plan(d, o, NOW), "sql01").action
    assert stop is not None
    assert (stop.operation, stop.ready, stop.waiting_for) == (OP.STOP_VM, False, ("web01",))

    o = observed(vm("sql01"), vm("web01", running=()))  # known off: the stop may go
    stop = one(plan.build_plan(d, o, NOW), "sql01").action
    assert stop is not None
    assert (stop.operation, stop.ready) == (OP.STOP_VM, True)


_site = st.sampled_from(["ams", "rtm"])


@given(
    active=_site,
    wanted=_site,
    running=st.sets(_site),
    unknown=st.sets(_site),
    protection=st.sampled_from(list(ProtectionState)),
    replicated=st.booleans(),
)
def test_unknown_power_is_never_placed_nor_acted_on(
    active: str,
    wanted: str,
    running: set[str],
    unknown: set[str],
    protection: ProtectionState,
    replicated: bool,
) -> None:
    """Whatever else the fabric reports (and allows): a VM with a site of Unknown power is
    not placed, and no StopVM or StartVM goes to such a site."""
    known = tuple(sorted(running - unknown))
    o = vm(
        "sql01",
        active,
        running=known,
        unknown=tuple(sorted(unknown)),
        protection=protection,
        replication="auto" if replicated else None,
        allowed=frozenset(Operation),
    )
    got = one(plan.build_plan(desired(want("sql01", wanted)), observed(o), NOW), "sql01")
    if unknown:
        assert not got.placed
    action = got.action
    if action is not None and action.operation in {OP.STOP_VM, OP.START_VM}:
        assert action.target_site not in unknown
