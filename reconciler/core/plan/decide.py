"""The decision for one VM of one plan: its phase, its reason, its next action.

Every decision comes from what the fabric reports now (active site, running
copies, protection state, allowed operations, the job in progress), never
from a remembered chain of steps: what follows a failover depends on what the
fabric did, and the daemon can be killed at any moment. Called by
`plan.build_plan`; pure.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import datetime

from reconciler.core import state
from reconciler.core.desired import DesiredVM, PlanSpec
from reconciler.core.plan import commit, order, reading
from reconciler.core.plan.model import Action, Phase, Provenance, Readiness, VMPlan
from reconciler.core.state import FailoverKind, Operation, ProtectionState, ReplicationState

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
        self._stuck: list[str] | None = None
        # Many VMs share a replication state and a desired placement: their
        # readiness and the reason they are converged are worked out once.
        self._readiness_of: dict[state.Replication | None, Readiness] = {}
        self._converged_reasons: dict[tuple[str, tuple[str, str] | None, str], str] = {}
        self._last_replication: state.Replication | None = None
        self._last_readiness = self._readiness_of_replication(None)

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

    def _waiting_dependents(self, vm: DesiredVM) -> list[str]:
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

    def _cannot_move(self) -> list[str]:
        """VMs of the plan that must fail over but cannot now (worked out once per plan)."""
        if self._stuck is None:
            self._stuck = []
            for vm in self.plan.vms:
                o = self._obs(vm.name)
                if o is not None and (
                    o.active_site == vm.active_site or (o.job is not None and o.job.running)
                ):
                    continue
                if o is not None and o.protection_state is ProtectionState.UNKNOWN:
                    self._stuck.append(vm.name)  # drctl moves no VM it cannot read
                    continue
                if o is not None and o.protection_state in {
                    ProtectionState.COMMIT_PENDING,
                    ProtectionState.COMMITTED,
                }:
                    continue  # failed over already: committing or reversing replication
                allowed = set() if o is None else o.allowed_operations
                if Operation.PLANNED_FAILOVER in allowed or (
                    self.consent(vm, o.active_site if o else "")[0]
                    and Operation.UNPLANNED_FAILOVER in allowed
                ):
                    continue
                self._stuck.append(vm.name)
        return self._stuck

    def stage(self, vm: DesiredVM, reverse: bool = False) -> tuple[int, int]:
        rank = self.rank.get(vm.group, 0) if vm.group else 0
        return (-rank if reverse else rank, 0)

    def failover_path(self) -> str | None:
        """How this plan's VMs fail over, said once by `drctl plan`; None when none moves."""
        moving = any(
            (o := self._obs(vm.name)) is not None and o.active_site != vm.active_site
            for vm in self.plan.vms
        )
        if not moving:
            return None
        if not self.plan.groups:
            return "each VM on its own (no groups)"
        if self.plan.unordered_failover:
            return (
                "unordered (policy.unorderedFailover): each VM fails over as soon as it can, "
                "without the group order"
            )
        if not self.observed.can_stop_vms:
            return (
                "blocked: this fabric cannot stop VMs, so dependents cannot stop first, and "
                "this provider offers no plan-level failover"
            )
        return (
            "dependents first: drctl stops the groups in reverse order, then fails them "
            "over in boot order"
        )

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
        if o is not None and _placed(vm, o) and _protected(vm, o):
            # What `_result` makes of every decision for such a VM, whatever
            # else holds (a job running, say): most VMs, most of the time.
            return self._converged(vm, o)
        if o is None:
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
        held = self._moved_outside(vm, o) or self._copies_unsure(vm, o)
        if held is not None:
            return held
        if o.active_site == vm.active_site:
            return self._at_desired_site(vm, o)
        return self._must_move(vm, o)

    # --- what drctl did not do ------------------------------------------------

    def _outside(self, o: state.ObservedVM) -> bool:
        """Whether the failover that made the active copy active was made outside drctl."""
        job = o.last_failover_job
        return (
            self.provenance is not None
            and job is not None
            and not self.provenance.is_own(job, o.last_failover_at)
        )

    def _moved_outside(self, vm: DesiredVM, o: state.ObservedVM) -> VMPlan | None:
        """Held: a failover drctl did not start is never reverted by drctl on its own.

        Only `policy.selfHeal` or a revision made after the move moves it again.
        """
        if o.active_site == vm.active_site or not self._outside(o) or self.plan.self_heal:
            return None
        assert self.provenance is not None  # noqa: S101 (_outside)
        made, at = self.provenance.revision_made_at, o.last_failover_at
        if made is not None and at is not None and made > at:
            return None
        when = "at an unknown time" if at is None else f"at {at.isoformat()}"
        return self.result(
            vm,
            o,
            Phase.HELD,
            f"failed over to {o.active_site} outside drctl {when} by job "
            f"{o.last_failover_job}; commit `activeSite: {o.active_site}` to accept it, or "
            f"commit a revision made after that which keeps `activeSite: {vm.active_site}` "
            "to move it back",
        )

    def _copies_unsure(self, vm: DesiredVM, o: state.ObservedVM) -> VMPlan | None:
        """Held: two copies run and drctl cannot tell which one took writes last.

        A stale copy is stopped (or the VM moved at all) only when drctl's journal
        shows the failover that made the other copy the authoritative one.
        """
        stale = next((s for s in o.running if s != o.active_site), None)
        if stale is None or not self._outside(o):
            return None
        return self.result(
            vm,
            o,
            Phase.HELD,
            f"copies run at {o.active_site} and {stale}, and the failover to {o.active_site} "
            f"(job {o.last_failover_job}) was made outside drctl, which cannot tell which copy "
            f"took writes last: stop the copy that must not run, in the fabric, after saving "
            "what it holds",
        )

    def result(
        self,
        vm: DesiredVM,
        o: state.ObservedVM | None,
        phase: Phase,
        reason: str,
        action: Action | None = None,
    ) -> VMPlan:
        placed = o is not None and _placed(vm, o)
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
        )
        if waiting_for:
            reason = f"{reason}; waiting for {names_text(waiting_for)}"
        return self.result(vm, o, phase, reason, action)

    def _commit(
        self, vm: DesiredVM, o: state.ObservedVM, done: str, site: str, then: str = ""
    ) -> VMPlan:
        return commit.decide_commit(self, vm, o, done, site, then)

    def _job_running(self, vm: DesiredVM, o: state.ObservedVM, job: state.Job) -> VMPlan:
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
        if stale:
            return self._fence(vm, o, stale[0])
        if site in o.power_unknown:
            return self.result(vm, o, Phase.WAITING_FOR_SITE, _power_unknown(o, site, "start"))
        if site not in o.running:
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
        return self._replication_at_site(vm, o)

    def _fence(self, vm: DesiredVM, o: state.ObservedVM, stale: str) -> VMPlan:
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

    def _replication_at_site(self, vm: DesiredVM, o: state.ObservedVM) -> VMPlan:
        """The VM runs where it should; bring replication to what the spec says."""
        site = vm.active_site
        want = vm.replication
        rep = o.replication
        if want is None:
            if rep is None:
                return self.result(vm, o, Phase.CONVERGED, "")
            if not vm.confirm_disable_replication:
                # On ASR disabling replication deletes the replicated item: the
                # way back is gone, and rebuilding it is a full initial copy.
                return self.result(
                    vm,
                    o,
                    Phase.BLOCKED,
                    f"the spec says replication off, but {rep.direction} runs: turning it off "
                    "removes the return path (on ASR it deletes the replicated item); add "
                    "`confirmDisableReplication: true` beside `replication: off` if that is "
                    "meant, or set replication back",
                )
            return self.act(
                vm,
                o,
                Phase.SYNCING,
                f"replication {rep.direction} is on but the spec says off; disabling it",
                Operation.DISABLE_REPLICATION,
                None,
            )
        if rep is None:
            return self._replicate(vm, o, want[1], "")
        if (rep.source, rep.target) != want:
            return self.result(
                vm,
                o,
                Phase.BLOCKED,
                f"replication flows {rep.direction} while "
                f"the VM runs at {site}: check replication in the fabric",
            )
        if rep.state is ReplicationState.RESYNC_REQUIRED and Operation.RESYNC in (
            o.allowed_operations
        ):
            # A fabric whose resync is an operation of its own, not a schedule.
            return self.act(
                vm,
                o,
                Phase.SYNCING,
                f"replication {rep.direction} needs a resync; resyncing it",
                Operation.RESYNC,
                rep.target,
            )
        return self.result(vm, o, *_sync_status(rep, self.now))

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
            return self._replicate(vm, o, target, f" before moving it to {target}")
        return self._failover(vm, o, source, target)

    def _replicate(self, vm: DesiredVM, o: state.ObservedVM, target: str, purpose: str) -> VMPlan:
        """Start replication from the active copy to `target`: a reprotect after a
        committed failover, else enabling it."""
        source = o.active_site
        if not self.observed.site_connected(target):
            return self.result(
                vm,
                o,
                Phase.WAITING_FOR_SITE,
                f"runs at {source}; replication "
                f"to {target}{purpose} needs site {target}, which is "
                f"disconnected: waiting for {target} to return",
            )
        if o.protection_state is ProtectionState.COMMITTED:
            salvage = self._lost_writes_held(vm, o, target)
            if salvage is not None:
                return salvage
            return self.act(
                vm,
                o,
                Phase.REPROTECTING,
                f"failover to {source} committed; "
                f"reversing replication to {source}->{target}{purpose}",
                Operation.REVERSE_REPLICATE,
                target,
            )
        return self.act(
            vm,
            o,
            Phase.SYNCING,
            f"runs at {source} with replication off; enabling {source}->{target}{purpose}",
            Operation.ENABLE_REPLICATION,
            target,
        )

    def _lost_writes_held(self, vm: DesiredVM, o: state.ObservedVM, old: str) -> VMPlan | None:
        """Held: reversing replication after an unplanned failover overwrites the old copy.

        That copy may hold the only copy of the writes the failover lost: it
        waits for `discardLostWrites: <the failover's job>`, unless the plan says
        `policy.reprotectAfterUnplanned: auto`.
        """
        if o.last_failover is not FailoverKind.UNPLANNED:
            return None
        job = o.last_failover_job
        if self.plan.reprotect_after_unplanned == "auto" or (
            job is not None and vm.discard_lost_writes in {job, "any"}
        ):
            return None
        lost = o.last_failover_loss_seconds
        how_much = "some" if lost is None else f"up to {lost:.0f} s of"
        return self.result(
            vm,
            o,
            Phase.HELD,
            f"the copy at {old} holds {how_much} writes that never reached {o.active_site}; "
            f"salvage them, then commit `discardLostWrites: {job or 'any'}` to reverse "
            f"replication ({o.active_site}->{old} overwrites the copy at {old})",
        )

    def _failover(self, vm: DesiredVM, o: state.ObservedVM, source: str, target: str) -> VMPlan:
        rep = o.replication
        assert rep is not None  # noqa: S101 (checked by the caller)
        if o.test_failover is state.TestFailoverState.RUNNING:
            return self.result(
                vm,
                o,
                Phase.BLOCKED,
                f"a test failover of {vm.name} is running "
                f"at {rep.target}: clean it up (TestFailoverCleanup) before "
                f"failing over to {target}",
            )
        if rep.target != target:
            return self.result(
                vm,
                o,
                Phase.BLOCKED,
                f"replication flows {rep.direction}, "
                f"not towards {target}: check replication in the fabric",
            )
        if not self.observed.site_connected(target):
            return self.result(
                vm,
                o,
                Phase.WAITING_FOR_SITE,
                f"failover to {target} needs site {target}, which is disconnected: waiting for it",
            )
        if rep.state is ReplicationState.INITIAL_SYNC:
            return self.result(
                vm,
                o,
                Phase.SYNCING,
                f"initial replication {rep.direction} "
                f"still running: the failover to {target} waits for it",
            )
        predecessors = self.waiting_predecessors(vm, "target")
        move = f"moving from {source} to {target}"
        if not self.observed.can_stop_vms and self.plan.groups and not self.plan.unordered_failover:
            # Dependents first needs a stop before each failover; a fabric that
            # cannot stop VMs orders a grouped plan only through a plan-level
            # failover of its own (an ASR recovery plan).
            return self.result(
                vm,
                o,
                Phase.BLOCKED,
                f"{move}: this fabric cannot stop VMs, so plan '{vm.plan}' cannot stop its "
                "dependents first, and this provider offers no plan-level failover; commit "
                "`policy.unorderedFailover: true` to fail its VMs over without the group order",
            )
        # All or nothing: while a moving VM of the plan cannot fail over, none
        # does (an application split across two sites is down at both).
        stuck = [n for n in self._cannot_move() if n != vm.name]
        reachable = self.observed.site_connected(source)
        dependents = self._waiting_dependents(vm) if reachable else []
        if Operation.PLANNED_FAILOVER in o.allowed_operations:
            if source in o.running and self.observed.can_stop_vms:
                # Stopping is only worth it when the whole plan can move: a VM
                # stopped for a move that cannot happen is an outage for nothing.
                why = (
                    f"; holding the stop: {names_text(stuck)} cannot fail over now" if stuck else ""
                )
                return self.act(
                    vm,
                    o,
                    Phase.STOPPING,
                    f"{move}: stopping it at {source} "
                    f"(dependents first) before the planned failover{why}",
                    Operation.STOP_VM,
                    source,
                    waiting_for=[*stuck, *dependents],
                    stage=self.stage(vm, reverse=True),
                )
            return self.act(
                vm,
                o,
                Phase.FAILING_OVER,
                f"{move}: planned failover (no data loss)",
                Operation.PLANNED_FAILOVER,
                target,
                waiting_for=[*stuck, *dependents, *predecessors],
                stage=self.stage(vm),
            )
        why = self._why_not_planned(o, source)
        consented, consent = self.consent(vm, source)
        if not consented:
            return self.result(
                vm,
                o,
                Phase.BLOCKED,
                f"{move}: {why}, so a planned failover is "
                "impossible; an unplanned failover could lose up to "
                f"{_loss_text(o, self.now)} of writes. {consent}Commit "
                f"allowDataLoss: {{from: {source}, until: <time>}} in plan '{vm.plan}' (or on "
                f"the VM) to accept that for this event, or wait for "
                f"{self._what_to_wait_for(o, source)}",
            )
        if predecessors and reachable and source in o.running and self.observed.can_stop_vms:
            # The source answers: dependents first on this path too. A VM whose
            # predecessors must move first is stopped now, so that they can.
            return self.act(
                vm,
                o,
                Phase.STOPPING,
                f"{move}: {why}; stopping it at {source} (dependents first) before the "
                f"unplanned failover allowed by {consent}",
                Operation.STOP_VM,
                source,
                waiting_for=[*stuck, *dependents],
                stage=self.stage(vm, reverse=True),
            )
        return self.act(
            vm,
            o,
            Phase.FAILING_OVER,
            f"{move}: {why}; unplanned failover "
            f"allowed by {consent} (may lose up to {_loss_text(o, self.now)} "
            "of writes)",
            Operation.UNPLANNED_FAILOVER,
            target,
            waiting_for=[*stuck, *dependents, *predecessors],
            # Always asked: the fabric shuts the source down first where it can still
            # reach it (ASR sourceSiteOperations: Required), and goes on if not.
            shutdown_source=True,
            stage=self.stage(vm),
        )

    def consent(self, vm: DesiredVM, source: str) -> tuple[bool, str]:
        """Whether the spec consents now to losing writes by failing `vm` away from `source`.

        The words: the consent that allows it, or why a scoped one does not
        (expired, another site, another revision), to lead the Blocked reason.
        """
        if vm.allow_data_loss:
            return True, "allowDataLoss"
        if vm.data_loss_window is not None:
            site, until = vm.data_loss_window
            if site != source:
                return False, f"allowDataLoss covers failovers away from {site}, not {source}. "
            if self.now >= until:
                return False, f"allowDataLoss from {site} expired at {until.isoformat()}. "
            return True, f"allowDataLoss from {site} until {until.isoformat()}"
        if vm.data_loss_revision is not None:
            rev = None if self.provenance is None else self.provenance.revision
            if rev is not None and rev.startswith(vm.data_loss_revision):
                return True, f"allowDataLoss for revision {vm.data_loss_revision}"
            return False, (
                f"allowDataLoss covers revision {vm.data_loss_revision}, not the one in force. "
            )
        return False, ""

    def _why_not_planned(self, o: state.ObservedVM, source: str) -> str:
        rep = o.replication
        if not self.observed.site_connected(source):
            return f"site {source} is disconnected"
        if rep is not None and rep.state is not ReplicationState.REPLICATING:
            return f"replication {rep.direction} is {rep.state}"
        if rep is not None and rep.health is not state.Health.NORMAL:
            return f"replication {rep.direction} is behind (health {rep.health})"
        return "the fabric does not allow a planned failover now"

    def _what_to_wait_for(self, o: state.ObservedVM, source: str) -> str:
        if not self.observed.site_connected(source):
            return f"site {source} to return"
        return "replication to catch up"


