"""The decision for one VM of one plan: its phase, its reason, its next action.

Every decision comes from what the fabric reports now (active site, running
copies, protection state, allowed operations, the job in progress), never
from a remembered chain of steps: what follows a failover depends on what the
fabric did, and the daemon can be killed at any moment. Called by
`plan.build_plan`; pure.

`PlanContext.decide` walks a VM down the ladder of what holds first (the
fabric unreadable, no such VM, a job running, a hold) to the step that applies,
and hands itself to the module that decides that step: `failover` for a VM
that must move, `replication` for its replication, `commit` for a failover not
committed yet, `hold` for what waits for a person. It keeps what the VMs of a
plan share: group ordering, and the readiness and reasons many VMs repeat.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import datetime

from reconciler.core import state
from reconciler.core.desired import DesiredVM, PlanSpec
from reconciler.core.plan import (
    azure,
    commit,
    context,
    failover,
    guardrail,
    hold,
    order,
    reading,
    replication,
)
from reconciler.core.plan.model import Action, Phase, Provenance, Readiness, VMPlan
from reconciler.core.state import Operation, ProtectionState, ReplicationState

# Replication older than this many intervals puts the RPO at risk.
RPO_RISK_INTERVALS = 2.0
# Distinct replication values whose readiness is remembered within a plan.
_SHARED_MAX = 4096

_JOB_PHASE = {
    Operation.PLANNED_FAILOVER: Phase.FAILING_OVER,
    Operation.UNPLANNED_FAILOVER: Phase.FAILING_OVER,
    Operation.APPLY_RECOVERY_POINT: Phase.COMMIT_PENDING,
    Operation.COMMIT: Phase.COMMIT_PENDING,
    Operation.REVERSE_REPLICATE: Phase.REPROTECTING,
    Operation.ENABLE_REPLICATION: Phase.SYNCING,
    Operation.DISABLE_REPLICATION: Phase.SYNCING,
    Operation.STOP_VM: Phase.STOPPING,
    Operation.START_VM: Phase.STARTING,
    Operation.TEST_FAILOVER: Phase.SYNCING,
    Operation.TEST_FAILOVER_CLEANUP: Phase.SYNCING,
    Operation.RESYNC: Phase.SYNCING,
}


class PlanContext:
    """Decisions for the VMs of one RecoveryPlan, which share group ordering."""

    def __init__(
        self,
        plan: PlanSpec,
        observed: state.Observed,
        now: datetime,
        provenance: Provenance | None = None,
    ) -> None:
        self.plan = plan
        self.provenance = provenance
        self.observed = observed
        self.now = now
        self.rank, self.before, self.after = order.group_order(plan.groups)
        self.group_vms = {g.name: g.vms for g in plan.groups}
        self._later: dict[str, tuple[str, ...]] = {}
        # Filled by `stuck`, but set here, not by a cached_property: that writes
        # through `__dict__`, which makes every later attribute read of `self`
        # slower (CPython 3.11), and the plan's decisions read it 100k times.
        self._stuck: list[str] | None = None
        # Many VMs share a replication state and a desired placement: their
        # readiness and the reason they are converged are worked out once.
        self._readiness_of: dict[state.Replication | None, Readiness] = {}
        self._converged_reasons: dict[tuple[str, tuple[str, str] | None, str], str] = {}
        self._last_replication: state.Replication | None = None
        self._last_readiness = self._readiness_of_replication(None)
        # The Azure side of a Hyper-V-to-Azure fabric, whence nothing replicates.
        self.azure_sites = azure.azure_sites(observed)

    @functools.cached_property
    def desired(self) -> dict[str, DesiredVM]:
        """The plan's VMs by name; only group ordering looks other VMs up."""
        return {vm.name: vm for vm in self.plan.vms}

    # --- facts about other VMs, for ordering -------------------------------

    def _obs(self, name: str) -> state.ObservedVM | None:
        return self.observed.vms.get(name)

    def _runs_at_target(self, name: str) -> bool:
        o = self._obs(name)
        target = self.desired[name].active_site
        return o is not None and o.active_site == target and target in o.running

    def _still_running_at_source(self, name: str) -> bool:
        """A dependent that will move and still runs, or may run (Unknown), where it is."""
        o = self._obs(name)
        d = self.desired[name]
        return o is not None and o.active_site != d.active_site and o.may_run(o.active_site)

    def _running_at_active(self, name: str) -> bool:
        o = self._obs(name)
        return o is not None and o.active_site in o.running

    def _group_vms(self, groups: Iterable[str]) -> list[str]:
        return [vm for g in groups for vm in self.group_vms.get(g, ())]

    def waiting_predecessors(self, vm: DesiredVM, check: str) -> list[str]:
        """VMs of the groups `vm` comes after that do not yet run at their target."""
        if vm.group is None:
            return []
        names = self._group_vms(self.before.get(vm.group, ()))
        test = self._runs_at_target if check == "target" else self._running_at_active
        return [n for n in names if not test(n)]

    def waiting_dependents(self, vm: DesiredVM) -> list[str]:
        """VMs of every group that comes after `vm`'s, directly or not, that will move and
        still run: a pinned group in between does not let the db stop under the web."""
        if vm.group is None:
            return []
        names = self._group_vms(self._later_groups(vm.group))
        return [n for n in names if self._still_running_at_source(n)]

    def _later_groups(self, group: str) -> tuple[str, ...]:
        """Every group that comes after `group`, worked out once per group."""
        found = self._later.get(group)
        if found is None:
            seen: dict[str, None] = {}
            todo = list(self.after.get(group, ()))
            while todo:
                name = todo.pop(0)
                if name not in seen:
                    seen[name] = None
                    todo.extend(self.after.get(name, ()))
            found = self._later[group] = tuple(seen)
        return found

    @property
    def stuck(self) -> list[str]:
        """VMs of the plan that must fail over but cannot now (worked out once per plan)."""
        if self._stuck is None:
            self._stuck = failover.cannot_move(self)
        return self._stuck

    def stage(self, vm: DesiredVM, reverse: bool = False) -> tuple[int, int]:
        rank = self.rank.get(vm.group, 0) if vm.group else 0
        return (-rank if reverse else rank, 0)

    def failover_path(self) -> str | None:
        """How this plan's VMs fail over, said once by `drctl plan`; None when none moves."""
        return failover.describe_path(self)

    def consent(self, vm: DesiredVM, source: str) -> tuple[bool, str]:
        """Whether the spec consents now to losing writes by failing `vm` away from `source`."""
        return failover.consent(self, vm, source)

    # --- the decision for one VM -------------------------------------------

    def decide(self, vm: DesiredVM) -> VMPlan:
        if self.observed.unreachable is not None:
            # Nothing is known of its VMs, so nothing is planned: unknown is
            # never read as "stopped" or "gone".
            if self.observed.broken:
                return self.result(
                    vm,
                    None,
                    Phase.BLOCKED,
                    f"fabric '{self.plan.fabric}' cannot be opened: {self.observed.unreachable}; "
                    "nothing of this plan moves until it can",
                )
            return self.result(
                vm,
                None,
                Phase.WAITING_FOR_SITE,
                f"fabric '{self.plan.fabric}' cannot be observed: {self.observed.unreachable}; "
                "drctl asks again on every pass and moves nothing of this plan until it answers",
            )
        o = self.observed.vms.get(vm.name)
        if o is not None and _placed(vm, o, self.observed) and _protected(vm, o):
            # What `_result` makes of every decision for such a VM, whatever
            # else holds (a job running, say): most VMs, most of the time.
            return self._converged(vm, o)
        if o is None:
            unpinned = self.observed.unpinned.get(vm.name)
            if unpinned is not None:
                return self.result(vm, None, Phase.BLOCKED, unpinned)
            same_name = self.observed.duplicates.get(vm.name)
            if same_name:
                return self.result(
                    vm, None, Phase.BLOCKED, reading.duplicate_name(vm.name, same_name)
                )
            return self.result(
                vm,
                None,
                Phase.BLOCKED,
                f"VM '{vm.name}' is not in the fabric: "
                "check its name in the spec, or protect it in the fabric first",
            )
        if o.protection_state is ProtectionState.UNKNOWN:
            # Before the job and everything else: no decision rests on a
            # state drctl would have to guess.
            return self.result(vm, o, Phase.BLOCKED, reading.unknown_state(o))
        if self.azure_sites and vm.replication and vm.replication[0] in self.azure_sites:
            # A spec this scenario can never converge to moves nothing.
            return azure.replication_from_azure(self, vm, o)
        unsettled = None if self.provenance is None else self.provenance.unsettled.get(vm.name)
        if unsettled is not None:
            return self.result(vm, o, Phase.BLOCKED, unsettled)
        if o.job is not None and o.job.suspended:
            # Waiting for a person (a manual action in the fabric): never
            # retried, never taken for running forever.
            text = o.job.state_description or "suspended"
            return self.result(
                vm,
                o,
                Phase.WAITING_FOR_USER,
                f"{o.job.operation} (job {o.job.id}) waits for a person in the fabric: {text}; "
                "resume it there",
            )
        if o.job is not None and o.job.running:
            return self._job_running(vm, o, o.job)
        held = hold.moved_outside(self, vm, o) or hold.copies_unsure(self, vm, o)
        if held is not None:
            return held
        if o.active_site == vm.active_site:
            return self._at_desired_site(vm, o)
        return self._must_move(vm, o)

    def result(
        self,
        vm: DesiredVM,
        o: state.ObservedVM | None,
        phase: Phase,
        reason: str,
        action: Action | None = None,
    ) -> VMPlan:
        placed = o is not None and _placed(vm, o, self.observed)
        protected = o is not None and _protected(vm, o)
        if placed and protected:
            assert o is not None  # noqa: S101 (placed)
            return self._converged(vm, o)
        if o is not None and not o.maybe_running and not reason.startswith("no copy"):
            # The application is down: said first, whatever else the VM waits for.
            reason = f"no copy of {vm.name} runs; {reason}"
        return VMPlan(
            vm,
            o,
            phase,
            reason,
            action,
            placed,
            protected,
            self._readiness(o),
            fabric_observed=self.observed.unreachable is None,
        )

    def _converged(self, vm: DesiredVM, o: state.ObservedVM) -> VMPlan:
        key = (vm.active_site, vm.replication, vm.recovery_point)
        reason = self._converged_reasons.get(key)
        if reason is None:
            reason = self._converged_reasons[key] = _converged_reason(vm)
        return VMPlan(vm, o, Phase.CONVERGED, reason, None, True, True, self._readiness(o))

    def _readiness(self, o: state.ObservedVM | None) -> Readiness:
        rep = None if o is None else o.replication
        if rep is self._last_replication:  # a provider may share one value among VMs
            return self._last_readiness
        readiness = self._readiness_of.get(rep)
        if readiness is None:
            readiness = self._readiness_of_replication(rep)
            if len(self._readiness_of) < _SHARED_MAX:
                self._readiness_of[rep] = readiness
        self._last_replication, self._last_readiness = rep, readiness
        return readiness

    def _readiness_of_replication(self, rep: state.Replication | None) -> Readiness:
        if rep is None:
            return Readiness(None, None, rpo_at_risk=False)
        age = None if rep.last_sync is None else (self.now - rep.last_sync).total_seconds()
        at_risk = rep.health is not state.Health.NORMAL or rep.state in {
            ReplicationState.RESYNC_REQUIRED,
            ReplicationState.ERROR,
            ReplicationState.PAUSED,
        }
        if age is not None and rep.interval_seconds:
            at_risk = at_risk or age > RPO_RISK_INTERVALS * rep.interval_seconds
        return Readiness(str(rep.health), age, at_risk)

    def act(
        self,
        vm: DesiredVM,
        o: state.ObservedVM,
        phase: Phase,
        reason: str,
        operation: Operation,
        target_site: str | None,
        *,
        waiting_for: list[str] | None = None,
        shutdown_source: bool = False,
        stage: tuple[int, int] = (0, 0),
        recovery_point: str | None = None,
        plan_groups: tuple[tuple[str, ...], ...] = (),
    ) -> VMPlan:
        """Propose `operation`; ready only when nothing is awaited and the fabric allows it."""
        ready = not waiting_for
        if ready and operation not in o.allowed_operations:
            down = [
                site
                for site in dict.fromkeys((target_site, o.active_site))
                if site and not self.observed.site_connected(site)
            ]
            if down:
                return self.result(
                    vm,
                    o,
                    Phase.WAITING_FOR_SITE,
                    f"{reason}, but site {down[0]} is disconnected: waiting for it to return",
                )
            allowed = ", ".join(sorted(o.allowed_operations)) or "nothing"
            return self.result(
                vm,
                o,
                Phase.BLOCKED,
                f"{reason}, but the fabric does not "
                f"allow {operation} now (it allows: {allowed}); check the VM "
                "in the fabric",
            )
        action = Action(
            vm.plan,
            vm.name,
            operation,
            target_site,
            shutdown_source,
            ready=ready,
            waiting_for=tuple(waiting_for or ()),
            stage=stage,
            source_site=o.active_site,
            recovery_point=recovery_point,
            plan_groups=plan_groups,
        )
        if waiting_for:
            reason = f"{reason}; waiting for {context.names_text(waiting_for)}"
        return self.result(vm, o, phase, reason, action)

    def _commit(
        self, vm: DesiredVM, o: state.ObservedVM, done: str, site: str, then: str = ""
    ) -> VMPlan:
        return commit.decide_commit(self, vm, o, done, site, then)

    def _job_running(self, vm: DesiredVM, o: state.ObservedVM, job: state.Job) -> VMPlan:
        late = guardrail.past_deadline(self.plan, self.observed, o, job, self.now)
        if late is not None:
            return self.result(vm, o, Phase.STUCK, late)
        where = f" to {job.target_site}" if job.target_site else ""
        reason = f"{job.operation}{where} running ({job.progress:.0%}, job {job.id})"
        if not _moves_towards(job, vm, o):
            reason += f"; the spec now wants {vm.active_site}: continuing after it ends"
        return self.result(vm, o, _JOB_PHASE.get(job.operation, Phase.SYNCING), reason)

    def _at_desired_site(self, vm: DesiredVM, o: state.ObservedVM) -> VMPlan:
        site = vm.active_site
        if o.protection_state is ProtectionState.COMMIT_PENDING:
            return self._commit(vm, o, f"failed over to {site}", site)
        stale = [s for s in o.maybe_running if s != site]
        if stale and not self._answered_for(vm, o, stale):
            return self._fence(vm, o, stale[0])
        runs = self.observed.runs_at(o, site)
        if site in o.power_unknown and not runs:
            return self.result(vm, o, Phase.WAITING_FOR_SITE, _power_unknown(o, site, "start"))
        if not runs:
            waiting = self.waiting_predecessors(vm, "running")
            return self.act(
                vm,
                o,
                Phase.STARTING,
                f"stopped at {site}, where the spec wants it; starting it",
                Operation.START_VM,
                site,
                waiting_for=waiting,
                stage=self.stage(vm),
            )
        return replication.decide_replication(self, vm, o)

    def _answered_for(self, vm: DesiredVM, o: state.ObservedVM, stale: list[str]) -> bool:
        """Old copies whose power this fabric never reports, which the spec lets
        replication overwrite (`hold.overwrite_accepted`): a person answered for them."""
        return (
            not self.observed.reports_power
            and all(s in o.power_unknown for s in stale)
            and hold.overwrite_accepted(self, vm, o)
        )

    def _fence(self, vm: DesiredVM, o: state.ObservedVM, stale: str) -> VMPlan:
        if stale in o.power_unknown and not self.observed.reports_power:
            return hold.unseen_old_copy(self, vm, o, stale, self.observed.site_connected(stale))
        if stale in o.power_unknown:
            # Never a blind stop: a StopVM needs the copy known to run there.
            return self.result(vm, o, Phase.WAITING_FOR_SITE, _power_unknown(o, stale, "stop"))
        reason = (
            f"split brain: an old copy still runs at {stale} while the VM is active at "
            f"{o.active_site}; stopping the old copy before reverse replication"
        )
        if not self.observed.site_connected(stale):
            return self.result(
                vm,
                o,
                Phase.WAITING_FOR_SITE,
                f"an old copy may still run at "
                f"{stale}, which is disconnected: waiting for {stale} to return "
                "to stop it",
            )
        return self.act(vm, o, Phase.STOPPING, reason, Operation.STOP_VM, stale)

    def _must_move(self, vm: DesiredVM, o: state.ObservedVM) -> VMPlan:
        """The authoritative copy runs at the other site: move it to the desired one."""
        source, target = o.active_site, vm.active_site
        if o.protection_state is ProtectionState.COMMIT_PENDING:
            return self._commit(
                vm,
                o,
                f"a failover to {source} finished before the spec asked for {target}",
                source,
                then=", then failing back",
            )
        if o.protection_state is ProtectionState.COMMITTED or o.replication is None:
            # Failing back needs replication towards the target first.
            stale = [s for s in o.maybe_running if s != source]
            if stale:
                return self._fence(vm, o, stale[0])
            if source in self.azure_sites:
                return azure.decide_failback(self, vm, o, source, target)
            return replication.replicate_to(self, vm, o, target, f" before moving it to {target}")
        return failover.decide_failover(self, vm, o, source, target)


