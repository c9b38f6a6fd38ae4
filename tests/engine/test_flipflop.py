"""Flip-flopping specs (issue 14, section 4): no more operations than the final state needs.

An operator commits several desired states within seconds, or reverts one
while its move runs. The real planner, executor and journal run against the
simulator on a VirtualClock (nothing sleeps): a grouped plan of four VMs
converged at ams, then a random sequence of commits (each a placement of the
VMs at ams or rtm, possibly an earlier one again, possibly the same),
reconcile passes and small advances of time, so that commits land while a
stop, failover, commit or reprotect runs; then passes until it converges.

What is checked comes from `shortest_path`, an oracle written from the VM's
lifecycle (design.md section 1), not from the planner:
(a) it converges to the last desired state;
(b) each VM gets, after the last commit, no more operations than the
    shortest path from where it was then (a job then in flight counted as
    ending where it goes: a failover is never cancelled) to where the last
    commit wants it;
(c) every operation drctl started was on a shortest path to the desired
    state in force when it started: none moves towards a site nobody wants
    any more.
"""

from __future__ import annotations

import functools
import tempfile
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import builders
import fabrics
from builders import inventory, inventory_vm, other_site
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from reconciler.core import lifecycle
from reconciler.core.desired import DesiredState, Group
from reconciler.core.state import (
    FailoverKind,
    ObservedVM,
    Operation,
    ProtectionState,
    ReplicationState,
)
from reconciler.engine import execute, journal
from reconciler.fabric import base
from reconciler.fabric.sim import provider as sim
from reconciler.kits.clock import VirtualClock

SITES = ("ams", "rtm")
# A 3-tier application in boot order, and a VM outside every group.
GROUPS = (
    Group("db", (), ("sql01",)),
    Group("app", ("db",), ("app01",)),
    Group("web", ("app",), ("web01",)),
)
VMS = ("sql01", "app01", "web01", "util01")
GROUP_OF = ("db", "app", "web", None)
T0 = datetime(2026, 3, 1, tzinfo=UTC)
# Short enough that a whole run takes seconds of CPU, long enough that
# commits land while a failover waits for its commit.
COMMIT_AFTER_SECONDS = 5
# The state dirs go to a RAM file system where there is one (as in test_chaos):
# the same SQLite files, without a disk flush per journal write.
RAM_DIR = "/dev/shm" if Path("/dev/shm").is_dir() else None

Placement = tuple[str, ...]  # the activeSite of each VM of VMS
HOME: Placement = ("ams",) * len(VMS)
ALL_AT_RTM: Placement = ("rtm",) * len(VMS)


# --- the oracle: shortest paths in the VM's lifecycle ------------------------------------


@dataclass(frozen=True)
class Stage:
    """Where a VM is in its lifecycle (design.md section 1), as far as a move needs to know."""

    active: str
    protection: ProtectionState
    running: bool  # a copy runs at the active site


def shortest_path(stage: Stage, wanted: str) -> int:
    """The fewest operations that take a VM at `stage` to running at `wanted`, protected.

    The ASR VMM-to-VMM chain the simulator runs: a failover ends CommitPending,
    Commit ends Committed with replication off, ReverseReplicate ends
    Protected from the new site. Nothing shortens it: a failed-over VM is
    never cancelled back, only committed and failed back. drctl stops a
    running VM before its planned failover (dependents first, design.md
    section 6), so a move from a running copy is StopVM + PlannedFailover.
    """
    if stage.protection is ProtectionState.COMMIT_PENDING and stage.running:
        return 1 + shortest_path(replace(stage, protection=ProtectionState.COMMITTED), wanted)
    if stage.protection is ProtectionState.COMMITTED and stage.running:
        return 1 + shortest_path(replace(stage, protection=ProtectionState.PROTECTED), wanted)
    if stage.protection is not ProtectionState.PROTECTED:
        raise AssertionError(f"no flip-flop of activeSite reaches {stage}")
    if stage.active == wanted:
        return 0 if stage.running else 1  # StartVM
    stop = 1 if stage.running else 0
    return stop + 1 + shortest_path(Stage(wanted, ProtectionState.COMMIT_PENDING, True), wanted)


