"""A real Prometheus scrapes `Metrics.serve` and answers queries about drctl's VMs.

The Prometheus is the Debian package's binary, started by e2e/prometheus.py
(scrape every 1 s); the test waits on its HTTP API until the series show up.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from builders import NOW, desired, observed, vm, want
from e2e.prometheus import running_prometheus

from reconciler.core import plan
from reconciler.core.state import Operation, ProtectionState
from reconciler.engine.metrics import Metrics

pytestmark = pytest.mark.e2e

OPS = frozenset({Operation.PLANNED_FAILOVER, Operation.STOP_VM, Operation.DISABLE_REPLICATION})


@pytest.fixture
def metrics_endpoint() -> Iterator[tuple[Metrics, int]]:
    metrics = Metrics()
    served = metrics.serve("127.0.0.1", 0)
    try:
        yield metrics, served.port
    finally:
        served.close()


def test_prometheus_scrapes_the_vm_series_and_sees_a_removed_vm_go(
    tmp_path: Path, metrics_endpoint: tuple[Metrics, int]
) -> None:
    """sql01 converged, web01 still at ams while the spec wants rtm, app01 without replication."""
    metrics, port = metrics_endpoint
    fabric = observed(
        vm("sql01", last_sync_age=20.0, allowed=OPS),
        vm("web01", last_sync_age=20.0, allowed=OPS),
        vm("app01", protection=ProtectionState.UNPROTECTED, allowed=OPS),
    )
    sql01, web01, app01 = want("sql01"), want("web01", "rtm"), want("app01", replication=None)
    every = desired(sql01, web01, app01)
    metrics.update_from_plan(plan.build_plan(every, fabric, NOW), fabric)

    with running_prometheus(tmp_path, port) as prometheus:
        prometheus.wait_until("drctl_vm_converged", {"sql01": 1.0, "web01": 0.0, "app01": 1.0})
        series = prometheus.query("drctl_vm_converged")
        assert {(r["metric"]["job"], r["metric"]["plan"]) for r in series} == {("drctl", "finance")}
        # Replication is exported only where it flows as the spec says.
        assert {
            r["metric"]["vm"]
            for r in prometheus.query("drctl_replication_last_sync_timestamp_seconds")
        } == {"sql01"}
        assert [r["metric"]["phase"] for r in prometheus.query('drctl_vm_info{vm="web01"}')] == [
            "Stopping"
        ]

        # web01 leaves the spec: the next scrape marks its series stale, so it is gone.
        fewer = desired(sql01, app01)
        metrics.update_from_plan(plan.build_plan(fewer, fabric, NOW), fabric)
        prometheus.wait_until("drctl_vm_converged", {"sql01": 1.0, "app01": 1.0})
        prometheus.wait_until("drctl_plan_converged", {"finance": 1.0}, by="plan")
