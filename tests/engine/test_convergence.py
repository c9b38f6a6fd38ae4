"""Property tests of planner and executor against the simulated fabric.

Random fabric histories (outages, management-plane partitions, drift, lag,
operations someone started by hand) and random valid specs:
- the planner never proposes a ready action the fabric then rejects;
- with the faults healed, repeated plan+execute steps converge, through
  errors of the fabric's API (refused, transient, throttled calls) that
  spend no attempt.
Time is a VirtualClock: nothing sleeps. Each runs once per provider in
`fabrics.FACTORIES` (the `make_fabric` fixture), through the Provider and
the test controls only.
"""

from __future__ import annotations

import contextlib
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import fabrics
import pytest
from builders import TIMINGS
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from reconciler.core import plan
from reconciler.core.desired import DesiredState, DesiredVM, Group, PlanSpec
from reconciler.core.plan import Phase
from reconciler.core.state import Job, Operation
from reconciler.engine import execute, journal
from reconciler.errors import DrctlError, RejectedError
from reconciler.fabric import base
from reconciler.fabric.sim.inventory import Inventory, InventoryVM
from reconciler.kits.clock import VirtualClock

SITES = ("ams", "rtm")
NAMES = ("sql01", "app01", "web01", "web02")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="session", params=sorted(fabrics.CONVERGING))
def make_fabric(request: pytest.FixtureRequest) -> fabrics.Factory:
    """The fabrics the property runs on (`fabrics.CONVERGING`, not every provider)."""
    factory: fabrics.Factory = fabrics.FACTORIES[request.param]
    return factory


site = st.sampled_from(SITES)
vm_name = st.sampled_from(NAMES)
HAND_OPS = [op for op in Operation if op is not Operation.TEST_FAILOVER]

chaos_step = st.one_of(
    st.tuples(st.just("down"), site),
    st.tuples(st.just("up"), site),
    st.tuples(st.just("partition"), site),
    st.tuples(st.just("heal"), site),
    st.tuples(st.just("move"), vm_name, site),
    st.tuples(st.just("op"), vm_name, st.sampled_from(HAND_OPS), site, st.booleans()),
    st.tuples(st.just("lag"), vm_name, st.sampled_from([0.0, 12.0, 40.0])),
    st.tuples(st.just("resync"), vm_name),
    st.tuples(st.just("advance"), st.sampled_from([0.5, 1.0, 3.0, 7.0])),
    st.tuples(st.just("disaster"), vm_name),
)


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[InventoryVM], list[tuple[object, ...]]]:
    vms = []
    for name in NAMES:
        active = draw(site)
        other = SITES[1] if active == SITES[0] else SITES[0]
        replicated = draw(st.booleans()) or draw(st.booleans())
        vms.append(InventoryVM(name, active, (active, other) if replicated else None))
    return vms, draw(st.lists(chaos_step, max_size=12))


# (call, kind, times, retry_after): what the fabric's API does while drctl acts.
Blip = tuple[str, fabrics.ErrorKind, int, float | None]
blip: st.SearchStrategy[Blip] = st.one_of(
    st.tuples(st.just("start"), st.just("rejected"), st.integers(1, 4), st.none()),
    st.tuples(
        st.sampled_from(["start", "get_job"]),
        st.just("transient"),
        st.integers(1, 4),
        st.none(),
    ),
    st.tuples(
        st.sampled_from(["start", "get_job"]),
        st.just("throttled"),
        st.integers(1, 4),
        st.sampled_from([None, 0.0, 5.0]),
    ),
)


@st.composite
def specs(draw: st.DrawFn) -> DesiredState:
    vms = []
    group_names = ("db", "app", "web")
    grouped = draw(st.booleans())
    for i, name in enumerate(NAMES):
        active = draw(site)
        other = SITES[1] if active == SITES[0] else SITES[0]
        replication = None if draw(st.integers(0, 4)) == 0 else (active, other)
        group = group_names[min(i, 2)] if grouped else None
        vms.append(
            DesiredVM(
                "finance",
                name,
                active,
                replication,
                draw(st.booleans()),
                group,
                # An "off" in these specs is meant: the operator confirmed it.
                confirm_disable_replication=True,
            )
        )
    groups: tuple[Group, ...] = ()
    if grouped:
        groups = (
            Group("db", (), ("sql01",)),
            Group("app", ("db",), ("app01",)),
            Group("web", ("app",), ("web01", "web02")),
        )
    return DesiredState(
        plans=(
            PlanSpec(
                "finance",
                "finance.yaml",
                SITES,
                allow_data_loss=False,
                max_parallel=draw(st.integers(1, 4)),
                groups=groups,
                vms=tuple(vms),
                # The histories move VMs behind drctl's back ("drift"): without
                # selfHeal those are Held for a person, by design (rule 1 of the
                # planner); this property is about converging once faults heal.
                self_heal=True,
            ),
        )
    )


