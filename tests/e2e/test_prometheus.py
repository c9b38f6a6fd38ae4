"""A real Prometheus scrapes `Metrics.serve` and answers queries about drctl's VMs.

Starts the `prometheus` binary of the Debian package on 127.0.0.1 with a
temporary config (scrape every 1 s) and data dir, and queries its HTTP API
until the series show up or a deadline passes: the wait is on a real
external process. The test fails, never skips, without the binary, and
`running_prometheus` stops the process whatever happens.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from builders import NOW, desired, observed, vm, want

from reconciler.core import plan
from reconciler.core.state import Operation, ProtectionState
from reconciler.engine.metrics import Metrics

pytestmark = pytest.mark.e2e

DEADLINE = 30.0  # seconds; the first scrape of a new target is queryable after ~6 s here
T = TypeVar("T")
OPS = frozenset({Operation.PLANNED_FAILOVER, Operation.STOP_VM, Operation.DISABLE_REPLICATION})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def fetch(url: str) -> bytes:
    # Only http URLs to 127.0.0.1 that this module builds.
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310
        body: bytes = response.read()
        return body


def wait_for(what: str, probe: Callable[[], T | None], log: Path) -> T:
    """Poll `probe` until it returns something, or fail with Prometheus's log."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        try:
            got = probe()
        except (urllib.error.URLError, ConnectionError):
            got = None
        if got is not None:
            return got
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-3000:]
    pytest.fail(f"{what} within {DEADLINE:.0f} s; prometheus log:\n{tail}")


@dataclass
class Prometheus:
    url: str
    log: Path

    def query(self, promql: str) -> list[dict[str, Any]]:
        answer = json.loads(
            fetch(f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
        )
        assert answer["status"] == "success", answer
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def wait_until(self, promql: str, expected: dict[str, float], by: str = "vm") -> None:
        """Until the query's series, keyed by label `by`, have exactly the expected values."""

        def probe() -> bool | None:
            got = {r["metric"].get(by, ""): float(r["value"][1]) for r in self.query(promql)}
            return True if got == expected else None

        wait_for(f"{promql} did not return {expected}", probe, self.log)


@pytest.fixture
def metrics_endpoint() -> Iterator[tuple[Metrics, int]]:
    metrics = Metrics()
    served = metrics.serve("127.0.0.1", 0)
    try:
        yield metrics, served.port
    finally:
        served.close()


@contextlib.contextmanager
def running_prometheus(tmp_path: Path, target_port: int) -> Iterator[Prometheus]:
    """A Prometheus scraping 127.0.0.1:`target_port` every second; stopped on exit.

    A context manager, not a fixture, so that a missing binary fails the
    test rather than erroring its setup.
    """
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail(
            "prometheus is not on PATH: install the Debian package 'prometheus' "
            "(apt-get install -y prometheus); this test does not skip without it"
        )
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: drctl\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{target_port}']}}]\n"
    )
    port = free_port()
    log = tmp_path / "prometheus.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool | None:
            if process.poll() is not None:
                pytest.fail(f"prometheus exited with {process.returncode}:\n{log.read_text()}")
            fetch(f"{url}/-/ready")  # raises until it answers 200
            return True

        wait_for("prometheus was not ready", ready, log)
        yield Prometheus(url, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


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
