"""After a restart, the executor adopts the job of an interrupted call, and only that job.

Real simulator, executor and journal on a virtual clock (`engine.adopt` has
the rule). The reconciler dies between recording an intent and learning the
job id (before the call, or after the fabric took it); a new executor on the
same journal must follow the job that call started, never a job an operator
started on the same VM, whatever the two clocks say. The simulator keeps
intent ids as ASR does; `fabrics.WithoutIntentIds` is a fabric that keeps
none, as Hyper-V Replica.
"""

from __future__ import annotations

import contextlib
import io
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import fabrics
import pytest
from builders import desired, inventory, inventory_vm, want

from reconciler.core import plan
from reconciler.core.plan import Phase
from reconciler.core.state import Operation
from reconciler.engine import execute, journal
from reconciler.engine import state_dir as layout
from reconciler.fabric import base
from reconciler.fabric.sim import provider as sim
from reconciler.kits.clock import VirtualClock
from reconciler.ui import live

REV = "rev1"
STOP = Operation.STOP_VM
STOP_SQL01 = plan.Action("finance", "sql01", STOP, "ams")


class Crash(BaseException):
    """The reconciler process dies here (not an Exception: nothing of drctl catches it)."""


class Dying(fabrics.Delegating):
    """The simulator, where the process dies at its first StopVM: before or after the call."""

    def __init__(self, inner: base.Provider, *, after_call: bool) -> None:
        super().__init__(inner)
        self.after_call = after_call

    def start(self, request: base.Request) -> str:
        if request.operation is not STOP:
            return self.inner.start(request)
        if self.after_call:
            job_id = self.inner.start(request)
            raise Crash(f"killed after the fabric accepted {job_id}")
        raise Crash(f"killed before starting {request.operation} of {request.vm}")


class Skewed:
    """The fabric's clock: `seconds` behind drctl's (a negative number: ahead)."""

    def __init__(self, clock: VirtualClock, seconds: float) -> None:
        self._clock = clock
        self._behind = timedelta(seconds=seconds)

    def now(self) -> datetime:
        return self._clock.now() - self._behind

    def sleep(self, seconds: float) -> None:
        self._clock.sleep(seconds)


class Site:
    """sql01 at ams, wanted at rtm: drctl's first step is a StopVM at ams."""

    def __init__(
        self, tmp_path: Path, *, fabric_behind: float = 0.0, intent_ids: bool = True
    ) -> None:
        self.clock = VirtualClock()
        self.dir = tmp_path
        self.fabric_clock = Skewed(self.clock, fabric_behind)
        self.intent_ids = intent_ids
        sim.init_fabric(tmp_path, inventory(inventory_vm("sql01")), self.fabric_clock)
        self.sim = sim.SimFabric(tmp_path, self.fabric_clock)
        self.fabric = self._provider(self.sim)
        self.journal = journal.Journal(tmp_path)
        self.desired = desired(want("sql01", "rtm"))
        self.events: list[execute.Event] = []
        self.out = io.StringIO()  # what `drctl apply` prints
        self.progress = live.Progress(self.out)

    def _provider(self, inner: sim.SimFabric) -> base.Provider:
        return inner if self.intent_ids else fabrics.WithoutIntentIds(inner)

    def crash_at_stop(self, *, after_call: bool) -> None:
        """drctl's first pass records the StopVM's intent and dies in the call."""
        inner = self._provider(sim.SimFabric(self.dir, self.fabric_clock))
        dying = Dying(inner, after_call=after_call)
        executor = execute.Executor(dying, self.journal, self.clock)
        try:
            executor.step(self.desired, REV)
        except Crash:
            pass
        else:
            raise AssertionError("the StopVM was never called")

    def restart(self) -> execute.Executor:
        """A new drctl on the same state dir, printing what `drctl apply` prints."""
        self.progress = progress = live.Progress(self.out)

        def on_event(event: execute.Event) -> None:
            self.events.append(event)
            progress.event(event)

        return execute.Executor(self.fabric, self.journal, self.clock, on_event=on_event)

    def apply(self, executor: execute.Executor, revision: str = REV) -> execute.Outcome:
        return execute.apply(executor, self.desired, revision, 120, after_step=self.progress.step)

    def by_hand(self, operation: Operation, intent_id: str | None = None) -> str:
        """An operator runs `operation` on sql01 at ams in the portal, to its end."""
        job_id = self.sim.start_by_hand(
            base.Request("sql01", operation, "ams", intent_id=intent_id)
        )
        self.clock.advance(2)
        return job_id

    def stops(self) -> list[str]:
        """The StopVM jobs the fabric ran, by id."""
        return [j.id for j in self.fabric.list_jobs() if j.operation is STOP]

    def journal_stops(self) -> list[tuple[str, str | None]]:
        return [(e.result, e.job_id) for e in self.journal.entries() if e.operation is STOP]

    def kinds(self) -> list[execute.EventKind]:
        return [e.kind for e in self.events if e.operation is STOP]