def build_fabric(
    make_fabric: fabrics.Factory,
    state_dir: Path,
    clock: VirtualClock,
    drawn: tuple[list[InventoryVM], list[tuple[object, ...]]],
) -> fabrics.FabricUnderTest:
    vms, chaos = drawn
    fut = make_fabric(state_dir, clock, Inventory(SITES, tuple(vms), TIMINGS))
    fabric, controls = fut.provider, fut.controls
    for step in chaos:
        kind, *args = step
        try:
            if kind == "down":
                controls.site_down(str(args[0]))
            elif kind == "up":
                controls.site_up(str(args[0]))
            elif kind == "partition":
                controls.partition(str(args[0]))
            elif kind == "heal":
                controls.heal(str(args[0]))
            elif kind == "move":
                controls.move(str(args[0]), str(args[1]))
            elif kind == "op":
                fabric.start(
                    base.Request(
                        str(args[0]),
                        Operation(str(args[1])),
                        str(args[2]),
                        shutdown_source=bool(args[3]),
                    )
                )
            elif kind == "lag":
                controls.lag(str(args[0]), float(str(args[1])))
            elif kind == "resync":
                controls.resync_required(str(args[0]))
            elif kind == "disaster":
                disaster(fut, clock, str(args[0]))
            else:
                clock.advance(float(str(args[0])))
        except (DrctlError, ValueError):
            pass  # the fabric refused what a person tried by hand: that is history too
    return fut


def disaster(fut: fabrics.FabricUnderTest, clock: VirtualClock, name: str) -> None:
    """The VM's site goes dark, an operator fails it over unplanned, the site returns."""
    active = fut.provider.observe().vms[name].active_site
    other = SITES[1] if active == SITES[0] else SITES[0]
    fut.controls.site_down(active)
    try:
        fut.provider.start(base.Request(name, Operation.UNPLANNED_FAILOVER, other))
        clock.advance(TIMINGS.unplanned_failover + 0.5)
    finally:
        fut.controls.site_up(active)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(drawn=histories(), desired=specs())
def test_planner_never_proposes_an_action_the_fabric_rejects(
    make_fabric: fabrics.Factory,
    drawn: tuple[list[InventoryVM], list[tuple[object, ...]]],
    desired: DesiredState,
) -> None:
    clock = VirtualClock(T0)
    with (
        tempfile.TemporaryDirectory() as tmp,
        build_fabric(make_fabric, Path(tmp), clock, drawn) as fut,
    ):
        fabric = fut.provider
        observed = fabric.observe()
        built = plan.build_plan(desired, observed, clock.now())
        for vp in built.vms:
            # Unknown power is never placed, and never stopped or started blindly.
            assert vp.observed is not None
            unknown = vp.observed.power_unknown
            assert not (vp.placed and unknown), vp
            if vp.action is not None and vp.action.operation in {
                Operation.STOP_VM,
                Operation.START_VM,
            }:
                assert vp.action.target_site not in unknown, vp
        for action in built.ready_actions():
            try:
                fabric.start(
                    base.Request(
                        action.vm,
                        action.operation,
                        action.target_site,
                        shutdown_source=action.shutdown_source,
                    )
                )
            except RejectedError as exc:
                raise AssertionError(f"planner proposed {action}, fabric said: {exc}") from exc