def after(stage: Stage, operation: Operation, target: str | None) -> Stage:
    """The stage an operation started at `stage` ends in (every job here succeeds)."""
    if operation is Operation.STOP_VM:
        return replace(stage, running=False)
    if operation is Operation.START_VM:
        return replace(stage, running=True)
    if operation is Operation.PLANNED_FAILOVER:
        return Stage(target or other_site(stage.active), ProtectionState.COMMIT_PENDING, True)
    if operation is Operation.COMMIT:
        return replace(stage, protection=ProtectionState.COMMITTED)
    if operation is Operation.REVERSE_REPLICATE:
        return replace(stage, protection=ProtectionState.PROTECTED)
    raise AssertionError(f"{operation} at {stage}: no flip-flop of activeSite needs it")


def stage_of(o: ObservedVM) -> Stage:
    """The VM as the fabric reports it, a job in flight counted as ending where it goes."""
    at_rest = Stage(o.active_site, o.protection_state, o.active_site in o.running)
    if o.job is not None and o.job.running:
        return after(at_rest, o.job.operation, o.job.target_site)
    return at_rest


# --- the operator's commits ----------------------------------------------------------------


@functools.cache
def load(placement: Placement, max_parallel: int) -> DesiredState:
    """The desired state of a revision placing the VMs so, replicating from there."""
    vms = (
        builders.want(vm, site, group=group)._replace(commit_after_seconds=COMMIT_AFTER_SECONDS)
        for vm, site, group in zip(VMS, placement, GROUP_OF, strict=True)
    )
    return builders.desired(*vms, groups=GROUPS, max_parallel=max_parallel)


# --- one reconciler, recorded at the seam ---------------------------------------------------


@dataclass(frozen=True)
class Start:
    """One operation drctl started: on which VM, from which stage, under which commit."""

    vm: str
    operation: Operation
    target: str | None
    stage: Stage
    revision: int  # index into World.commits


@dataclass
class World:
    """The simulator, one executor on one journal, and what the operator committed."""

    clock: VirtualClock
    max_parallel: int  # the plan's policy.maxParallel: below 4, moves queue
    commits: list[Placement] = field(default_factory=list)
    made_at: list[datetime] = field(default_factory=list)
    # Each VM's stage when each commit was made.
    stages_at: list[dict[str, Stage]] = field(default_factory=list)
    starts: list[Start] = field(default_factory=list)

    def open(self, state_dir: Path) -> None:
        sim.init_fabric(state_dir, inventory(*(inventory_vm(vm) for vm in VMS)), self.clock)
        self.fabric = sim.SimFabric(state_dir, self.clock)
        self.executor = execute.Executor(
            Recording(self.fabric, self),
            journal.Journal(state_dir),
            self.clock,
            execute.Settings(poll_interval=1.0),
        )

    def close(self) -> None:
        self.executor.journal.close()
        self.fabric.close()

    @property
    def revision(self) -> str:
        return f"rev{len(self.commits) - 1:04d}"

    def commit(self, placement: Placement) -> None:
        seen = self.fabric.observe().vms
        self.stages_at.append({vm: stage_of(seen[vm]) for vm in VMS})
        self.commits.append(placement)
        self.made_at.append(self.clock.now())

    @property
    def desired(self) -> DesiredState:
        return load(self.commits[-1], self.max_parallel)

    def reconcile(self) -> None:
        self.executor.step(self.desired, self.revision, revision_made_at=self.made_at[-1])

    def settle(self) -> execute.Outcome:
        return execute.apply(
            self.executor,
            self.desired,
            self.revision,
            timeout=3600,
            revision_made_at=self.made_at[-1],
        )


