"""What /metrics costs at 1k, 10k and 100k VMs: a pass's `Metrics.update_from_plan`, a scrape.

Run by hand: `.venv/bin/python bench/metrics_scale.py [VMS ...]`. Inputs come
from the real planner: `plan.build_plan` on a synthetic spec and observation
in which most VMs are converged, some fail over, some do not replicate.

Measured, each in the same run on the same state:
- a pass: `update_from_plan` with the plan built anew and nothing changed
  (what today's planner hands every pass), with one VM changed (its last
  sync), and with one VM changed in a plan whose other VMPlans are those of
  the last pass (what an incremental planner hands);
- a scrape: `Metrics.exposition_pieces` (what the endpoint writes) after
  that one-VM pass, at rest, and cold (the first after the first pass);
  and, the baseline, prometheus_client's `generate_latest` of the same
  series (`Metrics.registry`, which yields them from the same rows);
- the longest the GIL was held away from another thread during each
  scrape (a thread that sleeps 1 ms in a loop records its longest gap);
- one scrape over HTTP from `Metrics.serve`, body read whole.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import prometheus_client
from measure import median_seconds

from reconciler.core import plan
from reconciler.core.desired import DesiredState, DesiredVM, PlanSpec
from reconciler.core.state import (
    Job,
    JobState,
    Observed,
    ObservedVM,
    Operation,
    ProtectionState,
    Replication,
    ReplicationState,
    Site,
)
from reconciler.engine.metrics import Metrics

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
PLANS = 10
ALLOWED = frozenset(
    {
        Operation.PLANNED_FAILOVER,
        Operation.UNPLANNED_FAILOVER,
        Operation.STOP_VM,
        Operation.DISABLE_REPLICATION,
        Operation.TEST_FAILOVER,
    }
)


def _inputs(count: int) -> tuple[plan.Plan, Observed]:
    """Every 10th VM without replication, every 50th failing over to rtm, the rest converged."""
    per_plan: dict[str, list[DesiredVM]] = {f"plan{p:02d}": [] for p in range(PLANS)}
    observed: dict[str, ObservedVM] = {}
    for i in range(count):
        name, plan_name = f"vm{i:06d}", f"plan{i % PLANS:02d}"
        moving = i % 50 == 1
        site = "rtm" if moving else "ams"
        wants_replication = i % 10 != 0
        pair = (site, "ams" if site == "rtm" else "rtm") if wants_replication else None
        per_plan[plan_name].append(DesiredVM(plan_name, name, site, pair, False, None))
        rep = None
        if wants_replication:
            rep = Replication(
                "ams",
                "rtm",
                ReplicationState.REPLICATING,
                last_sync=NOW - timedelta(seconds=i % 30),
                interval_seconds=30.0,
            )
        job = None
        if moving:
            job = Job(
                f"job-{i}",
                name,
                Operation.PLANNED_FAILOVER,
                JobState.RUNNING,
                NOW - timedelta(seconds=60),
                target_site="rtm",
            )
        observed[name] = ObservedVM(
            name,
            "ams",
            () if moving else ("ams",),
            ProtectionState.PROTECTED if rep else ProtectionState.UNPROTECTED,
            rep,
            ALLOWED,
            job,
        )
    desired = DesiredState(
        plans=tuple(
            PlanSpec(name, f"{name}.yaml", ("ams", "rtm"), False, 10, (), tuple(vms))
            for name, vms in per_plan.items()
        )
    )
    sites = {s: Site(s, True) for s in ("ams", "rtm")}
    obs = Observed(sites=sites, vms=observed, at=NOW)
    return plan.build_plan(desired, obs, NOW), obs


def _one_changed(built: plan.Plan, observed: Observed) -> tuple[plan.Plan, Observed]:
    """The same state with one VM's last sync a second later, planned anew."""
    name = next(vp.name for vp in built.vms if vp.observed is not None and vp.observed.replication)
    o = observed.vms[name]
    assert o.replication is not None and o.replication.last_sync is not None
    later = dataclasses.replace(o.replication, last_sync=o.replication.last_sync + timedelta(1))
    vms = dict(observed.vms)
    vms[name] = dataclasses.replace(o, replication=later)
    changed = dataclasses.replace(observed, vms=vms)
    desired = DesiredState(plans=tuple(_plans_of(built)))
    return plan.build_plan(desired, changed, NOW), changed


def _plans_of(built: plan.Plan) -> list[PlanSpec]:
    per_plan: dict[str, list[DesiredVM]] = {}
    for vp in built.vms:
        per_plan.setdefault(vp.plan, []).append(vp.desired)
    return [
        PlanSpec(name, f"{name}.yaml", ("ams", "rtm"), False, 10, (), tuple(vms))
        for name, vms in per_plan.items()
    ]