def test_a_call_that_reached_the_fabric_is_adopted_by_its_intent_id_not_issued_again(
    tmp_path: Path,
) -> None:
    site = Site(tmp_path)
    site.crash_at_stop(after_call=True)
    (ours,) = site.stops()
    (intent,) = site.journal.entries()
    assert intent.intent_id is not None
    assert site.fabric.get_job(ours).intent_id == intent.intent_id
    executor = site.restart()
    assert [(e.kind, e.job_id) for e in site.events] == [(execute.EventKind.ADOPTED, ours)]
    assert f"StopVM -> ams still running from an earlier drctl ({ours})" in site.out.getvalue()
    assert site.apply(executor).converged
    assert site.stops() == [ours]
    assert site.journal_stops() == [(journal.SUCCEEDED, ours)]
    # Every call the executor made carried its entry's intent id, and the fabric kept it.
    kept = {j.id: j.intent_id for j in site.fabric.list_jobs()}
    recorded = {e.job_id: e.intent_id for e in site.journal.entries()}
    assert kept == recorded
    assert len(set(kept.values())) == len(kept)


@pytest.mark.parametrize("theirs_intent", [None, "another-drctls-intent"], ids=["none", "another"])
def test_an_operators_stop_in_the_same_second_is_not_taken_for_drctls(
    tmp_path: Path, theirs_intent: str | None
) -> None:
    """drctl died before its call; 0.3 s later an operator stopped the VM in the portal
    (no intent id), or another drctl did (its own intent id)."""
    site = Site(tmp_path)
    site.crash_at_stop(after_call=False)
    site.clock.advance(0.3)
    theirs = site.sim.start_by_hand(base.Request("sql01", STOP, "ams", intent_id=theirs_intent))
    executor = site.restart()
    assert execute.EventKind.ADOPTED not in site.kinds()
    assert site.journal_stops() == [(journal.NOT_ISSUED, None)]
    assert site.apply(executor).converged
    # The VM was stopped already: drctl went on to fail it over, and never
    # recorded the operator's job as its own.
    assert "from an earlier drctl" not in site.out.getvalue()
    assert site.stops() == [theirs]
    assert site.journal_stops() == [(journal.NOT_ISSUED, None)]
    assert theirs not in {e.job_id for e in site.journal.entries()}


def test_a_fabric_clock_five_seconds_behind_does_not_hide_drctls_own_job(tmp_path: Path) -> None:
    site = Site(tmp_path, fabric_behind=5.0)
    site.crash_at_stop(after_call=True)
    (ours,) = site.stops()
    executor = site.restart()
    assert site.kinds() == [execute.EventKind.ADOPTED]
    assert [e.job_id for e in site.events] == [ours]
    assert site.journal_stops() == [(journal.RUNNING, ours)]
    site.clock.advance(2)
    executor.step(site.desired, REV)
    assert site.journal_stops() == [(journal.SUCCEEDED, ours)]
    assert site.kinds() == [execute.EventKind.ADOPTED, execute.EventKind.SUCCEEDED]
    assert site.stops() == [ours]  # issued once


def test_an_intent_an_older_drctl_left_open_is_matched_without_an_intent_id(
    tmp_path: Path,
) -> None:
    """The upgrade: that drctl's call carried none, so the fallback rule finds its job."""
    site = Site(tmp_path)
    entry = site.journal.record_intent(STOP_SQL01, REV, site.clock.now())
    with contextlib.closing(sqlite3.connect(layout.journal_path(tmp_path))) as db:
        db.execute("UPDATE actions SET intent_id = NULL WHERE id = ?", (entry.id,))
        db.commit()
    ours = site.fabric.start(base.Request("sql01", STOP, "ams"))
    site.restart()
    assert [(e.kind, e.job_id) for e in site.events] == [(execute.EventKind.ADOPTED, ours)]
    assert site.journal_stops() == [(journal.RUNNING, ours)]


