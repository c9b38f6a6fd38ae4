"""The kill test: SIGKILL a real `drctl run` at random moments while commits flip-flop
plans between the sites, restart it each time, and count what an interrupted daemon
must never do.

`run_kills` drives a `harness.Site` (a real git repository, a watched clone, the
simulated fabric, `drctl run` as a subprocess): each round commits and pulls a
move (sometimes reverted a moment later), kills the daemon at a random moment
(most often with jobs running), and starts it again. Then it lets the daemon
converge and compares the fabric's job list with the journal:

- duplicated: fabric jobs that carry an intent id another job already carries
  (the same intent issued twice), or none at all (a job drctl never journaled);
- repeated: journal entries with a job for a step (VM, operation, target) that
  another entry of the same revision already started (a step issued twice
  under new intents);
- unjournaled: fabric jobs whose intent id no journal entry holds (a call made
  before its intent was recorded);
- cancels: CancelFailover jobs, or jobs that ended Cancelled.

Called by tests/e2e/test_kill.py (a few kills, in the suite) and bench/kill.py
(thirty or more, with the figures printed).
"""

from __future__ import annotations

import dataclasses
import random
import signal
import time
from collections import Counter
from pathlib import Path

from e2e.harness import OTHER_PLAN, Site, three_tier, wait_until

from reconciler.core.state import JobState, Operation
from reconciler.engine import journal
from reconciler.fabric.sim import provider as sim
from reconciler.kits.clock import WallClock

# Long enough that most kills land while a job runs, short enough for the suite.
TIMINGS = {"plannedFailover": 1.0, "reverseReplicate": 0.6, "stopVM": 0.3}


@dataclasses.dataclass
class Figures:
    """What a kill run did and found."""

    kills: int = 0
    kills_with_jobs_running: int = 0
    commits: int = 0
    reverts: int = 0  # commits undoing the one just before, within a second
    jobs: int = 0
    journal_entries: int = 0
    duplicated: int = 0
    repeated: int = 0
    unjournaled: int = 0
    cancels: int = 0
    tracebacks: int = 0
    converged: bool = False
    seconds: float = 0.0

    def clean(self) -> bool:
        return (
            self.converged
            and self.duplicated == 0
            and self.repeated == 0
            and self.unjournaled == 0
            and self.cancels == 0
            and self.tracebacks == 0
        )


def hr_at(site: str) -> str:
    other = "rtm" if site == "ams" else "ams"
    return OTHER_PLAN.replace(
        "activeSite: ams, replication: ams->rtm",
        f"activeSite: {site}, replication: {site}->{other}",
    )


def run_kills(
    root: Path, kills: int, seed: int, max_delay: float = 2.0, converge_timeout: float = 120.0
) -> Figures:
    """Kill the daemon `kills` times at random moments (up to `max_delay` s after a
    commit is pulled), restarting it each time; then converge and count."""
    rng = random.Random(seed)  # noqa: S311 (when to kill, not a secret)
    site = Site(root, timings=TIMINGS)
    fabric = sim.SimFabric(site.state, WallClock())
    figures = Figures()
    began = time.monotonic()
    where = {"finance": "ams", "hr": "ams"}
    try:
        site.start()
        for _ in range(kills):
            _move(site, rng, where, figures)
            time.sleep(rng.uniform(0.0, max_delay))
            site.stop(signal.SIGKILL)
            figures.kills += 1
            if any(job.running for job in fabric.list_jobs()):
                figures.kills_with_jobs_running += 1
            site.start()
        wait_until(
            "every plan converged where the last commit wants it",
            lambda: _converged(site, where),
            timeout=converge_timeout,
        )
        figures.converged = True
    finally:
        if site.daemon is not None:
            site.stop()
        figures.seconds = time.monotonic() - began
        _count(site, fabric, figures)
    return figures


def _move(site: Site, rng: random.Random, where: dict[str, str], figures: Figures) -> None:
    """Commit and pull a move of one plan (or both); now and then revert it a moment later."""
    names = rng.choice([["finance"], ["finance"], ["hr"], ["finance", "hr"]])
    for name in names:
        where[name] = "rtm" if where[name] == "ams" else "ams"
    site.commit(f"move {' and '.join(names)}", _files(where))
    site.pull()
    figures.commits += 1
    if rng.random() < 0.3:
        time.sleep(rng.uniform(0.0, 1.0))
        for name in names:
            where[name] = "rtm" if where[name] == "ams" else "ams"
        site.commit(f"revert: move {' and '.join(names)}", _files(where))
        site.pull()
        figures.commits += 1
        figures.reverts += 1


def _files(where: dict[str, str]) -> dict[str, str]:
    return {"finance.yaml": three_tier(where["finance"]), "hr.yaml": hr_at(where["hr"])}


def _converged(site: Site, where: dict[str, str]) -> bool:
    status = site.status()
    return bool(status["converged"]) and all(
        vm["desired"]["activeSite"] == where[vm["plan"]] for vm in status["vms"]
    )


def _count(site: Site, fabric: sim.SimFabric, figures: Figures) -> None:
    jobs = fabric.list_jobs()
    entries = journal.Journal(site.state).entries()
    figures.jobs = len(jobs)
    figures.journal_entries = len(entries)
    carried = Counter(job.intent_id for job in jobs)
    figures.duplicated = carried.pop(None, 0) + sum(n - 1 for n in carried.values())
    steps = Counter((e.revision, e.vm, e.operation, e.target_site) for e in entries if e.job_id)
    figures.repeated = sum(n - 1 for n in steps.values())
    journaled = {e.intent_id for e in entries}
    figures.unjournaled = sum(1 for intent in carried if intent not in journaled)
    figures.cancels = sum(
        1
        for job in jobs
        if job.operation is Operation.CANCEL_FAILOVER or job.state is JobState.CANCELLED
    )
    figures.tracebacks = site.log_text().count("Traceback")