def _handed_back(new: plan.Plan, last: plan.Plan) -> plan.Plan:
    """`new` with every VMPlan equal to one of `last` replaced by that object."""
    vms = tuple(old if old == vp else vp for old, vp in zip(last.vms, new.vms, strict=True))
    return dataclasses.replace(new, vms=vms)


def gil_held(action: Callable[[], object]) -> tuple[float, float]:
    """(seconds `action` took, the longest gap of a thread sleeping 1 ms in a loop meanwhile)."""
    gaps: list[float] = []
    done = threading.Event()

    def tick() -> None:
        last = time.perf_counter()
        while not done.is_set():
            time.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticker = threading.Thread(target=tick)
    ticker.start()
    time.sleep(0.01)
    began = time.perf_counter()
    result = action()
    took = time.perf_counter() - began
    done.set()
    ticker.join()
    del result
    return took, max(gaps)


def passes(ours: Metrics, runs: int, plans: list[plan.Plan], observed: Observed) -> float:
    """Median seconds of `runs` passes handing `plans` in turn (each pass new objects)."""
    turn = iter(plans * runs)
    return median_seconds(runs, lambda: ours.update_from_plan(next(turn), observed))


def measure(count: int) -> None:
    built, observed = _inputs(count)
    specs = DesiredState(plans=tuple(_plans_of(built)))
    # A and B: the same state planned anew twice; C: one VM's last sync later.
    a, b = (plan.build_plan(specs, observed, NOW) for _ in range(2))
    c, c_observed = _one_changed(built, observed)
    handed = _handed_back(c, a)  # C, but A's very VMPlan wherever it equals A's
    runs = 3 if count >= 100_000 else 5
    ours = Metrics()
    first = median_seconds(1, lambda: ours.update_from_plan(built, observed))
    cold, cold_gil = gil_held(ours.exposition_pieces)
    again = passes(ours, runs, [a, b], observed)  # nothing changes, every VMPlan new
    one = passes(ours, runs, [c, a], observed)  # one VM changes, every VMPlan new
    one_handed = passes(ours, runs, [handed, a], observed)  # one VM changes, one VMPlan new
    ours.update_from_plan(handed, c_observed)
    after_one, after_one_gil = gil_held(ours.exposition_pieces)
    at_rest = median_seconds(runs, ours.exposition_pieces)
    size = sum(map(len, ours.exposition_pieces()))
    base, base_gil = gil_held(lambda: prometheus_client.generate_latest(ours.registry))
    base_size = len(prometheus_client.generate_latest(ours.registry))
    served = ours.serve("127.0.0.1", 0)
    try:
        began = time.perf_counter()
        with urllib.request.urlopen(f"http://127.0.0.1:{served.port}/metrics") as answer:
            http_size = len(answer.read())
        over_http = time.perf_counter() - began
    finally:
        served.close()
    print(
        f"{count:>7} VMs  pass (update_from_plan): first {first:.3f} s; plan built anew, "
        f"nothing changed {again:.3f} s; 1 VM changed {one:.3f} s; 1 VM changed, the other "
        f"VMPlans handed back {one_handed * 1000:.1f} ms"
    )
    print(
        f"{'':>13}scrape: after that 1-VM pass {after_one * 1000:.1f} ms (GIL held at most "
        f"{after_one_gil * 1000:.1f} ms), at rest {at_rest * 1000:.1f} ms, cold {cold:.3f} s "
        f"(GIL {cold_gil * 1000:.1f} ms); {size / 1e6:.1f} MB | generate_latest of the same "
        f"series {base:.3f} s (GIL {base_gil * 1000:.1f} ms), {base_size / 1e6:.1f} MB: "
        f"{base / after_one:.0f}x the 1-VM scrape, {base / cold:.1f}x the cold one"
    )
    print(f"{'':>13}over HTTP: {over_http:.3f} s for {http_size / 1e6:.1f} MB")


def main() -> None:
    counts = [int(a) for a in sys.argv[1:]] or [1_000, 10_000, 100_000]
    print(
        f"median of 5 runs (3 at 100k; first, cold, after 1 VM, generate_latest: 1 run); "
        f"{PLANS} plans; "
        f"Python {sys.version.split()[0]}, prometheus-client {_version()}"
    )
    for count in counts:
        measure(count)


def _version() -> str:
    from importlib.metadata import version

    return version("prometheus-client")


if __name__ == "__main__":
    main()
