"""Real etcd processes for the tests: one member, or a three-member cluster, on 127.0.0.1.

Each member listens on free ports and keeps its data in a directory of the
test's, so it can be killed (SIGKILL) and started again from that data dir.
The binary is Debian's `etcd-server` (3.4), which `make test` installs: a
test that needs it skips only outside CI (CI=true fails instead, so a CI run
never passes by skipping the leader-election tests).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

START_TIMEOUT = 20.0


def etcd_binary() -> str:
    """The etcd binary; skip (fail under CI) when it is not installed."""
    found = shutil.which("etcd")
    if found is None:
        message = (
            "etcd is not installed: `make test` installs it (apt-get install etcd-server); "
            "the leader-election tests need real etcd members"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


class Member:
    """One etcd member: its name, ports and data dir; started and stopped as a real process."""

    def __init__(self, name: str, root: Path, client_port: int, peer_port: int) -> None:
        self.name = name
        self.data_dir = root / f"etcd-{name}"
        self.client_port = client_port
        self.peer_port = peer_port
        self.log = root / f"etcd-{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.cluster = f"{name}=http://127.0.0.1:{peer_port}"
        self.state = "new"
        self.token = f"drctl-test-{peer_port}"  # one per cluster (`Cluster` sets it)

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    etcd_binary(),
                    "--name",
                    self.name,
                    "--data-dir",
                    str(self.data_dir),
                    "--listen-client-urls",
                    f"http://{self.endpoint}",
                    "--advertise-client-urls",
                    f"http://{self.endpoint}",
                    "--listen-peer-urls",
                    f"http://127.0.0.1:{self.peer_port}",
                    "--initial-advertise-peer-urls",
                    f"http://127.0.0.1:{self.peer_port}",
                    "--initial-cluster",
                    self.cluster,
                    "--initial-cluster-state",
                    self.state,
                    "--initial-cluster-token",
                    self.token,
                    # Short heartbeats: a killed member's peers elect within a second.
                    "--heartbeat-interval",
                    "50",
                    "--election-timeout",
                    "500",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.state = "existing"  # started again, it rejoins from its data dir

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.endpoint}/health", timeout=1) as answer:
                return bool(json.loads(answer.read()).get("health") == "true")
        except (OSError, ValueError):
            return False

    def kill(self) -> None:
        """SIGKILL, as a lost site or a crashed member."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None


class Cluster:
    """Members of one etcd cluster, and the `--lock` URL naming them."""

    def __init__(self, root: Path, size: int) -> None:
        ports = _free_ports(2 * size)
        self.members = [Member(f"m{i}", root, ports[2 * i], ports[2 * i + 1]) for i in range(size)]
        everyone = ",".join(m.cluster for m in self.members)
        for member in self.members:
            member.cluster = everyone
            member.token = f"drctl-test-{ports[1]}"

    def url(self, prefix: str = "/drctl", members: list[Member] | None = None) -> str:
        chosen = self.members if members is None else members
        return "etcd://" + ",".join(m.endpoint for m in chosen) + prefix

    def start(self) -> None:
        for member in self.members:
            member.start()
        self.wait_healthy()

    def wait_healthy(self, members: list[Member] | None = None) -> None:
        chosen = [m for m in (self.members if members is None else members) if m.process]
        deadline = time.monotonic() + START_TIMEOUT
        while not all(m.healthy() for m in chosen):
            if time.monotonic() > deadline:
                logs = "\n".join(m.log.read_text(errors="replace")[-2000:] for m in chosen)
                raise AssertionError(f"etcd did not become healthy in {START_TIMEOUT}s:\n{logs}")
            time.sleep(0.05)

    def stop(self) -> None:
        for member in self.members:
            member.stop()


@contextlib.contextmanager
def running(root: Path, size: int) -> Iterator[Cluster]:
    root.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(root, size)
    try:
        cluster.start()
        yield cluster
    finally:
        for member in cluster.members:
            member.kill()
