"""A real Prometheus (the Debian package's binary) for end-to-end tests, and its HTTP API.

`running_prometheus` starts `prometheus` on 127.0.0.1 with a temporary
config (scrape and rule evaluation every 1 s, optional rule files) and data
dir, and stops it whatever happens; `Prometheus` queries /api/v1 and waits
for answers: the wait is on a real external process. A missing binary fails
the test, never skips it. Used by test_prometheus.py (the exposition) and
test_dashboard.py (every expression of the dashboard and the alert rules).
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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

DEADLINE = 30.0  # seconds; the first scrape of a new target is queryable after ~6 s here
T = TypeVar("T")


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


def wait_for(what: str, probe: Callable[[], T | None], log: Path, deadline: float = DEADLINE) -> T:
    """Poll `probe` until it returns something, or fail with Prometheus's log."""
    until = time.monotonic() + deadline
    while time.monotonic() < until:
        try:
            got = probe()
        except (urllib.error.URLError, ConnectionError):
            got = None
        if got is not None:
            return got
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-3000:]
    pytest.fail(f"{what} within {deadline:.0f} s; prometheus log:\n{tail}")


@dataclass
class Prometheus:
    url: str
    log: Path

    def api(self, path: str, **params: str) -> dict[str, Any]:
        """GET /api/v1/`path`: the answer, whatever its status (an error is an answer too)."""
        url = f"{self.url}/api/v1/{path}?" + urllib.parse.urlencode(params, doseq=True)
        try:
            body = fetch(url)
        except urllib.error.HTTPError as refused:  # 400 and 422 carry the error as JSON
            body = refused.read()
        answer: dict[str, Any] = json.loads(body)
        return answer

    def query(self, promql: str) -> list[dict[str, Any]]:
        answer = self.api("query", query=promql)
        assert answer["status"] == "success", answer
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def wait_until(self, promql: str, expected: dict[str, float], by: str = "vm") -> None:
        """Until the query's series, keyed by label `by`, have exactly the expected values."""

        def probe() -> bool | None:
            got = {r["metric"].get(by, ""): float(r["value"][1]) for r in self.query(promql)}
            return True if got == expected else None

        wait_for(f"{promql} did not return {expected}", probe, self.log)

    def wait_for_series(self, promql: str, deadline: float = DEADLINE) -> list[dict[str, Any]]:
        """Until the query returns at least one series."""
        return wait_for(
            f"{promql} returned nothing", lambda: self.query(promql) or None, self.log, deadline
        )


@contextlib.contextmanager
def running_prometheus(
    tmp_path: Path, target_port: int, rule_files: Sequence[Path] = ()
) -> Iterator[Prometheus]:
    """A Prometheus scraping 127.0.0.1:`target_port` as job "drctl" every second.

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
    rules = "".join(f"  - {json.dumps(str(path))}\n" for path in rule_files)
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        + (f"rule_files:\n{rules}" if rules else "")
        + "scrape_configs:\n"
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