def _placed(vm: DesiredVM, o: state.ObservedVM, observed: state.Observed) -> bool:
    """Runs, committed, at its desired site and is known Off everywhere else.

    Never in a protection state drctl does not know (committed is not known then), nor
    while a job takes it away from there (`_leaving`).
    On a fabric that reports no power, "runs" is `Observed.runs_at`.
    """
    return (
        o.active_site == vm.active_site
        and not _leaving(o)
        and o.maybe_running == (vm.active_site,)
        and observed.runs_at(o, vm.active_site)
        and o.protection_state is not ProtectionState.COMMIT_PENDING
        and o.protection_state is not ProtectionState.UNKNOWN
    )


def _protected(vm: DesiredVM, o: state.ObservedVM) -> bool:
    """Replication runs as the spec says, initial sync done, health normal."""
    rep = o.replication
    if vm.replication is None:
        return rep is None
    return (
        rep is not None
        and (rep.source, rep.target) == vm.replication
        and rep.state is ReplicationState.REPLICATING
        and rep.health is state.Health.NORMAL
    )


_LEAVING = state.FAILOVERS | {Operation.STOP_VM}


def _leaving(o: state.ObservedVM) -> bool:
    """A job runs that takes the VM away from where it is (an operator's failover, say)."""
    return o.job is not None and o.job.running and o.job.operation in _LEAVING


def _converged_reason(vm: DesiredVM) -> str:
    if vm.replication is None:
        said = f"runs at {vm.active_site}, replication off as the spec says"
    else:
        said = f"runs at {vm.active_site}, replicating {vm.replication_text}"
    return said + commit.committed_note(vm)


def _power_unknown(o: state.ObservedVM, site: str, verb: str) -> str:
    """Why the VM waits on a copy whose power the fabric cannot tell."""
    seen = o.power_seen_at
    since = "never seen" if seen is None else f"last seen {seen.isoformat(timespec='seconds')}"
    return (
        f"the power of the copy at {site} is unknown ({since}): it may run, and drctl "
        f"does not {verb} a copy it cannot see; waiting for {site} to report its power"
    )


def _moves_towards(job: state.Job, vm: DesiredVM, o: state.ObservedVM) -> bool:
    if job.operation in state.FAILOVERS:
        return job.target_site == vm.active_site
    return True