def _placed(vm: DesiredVM, o: state.ObservedVM) -> bool:
    """Runs, committed, at its desired site and is known Off everywhere else.

    Never in a protection state drctl does not know: committed is not known then.
    """
    return (
        o.active_site == vm.active_site
        and o.running == (vm.active_site,)
        and not o.power_unknown
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


def _sync_status(rep: state.Replication, now: datetime) -> tuple[Phase, str]:
    if rep.state is ReplicationState.REPLICATING and rep.health is state.Health.NORMAL:
        return Phase.CONVERGED, ""
    if rep.state in {ReplicationState.INITIAL_SYNC, ReplicationState.RESYNC_REQUIRED}:
        return Phase.SYNCING, f"replication {rep.direction}: {rep.state}, waiting for it to finish"
    if rep.state is ReplicationState.REPLICATING:
        age = (
            ""
            if rep.last_sync is None
            else (f", last sync {(now - rep.last_sync).total_seconds():.0f}s ago")
        )
        return Phase.SYNCING, (
            f"replication {rep.direction} is behind (health {rep.health}"
            f"{age}): waiting for it to catch up"
        )
    return Phase.BLOCKED, (
        f"replication {rep.direction} is {rep.state}: resume or repair it in the fabric"
    )


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


def _loss_text(o: state.ObservedVM, now: datetime) -> str:
    rep = o.replication
    if rep is None or rep.last_sync is None:
        return "an unknown amount"
    return f"{(now - rep.last_sync).total_seconds():.0f}s"


def names_text(names: list[str]) -> str:
    shown = ", ".join(names[:5])
    return shown if len(names) <= 5 else f"{shown} and {len(names) - 5} more"