class Recording(fabrics.Delegating):
    """The simulator, each start recorded with the VM's stage just before it."""

    def __init__(self, inner: base.Provider, world: World) -> None:
        super().__init__(inner)
        self.world = world

    def start(self, request: base.Request) -> str:
        stage = stage_of(self.inner.observe().vms[request.vm])
        job_id = self.inner.start(request)
        self.world.starts.append(
            Start(
                request.vm,
                request.operation,
                request.target_site,
                stage,
                len(self.world.commits) - 1,
            )
        )
        return job_id


# --- the property ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Burst:
    """One commit, then what the reconciler does before the next one."""

    # A new placement; an earlier commit again (its index, modulo); None: the same again.
    commit: Placement | int | None
    offset: float  # seconds before the next pass: a commit lands at any point of a job
    passes: int  # reconcile passes, one a second


site = st.sampled_from(SITES)
placements = st.one_of(
    st.just(ALL_AT_RTM),  # the whole plan moves
    st.tuples(*(site for _ in VMS)),
)
passes = st.sampled_from([0, 1, 2, 3, 5, 8])
offsets = st.sampled_from([0.0, 0.5])
# The first commit moves something; each later one moves, reverts or repeats.
first_bursts = st.builds(
    Burst, commit=placements.filter(lambda p: p != HOME), offset=offsets, passes=passes
)
bursts = st.builds(
    Burst,
    commit=st.one_of(placements, st.integers(0, 30), st.none()),
    offset=offsets,
    passes=passes,
)


def play(world: World, burst: Burst) -> None:
    if burst.commit is None:
        world.commit(world.commits[-1])
    elif isinstance(burst.commit, int):
        world.commit(world.commits[burst.commit % len(world.commits)])
    else:
        world.commit(burst.commit)
    world.clock.advance(burst.offset)
    for _ in range(burst.passes):
        world.reconcile()
        world.clock.advance(1.0)


def extra_operations(world: World) -> list[str]:
    """(b): the VMs that got more operations after the last commit than the shortest path."""
    last = len(world.commits) - 1
    problems = []
    for i, vm in enumerate(VMS):
        wanted = world.commits[last][i]
        since = world.stages_at[last][vm]
        issued = [s for s in world.starts if s.vm == vm and s.revision == last]
        if len(issued) > shortest_path(since, wanted):
            ops = ", ".join(f"{s.operation}->{s.target}" for s in issued)
            problems.append(
                f"{vm}: {len(issued)} operations ({ops}) after the last commit, from {since} "
                f"to {wanted}; the shortest path is {shortest_path(since, wanted)}"
            )
    return problems


