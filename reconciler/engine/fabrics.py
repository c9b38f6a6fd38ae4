"""The fabrics of the desired state: one provider each, opened when first used, closed together.

The executor drives every fabric its plans use through one `Fabrics`: it
observes each (a fabric that cannot be observed is reported as such, so its
plans wait with the reason while the other fabrics' plans go on), routes each
start to the fabric of the action's plan, and follows each job at the fabric
that runs it. Job ids of a declared fabric are written `<fabric>/<id>` so
that they are unique across fabrics in the journal; the embedded simulator's
ids stay as the fabric writes them.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Self

from reconciler import errors, fabric
from reconciler.core import pin, state
from reconciler.core.desired import EMBEDDED_FABRIC, DesiredState
from reconciler.engine import journal_backend, step_log
from reconciler.engine import state_dir as layout
from reconciler.fabric import base, config
from reconciler.kits import clock as clocks


class Fabrics:
    """Every fabric the plans in force use, by name."""

    def __init__(self, state_dir: Path, clock: clocks.Clock) -> None:
        self._state_dir = state_dir
        self._clock = clock
        self._configs: dict[str, config.FabricConfig] = {
            EMBEDDED_FABRIC: config.embedded(state_dir)
        }
        self._open: dict[str, base.Provider] = {}
        # The journal that keeps the steps of providers running their own jobs.
        self._steps: tuple[journal_backend.Backend, bool] | None = None
        # The VMs each fabric's plans pin to one of its ids (asrItem), by name.
        self._pins: dict[str, dict[str, str]] = {}
        self._pinned_for: DesiredState | None = None

    @classmethod
    def of(cls, provider: base.Provider, state_dir: Path = Path()) -> Fabrics:
        """Fabrics whose embedded fabric is `provider`, already open (tests, one-shot commands)."""
        fabrics = cls(state_dir, clocks.WallClock())
        fabrics._open[EMBEDDED_FABRIC] = provider
        return fabrics

    def keep_steps(self, journal: journal_backend.Backend, *, writable: bool = True) -> None:
        """Hand `journal` to every provider that runs its own multi-step jobs, now and
        when it opens (`fabric.base.OwnsJobs`); `writable` False for a command that
        only reads (status, plan)."""
        self._steps = (journal, writable)
        for name, provider in self._open.items():
            self._hand_steps(name, provider)

    def _hand_steps(self, name: str, provider: base.Provider) -> None:
        if self._steps is None or not isinstance(provider, base.OwnsJobs):
            return
        journal, writable = self._steps
        log = step_log.JournalStepLog(journal, name, provider.fabric_kind, writable=writable)
        provider.use_step_log(log)

    def use(self, desired: DesiredState) -> None:
        """Learn the fabrics `desired` declares and uses; a changed declaration reopens one."""
        if desired is not self._pinned_for:
            self._pinned_for = desired
            self._pins = {}
            for plan in desired.plans:
                for vm in plan.vms:
                    if vm.vm_id is not None:
                        self._pins.setdefault(plan.fabric, {})[vm.name] = vm.vm_id
        for spec in desired.fabrics:
            wanted = config.from_spec(spec, layout.fabric_dir(self._state_dir, spec.name))
            if self._configs.get(spec.name) != wanted:
                self._configs[spec.name] = wanted
                old = self._open.pop(spec.name, None)
                if old is not None:
                    old.close()

    def provider(self, name: str) -> base.Provider:
        """The open provider of fabric `name`, opened now if it was not."""
        found = self._open.get(name)
        if found is not None:
            return found
        wanted = self._configs.get(name)
        if wanted is None:
            # Named by a job in the journal, but not declared by the specs in force.
            raise errors.TransientError(
                f"fabric '{name}' is not declared by the specs in force: declare it again "
                "to follow its jobs"
            )
        opened = fabric.open_provider(wanted, self._clock)
        self._open[name] = opened
        self._hand_steps(name, opened)
        return opened

    def observe(self, names: Iterable[str]) -> dict[str, state.Observed]:
        """What each named fabric reports now; one that cannot answer is marked so.

        A transient error (a partition, a timeout) leaves its plans waiting; a
        fabric that cannot be opened at all (not initialised, declared wrongly)
        needs a person: its plans are Blocked with the reason. Either way
        nothing is known of its VMs this pass, and the other fabrics go on.
        """
        found: dict[str, state.Observed] = {}
        for name in names:
            try:
                observed = self.provider(name).observe()
            except errors.TransientError as exc:
                found[name] = state.Observed(sites={}, vms={}, unreachable=str(exc))
                continue
            except errors.DrctlError as exc:
                found[name] = state.Observed(sites={}, vms={}, unreachable=str(exc), broken=True)
                continue
            observed = pin.pinned(observed, self._pins.get(name, {}))
            found[name] = observed if name == EMBEDDED_FABRIC else _named_jobs(name, observed)
        return found

    def pins(self, name: str) -> dict[str, str]:
        """The fabric's id of each VM that the plans on fabric `name` pin to one (asrItem)."""
        return self._pins.get(name, {})

    def start(self, name: str, request: base.Request) -> str:
        job_id = self.provider(name).start(request)
        return job_id if name == EMBEDDED_FABRIC else f"{name}/{job_id}"

    def get_job(self, job_id: str) -> state.Job:
        """The job as its fabric reports it; TerminalError only when that fabric does not know it.

        A fabric that cannot be opened now (a declaration changed or removed,
        its directory gone) says nothing of the job: that is transient, never
        "the fabric forgot the job".
        """
        name, own = _split(job_id)
        try:
            provider = self.provider(name)
        except errors.TransientError:
            raise
        except errors.DrctlError as exc:
            raise errors.TransientError(f"fabric '{name}' cannot be opened: {exc}") from exc
        job = provider.get_job(own)
        return job if name == EMBEDDED_FABRIC else dataclasses.replace(job, id=job_id)

    def list_jobs(self, name: str) -> list[state.Job]:
        """Every job fabric `name` remembers, in start order, with ids as the journal writes them.

        A fabric that cannot be asked fails the call (TransientError): the
        executor matches an interrupted intent against this list, and no
        answer must never read as "the call never reached it".
        """
        try:
            listed = self.provider(name).list_jobs()
        except errors.TransientError:
            raise
        except errors.DrctlError as exc:
            raise errors.TransientError(f"fabric '{name}' cannot list its jobs: {exc}") from exc
        if name == EMBEDDED_FABRIC:
            return listed
        return [dataclasses.replace(j, id=f"{name}/{j.id}") for j in listed]

    def retire_plans(self, desired: DesiredState) -> list[tuple[str, base.Retired]]:
        """What each declared fabric that keeps objects of its own per plan
        (`base.RetiresPlans`: ASR's recovery plans) did with those of the plans
        `desired` no longer has on it, by fabric.

        Only fabrics the specs in force declare: specs that declare nothing
        (an emptied directory) retire nothing. A fabric that cannot be opened
        or answer now is asked again at a later step.
        """
        done: list[tuple[str, base.Retired]] = []
        for spec in desired.fabrics:
            try:
                provider = self.provider(spec.name)
                if not isinstance(provider, base.RetiresPlans):
                    continue
                keep = {p.name for p in desired.plans if p.fabric == spec.name}
                done.extend((spec.name, r) for r in provider.retire_plans(keep))
            except errors.DrctlError:
                continue  # its plans say why it cannot be opened or observed
        return done

    def keeps_intent_ids(self, name: str) -> bool:
        """Whether fabric `name` reports the intent id of each job's request (its provider)."""
        return self.provider(name).keeps_intent_ids

    def close(self) -> None:
        opened, self._open = self._open, {}
        for provider in opened.values():
            with contextlib.suppress(errors.DrctlError):
                provider.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def open_for(desired: DesiredState, state_dir: Path, clock: clocks.Clock) -> Fabrics:
    """The fabrics of `desired` for a one-shot command.

    The embedded simulator, when the plans use it, is opened at once: a
    command on a state dir with no fabric says so and exits, as it always
    did. A declared fabric that cannot be opened leaves its plans waiting.
    """
    fabrics = Fabrics(state_dir, clock)
    fabrics.use(desired)
    if not desired.fabrics:
        fabrics.provider(EMBEDDED_FABRIC)
    return fabrics