# --- a fabric that keeps no intent ids ---------------------------------------------------------


def test_without_intent_ids_the_one_unclaimed_job_after_drctls_last_one_is_adopted(
    tmp_path: Path,
) -> None:
    """An operator's older StopVM on the VM is not taken for drctl's, nor is a clock needed."""
    site = Site(tmp_path, intent_ids=False, fabric_behind=5.0)
    older = site.by_hand(Operation.STOP_VM)  # an operator's stop and start, before drctl ran
    site.by_hand(Operation.START_VM)
    # drctl stops sql01 to move it, the spec is reverted, drctl starts it again.
    first = execute.Executor(site.fabric, site.journal, site.clock)
    for wanted in ("rtm", "ams", "ams"):
        first.step(desired(want("sql01", wanted)), "rev0")
        site.clock.advance(1)
    assert [(e.operation, e.result) for e in site.journal.entries()] == [
        (STOP, journal.SUCCEEDED),
        (Operation.START_VM, journal.SUCCEEDED),
    ]
    # Moved again: its StopVM reaches the fabric and the process dies.
    site.crash_at_stop(after_call=True)
    _, drctls, ours = site.stops()
    executor = site.restart()
    assert [(e.kind, e.job_id) for e in site.events] == [(execute.EventKind.ADOPTED, ours)]
    assert site.journal_stops() == [(journal.SUCCEEDED, drctls), (journal.RUNNING, ours)]
    assert site.apply(executor).converged
    assert site.stops() == [older, drctls, ours]
    assert older not in {e.job_id for e in site.journal.entries()}


def test_without_intent_ids_two_candidates_adopt_none_and_hold_the_vm_until_a_new_revision(
    tmp_path: Path,
) -> None:
    site = Site(tmp_path, intent_ids=False)
    site.crash_at_stop(after_call=True)
    (ours,) = site.stops()
    site.clock.advance(2)
    site.by_hand(Operation.START_VM)  # meanwhile an operator starts it, and stops it again
    theirs = site.by_hand(Operation.STOP_VM)
    jobs = len(site.fabric.list_jobs())
    executor = site.restart()
    outcome = site.apply(executor)
    assert not outcome.converged
    assert not outcome.timed_out
    (vm,) = outcome.plan.vms
    assert vm.phase is Phase.BLOCKED
    why = (
        f"drctl cannot tell which of jobs {ours}, {theirs} is the StopVM it called before it "
        "restarted (fabric 'embedded' keeps no intent ids) and never guesses: sql01 starts "
        "nothing until a new revision is committed"
    )
    assert why in vm.reason
    assert f"finance/sql01: Blocked: no copy of sql01 runs; {why}" in site.out.getvalue()
    assert execute.EventKind.ADOPTED not in site.kinds()
    (entry,) = site.journal.entries()
    assert entry.result == journal.UNSETTLED
    assert entry.error is not None
    assert why in entry.error
    assert len(site.fabric.list_jobs()) == jobs  # nothing started
    # A restart changes nothing; the person's new revision does.
    assert not site.apply(site.restart()).converged
    assert site.apply(site.restart(), "rev2").converged
    (entry, *_) = site.journal.entries()
    assert entry.result == journal.ABANDONED
    assert entry.error is not None
    assert entry.error.endswith(
        "closed when revision rev2 came into force, none of those jobs taken for drctl's"
    )
    assert site.stops() == [ours, theirs]  # the VM was off: no third stop
    assert {ours, theirs}.isdisjoint(e.job_id for e in site.journal.entries())


def test_with_the_fabric_clock_behind_drctls_own_failover_is_not_taken_for_an_operators(
    tmp_path: Path,
) -> None:
    """Provenance compares the fabric's times with the fabric's: a failback after drctl's own
    failover goes ahead, never Held as "failed over outside drctl", whatever the skew."""
    site = Site(tmp_path, fabric_behind=30.0)
    wanted = desired(want("sql01", "rtm")._replace(commit_after_seconds=0))
    executor = site.restart()
    assert execute.apply(executor, wanted, REV, 300).converged
    back = execute.apply(executor, desired(want("sql01", "ams")), "rev2", 300)
    (vp,) = back.plan.vms
    assert back.converged, vp.reason