# Seen in CI: a disaster 1 s after sql01 was stopped at ams, the spec back at ams:
# reversing replication would overwrite ams's last second, so sql01 is Held.
_STOPPED_THEN_DISASTER = (
    [
        InventoryVM("sql01", "ams", ("ams", "rtm")),
        InventoryVM("app01", "ams", None),
        InventoryVM("web01", "ams", ("ams", "rtm")),
        InventoryVM("web02", "ams", None),
    ],
    [("op", "sql01", Operation.STOP_VM, "ams", False), ("advance", 1.0), ("disaster", "sql01")],
)
_ALL_AT_AMS_UNREPLICATED = DesiredState(
    plans=(
        PlanSpec(
            "finance",
            "finance.yaml",
            SITES,
            allow_data_loss=False,
            max_parallel=1,
            groups=(),
            vms=tuple(
                DesiredVM(
                    "finance", name, "ams", None, False, None, confirm_disable_replication=True
                )
                for name in NAMES
            ),
            self_heal=True,
        ),
    )
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(drawn=histories(), desired=specs(), blips=st.lists(blip, max_size=3))
@example(drawn=_STOPPED_THEN_DISASTER, desired=_ALL_AT_AMS_UNREPLICATED, blips=[])
def test_plan_and_execute_converge_once_faults_are_healed(
    make_fabric: fabrics.Factory,
    drawn: tuple[list[InventoryVM], list[tuple[object, ...]]],
    desired: DesiredState,
    blips: list[Blip],
) -> None:
    clock = VirtualClock(T0)
    with (
        tempfile.TemporaryDirectory() as tmp,
        build_fabric(make_fabric, Path(tmp), clock, drawn) as fut,
    ):
        fabric = fut.provider
        for s in SITES:
            fut.controls.site_up(s)
            fut.controls.heal(s)
        for name in NAMES:
            with contextlib.suppress(DrctlError):  # not replicating: nothing to clear
                fut.controls.lag(name, 0.0)
        # A required resync clears by itself (ASR's scheduled resync); until it
        # does, a VM that must move without consent to lose data is Blocked.
        clock.advance(TIMINGS.initial_replication + 1)
        for call, kind, times, retry_after in blips:
            fut.controls.inject_call_error(call, kind, times=times, retry_after=retry_after)
        executor = execute.Executor(
            fabric, journal.Journal(Path(tmp)), clock, execute.Settings(poll_interval=1.0)
        )
        outcome = execute.apply(executor, desired, "rev1", timeout=3600)
        # An operator's unplanned failover (by hand, or in a disaster) is for a
        # person to settle when it left two copies running (drctl cannot tell
        # which took writes last), or when going on would overwrite the old
        # copy's writes that never reached the new one (found by this test in
        # CI: stopped at ams, a disaster 1 s later, spec back at ams): it is
        # Held, saying which, and nothing else may stay stuck.
        split = {
            str(e[1])
            for e in drawn[1]
            if e[0] == "disaster" or (e[0] == "op" and e[2] is Operation.UNPLANNED_FAILOVER)
        }
        held = {
            vp.name
            for vp in outcome.plan.vms
            if vp.name in split
            and vp.phase is Phase.HELD
            and ("copies run at" in vp.reason or "writes that never reached" in vp.reason)
        }
        # ...and the VMs whose move waits for a held one, directly or through
        # another that waits (boot order).
        waiting = set(held)
        while grown := {
            vp.name
            for vp in outcome.plan.vms
            if vp.name not in waiting and any(f"waiting for {n}" in vp.reason for n in waiting)
        }:
            waiting |= grown
        stuck = [
            (vp.name, vp.phase, vp.reason)
            for vp in outcome.plan.vms
            if not vp.converged and vp.name not in waiting
        ]
        assert not stuck, stuck
        ours = {e.job_id for e in executor.journal.entries() if e.job_id}
        assert not [e for e in executor.journal.entries() if e.result == journal.FAILED]
        jobs = [j for j in fabric.list_jobs() if j.id in ours]
        assert max_in_flight(jobs) <= desired.plans[0].max_parallel


def max_in_flight(jobs: list[Job]) -> int:
    """The most jobs running at one instant (a job ends before one starting then)."""
    edges = sorted(
        [(j.started_at, 1) for j in jobs] + [(j.finished_at or j.started_at, -1) for j in jobs]
    )
    running = peak = 0
    for _at, step in edges:
        running += step
        peak = max(peak, running)
    return peak