def raise_if_blind(observed: dict[str, state.Observed]) -> None:
    """Raise the fabrics' error when none of them could be observed (a command exits 3)."""
    lost = [o for o in observed.values() if o.unreachable is not None]
    if observed and len(lost) == len(observed):
        why = "; ".join(sorted({str(o.unreachable) for o in lost}))
        if all(o.broken for o in lost):
            raise errors.TerminalError(why)
        raise errors.TransientError(why)


def _split(job_id: str) -> tuple[str, str]:
    """(fabric, the fabric's own id) of a job id as the journal writes it."""
    name, sep, own = job_id.partition("/")
    return (name, own) if sep else (EMBEDDED_FABRIC, job_id)


def _named_jobs(name: str, observed: state.Observed) -> state.Observed:
    """`observed` with its job ids written as the journal writes them: `<fabric>/<id>`."""

    def named(job: state.Job) -> state.Job:
        return dataclasses.replace(job, id=f"{name}/{job.id}")

    def named_vm(vm: state.ObservedVM) -> state.ObservedVM:
        if vm.job is None and vm.last_failover_job is None:
            return vm
        return dataclasses.replace(
            vm,
            job=None if vm.job is None else named(vm.job),
            last_failover_job=None
            if vm.last_failover_job is None
            else f"{name}/{vm.last_failover_job}",
        )

    vms = {vm_name: named_vm(vm) for vm_name, vm in observed.vms.items()}
    return dataclasses.replace(observed, vms=vms, jobs=tuple(named(j) for j in observed.jobs))


def merge(observed: Iterable[state.Observed]) -> state.Observed:
    """One view of several fabrics for what reads the fabric as a whole (metrics, unmanaged VMs).

    A site name two fabrics share is connected only when it is in both.
    """
    observed = list(observed)
    if len(observed) == 1:
        return observed[0]  # the usual case: nothing to copy
    sites: dict[str, state.Site] = {}
    vms: dict[str, state.ObservedVM] = {}
    duplicates: dict[str, tuple[state.ObservedVM, ...]] = {}
    jobs: list[state.Job] = []
    at = None
    for one in observed:
        for site in one.sites.values():
            known = sites.get(site.name)
            sites[site.name] = site if known is None or not site.connected else known
        vms.update(one.vms)
        for name, same in one.duplicates.items():
            duplicates[name] = duplicates.get(name, ()) + same
        jobs.extend(one.jobs)
        at = at or one.at
    return state.Observed(sites=sites, vms=vms, at=at, jobs=tuple(jobs), duplicates=duplicates)
