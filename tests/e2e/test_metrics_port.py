"""The metrics port of a real `drctl run` under idle, slow and malformed clients on
127.0.0.1: the daemon never dies, its passes go on, and a scrape still answers at once."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from e2e.harness import Site, wait_until

pytestmark = pytest.mark.e2e

IDLE = 300  # more than the daemon's limit of open files below
NOFILE = 128


def exchange(port: int, request: bytes, timeout: float = 5.0) -> tuple[bytes, float]:
    """Send `request` raw; everything the server answers until it closes, and how long that took."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    return answer, time.monotonic() - started


class Slowloris(threading.Thread):
    """A client that sends its request head one byte at a time and never finishes it."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.closed_after: float | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.settimeout(0.2)  # the pause between two bytes
            head = b"GET /metrics HTTP/1.1\r\nHost: drctl\r\nX-Slow: " + b"a" * 1000
            for byte in head:
                if self.stop.is_set():
                    return
                try:
                    s.sendall(bytes([byte]))
                    s.recv(1024)  # an answer (408) or the end: closed by the daemon
                    break
                except TimeoutError:
                    continue
                except OSError:
                    break
            self.closed_after = time.monotonic() - started


def idle_sockets(port: int, count: int, within: float = 5.0) -> list[socket.socket]:
    """Up to `count` connections that never send a byte, opened one after the other."""
    opened: list[socket.socket] = []
    deadline = time.monotonic() + within
    while len(opened) < count and time.monotonic() < deadline:
        s = socket.socket()
        s.settimeout(0.2)
        with contextlib.suppress(OSError):  # a full accept queue: counted all the same
            s.connect(("127.0.0.1", port))
        opened.append(s)
    return opened


def passes(site: Site) -> float:
    return site.metric('drctl_reconcile_total{result="success"}') or 0.0


def test_idle_slow_and_malformed_clients_never_stop_the_daemon_or_a_scrape(site: Site) -> None:
    site.start("--resync", "0.2", nofile=NOFILE)
    wait_until("the first pass", lambda: site.metric('drctl_plan_converged{plan="finance"}') == 1)
    assert site.daemon is not None
    port = site.metrics_port
    idle = idle_sockets(port, IDLE)
    slow = Slowloris(port)
    slow.start()
    try:
        started = time.monotonic()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            body = response.read().decode()
            assert response.headers["Content-Type"].startswith("text/plain")
        assert time.monotonic() - started < 2.0
        assert 'drctl_plan_converged{plan="finance"} 1.0' in body
        before = passes(site)
        wait_until("passes to go on", lambda: passes(site) >= before + 3, timeout=10)
        open_files = len(list(Path(f"/proc/{site.daemon.pid}/fd").iterdir()))
        assert open_files < NOFILE - 32, open_files

        answer, took = exchange(port, b"GET /metrics\r\n")  # HTTP/0.9: no version
        assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n"), answer[:200]
        assert took < 1.0
        answer, took = exchange(port, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # TLS
        assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n"), answer[:200]
        assert took < 1.0
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/favicon.ico", timeout=5)
        assert missing.value.code == 404
        assert missing.value.headers["Content-Type"].startswith("text/plain")
        assert b"drctl_" not in missing.value.read()

        slow.join(timeout=10)
        print("SLOW", slow.closed_after)
        assert slow.closed_after is not None and slow.closed_after < 8.0
        assert site.daemon.poll() is None
    finally:
        slow.stop.set()
        for s in idle:
            s.close()
    assert "Traceback" not in site.log_text()
