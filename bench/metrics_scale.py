"""What /metrics costs at 1k, 10k and 100k VMs: `Metrics.update_from_plan` and one scrape.

Run by hand: `.venv/bin/python bench/metrics_scale.py [VMS ...]`. The baseline,
measured in the same run on the same plan, is the obvious implementation:
labelled `prometheus_client.Gauge` children set per VM (and removed when an
info label or a replication series goes away). Inputs come from the real
planner: `plan.build_plan` on a synthetic spec and observation in which most
VMs are converged, some fail over, some do not replicate.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

import prometheus_client
from measure import median_seconds

from reconciler.core import plan
from reconciler.core.desired import DesiredState, DesiredVM, PlanSpec
from reconciler.core.plan import Phase
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
from reconciler.engine import metrics, vm_series
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


class LabelledGauges:
    """The baseline: the per-VM families as labelled Gauge children."""

    def __init__(self) -> None:
        self.registry = prometheus_client.CollectorRegistry()
        r = self.registry
        pv = ("plan", "vm")
        self.converged = prometheus_client.Gauge(metrics.VM_CONVERGED, "h", pv, registry=r)
        self.blocked = prometheus_client.Gauge(metrics.VM_BLOCKED, "h", pv, registry=r)
        self.info = prometheus_client.Gauge(
            metrics.VM_INFO,
            "h",
            (*pv, "desired_site", "active_site", "replication", "phase"),
            registry=r,
        )
        self.last_sync = prometheus_client.Gauge(
            metrics.REPLICATION_LAST_SYNC_TIMESTAMP_SECONDS, "h", pv, registry=r
        )
        self.interval = prometheus_client.Gauge(
            metrics.REPLICATION_INTERVAL_SECONDS, "h", pv, registry=r
        )
        self._info_labels: dict[str, tuple[str, ...]] = {}
        self._replicating: set[tuple[str, str]] = set()

    def update(self, built: plan.Plan) -> None:
        replicating = set()
        for vp in built.vms:
            d, o = vp.desired, vp.observed
            key = (d.plan, d.name)
            self.converged.labels(*key).set(1.0 if vp.converged else 0.0)
            self.blocked.labels(*key).set(1.0 if vp.phase is Phase.BLOCKED else 0.0)
            info = (
                *key,
                d.active_site,
                o.active_site if o else "",
                o.replication_text if o else "",
                vp.phase.value,
            )
            old = self._info_labels.get(d.name)
            if old != info:
                if old is not None:
                    self.info.remove(*old)
                self._info_labels[d.name] = info
                self.info.labels(*info).set(1.0)
            rep = vm_series.rpo_replication(vp)
            if rep is not None:
                replicating.add(key)
                if rep.last_sync is not None:
                    self.last_sync.labels(*key).set(rep.last_sync.timestamp())
                if rep.interval_seconds is not None:
                    self.interval.labels(*key).set(rep.interval_seconds)
        for key in self._replicating - replicating:
            self.last_sync.remove(*key)
            self.interval.remove(*key)
        self._replicating = replicating


def measure(count: int) -> None:
    built, observed = _inputs(count)
    runs = 3 if count >= 100_000 else 5
    ours, base = Metrics(), LabelledGauges()
    # First update creates every series; later ones (what each reconcile pays) update them.
    first_ours = median_seconds(1, lambda: ours.update_from_plan(built, observed))
    first_base = median_seconds(1, lambda: base.update(built))
    update_ours = median_seconds(runs, lambda: ours.update_from_plan(built, observed))
    update_base = median_seconds(runs, lambda: base.update(built))
    size = len(ours.exposition())
    scrape_all = median_seconds(runs, ours.exposition)
    # Like for like: the per-VM collector alone against the labelled Gauges,
    # which stand in for the same families only.
    alone = prometheus_client.CollectorRegistry()
    alone.register(ours._state)
    scrape_ours = median_seconds(runs, lambda: prometheus_client.generate_latest(alone))
    scrape_base = median_seconds(runs, lambda: prometheus_client.generate_latest(base.registry))
    print(
        f"{count:>7} VMs  update_from_plan: first {first_ours:.3f} s, then {update_ours:.3f} s"
        f" | labelled Gauges: first {first_base:.3f} s, then {update_base:.3f} s "
        f"({update_base / update_ours:.1f}x slower)"
    )
    print(
        f"{'':>13}scrape of the per-VM families: {scrape_ours:.3f} s | labelled Gauges: "
        f"{scrape_base:.3f} s ({scrape_base / scrape_ours:.2f}x); whole exposition() "
        f"{scrape_all:.3f} s, {size / 1e6:.1f} MB"
    )


def main() -> None:
    counts = [int(a) for a in sys.argv[1:]] or [1_000, 10_000, 100_000]
    print(
        f"median of 5 runs (3 at 100k); {PLANS} plans; Python {sys.version.split()[0]}, "
        f"prometheus-client {_version()}"
    )
    for count in counts:
        measure(count)


def _version() -> str:
    from importlib.metadata import version

    return version("prometheus-client")


if __name__ == "__main__":
    main()