def unneeded_operations(world: World) -> list[str]:
    """(c): operations that were on no shortest path to the desired state in force."""
    problems = []
    for s in world.starts:
        wanted = world.commits[s.revision][VMS.index(s.vm)]
        before = shortest_path(s.stage, wanted)
        if shortest_path(after(s.stage, s.operation, s.target), wanted) != before - 1:
            problems.append(
                f"{s.vm}: {s.operation}->{s.target} from {s.stage} under rev{s.revision:04d}, "
                f"which wants {wanted}: it brings the VM no closer"
            )
    return problems


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    first=first_bursts,
    history=st.lists(bursts, max_size=5),
    max_parallel=st.sampled_from([10, 1, 2]),
)
# The plan moves to rtm; the operator reverts while the database fails over.
@example(first=Burst(ALL_AT_RTM, 0.0, 4), history=[Burst(0, 0.0, 0)], max_parallel=10)
# Three commits within two seconds, the last one the first again.
@example(
    first=Burst(ALL_AT_RTM, 0.0, 1),
    history=[Burst(("ams", "rtm", "rtm", "ams"), 0.5, 1), Burst(1, 0.0, 0)],
    max_parallel=10,
)
# A revert while the failed-over VMs wait for their commit gate, and its revert.
@example(
    first=Burst(ALL_AT_RTM, 0.0, 8),
    history=[Burst(0, 0.5, 2), Burst(1, 0.0, 0)],
    max_parallel=10,
)
# One operation at a time: the revert lands while the moves queue.
@example(first=Burst(ALL_AT_RTM, 0.0, 5), history=[Burst(0, 0.5, 3)], max_parallel=1)
def test_flip_flopping_specs_issue_no_more_operations_than_the_final_state_needs(
    first: Burst, history: list[Burst], max_parallel: int
) -> None:
    world = World(VirtualClock(T0), max_parallel)
    with tempfile.TemporaryDirectory(dir=RAM_DIR) as tmp:
        world.open(Path(tmp))
        try:
            world.commit(HOME)
            for burst in [first, *history]:
                play(world, burst)
            outcome = world.settle()
            seen = world.fabric.observe().vms
        finally:
            world.close()
    final = world.commits[-1]
    # (a) converged, at the sites of the last commit.
    assert outcome.converged, [(vp.name, vp.phase, vp.reason) for vp in outcome.plan.vms]
    assert tuple(seen[vm].active_site for vm in VMS) == final
    # (b) and (c).
    problems = extra_operations(world) + unneeded_operations(world)
    assert not problems, "\n".join(problems)


# Every stage a flip-flop of activeSite passes through, as the simulator's model holds it.
def _model_states() -> dict[Stage, lifecycle.VMState]:
    states = {}
    for active in SITES:
        protected = lifecycle.protected(active, other_site(active))
        failed_over = replace(
            protected, replication=ReplicationState.OFF, last_failover=FailoverKind.PLANNED
        )
        for vm in (
            protected,
            replace(protected, running=frozenset()),
            replace(failed_over, protection=ProtectionState.COMMIT_PENDING),
            replace(failed_over, protection=ProtectionState.COMMITTED),
        ):
            states[Stage(vm.active_site, vm.protection, active in vm.running)] = vm
    return states


def test_the_oracle_agrees_with_the_lifecycle_model() -> None:
    """`shortest_path` is what a search over the simulator's lifecycle model finds.

    Breadth first over `core.lifecycle` with the simulator's flavour, both
    sites connected, through every operation drctl may issue on such a spec
    but an unplanned failover (the spec gives no consent to lose data; there
    is no cancel at all), a running VM stopped before its planned failover.
    """
    for stage, vm in _model_states().items():
        for wanted in SITES:
            assert shortest_path(stage, wanted) == _search(vm, wanted), (stage, wanted)


_OPERATIONS = (
    Operation.STOP_VM,
    Operation.START_VM,
    Operation.PLANNED_FAILOVER,
    Operation.COMMIT,
    Operation.REVERSE_REPLICATE,
    Operation.DISABLE_REPLICATION,
    Operation.ENABLE_REPLICATION,
)


def _search(start: lifecycle.VMState, wanted: str) -> int:
    """The fewest `_OPERATIONS` that take `start` to running at `wanted`, protected."""
    cond = lifecycle.Conditions(connected=frozenset(SITES))
    frontier, distance = [start], {start: 0}
    while frontier:
        vm = frontier.pop(0)
        if (
            vm.active_site == wanted
            and vm.protection is ProtectionState.PROTECTED
            and vm.running == frozenset({wanted})
        ):
            return distance[vm]
        for op in _OPERATIONS:
            if op is Operation.PLANNED_FAILOVER and vm.active_site in vm.running:
                continue  # drctl stops it first
            if lifecycle.check_operation(vm, op, cond) is None:
                nxt = lifecycle.apply_effect(vm, op, sim.FLAVOUR)
                if nxt not in distance:
                    distance[nxt] = distance[vm] + 1
                    frontier.append(nxt)
    raise AssertionError(f"{wanted} cannot be reached from {start}")
