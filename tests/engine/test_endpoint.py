"""The /metrics endpoint answers what it should and holds nothing a client can pile up.

Real sockets on 127.0.0.1 against `endpoint.Endpoint` (and `Metrics.serve`),
with its bounds made small so that each test takes well under a second:
idle and slow clients, a full connection table, malformed requests, many
scrapers at once, a collector that fails, a collector that is slow.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import resource
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator

import pytest
from builders import NOW, desired, observed, vm, want

from reconciler.core import plan
from reconciler.engine import endpoint
from reconciler.engine.metrics import Metrics

BODY = b"drctl_up 1\n"


@contextlib.contextmanager
def serving(
    produce: Callable[[], endpoint.Body] = lambda: BODY, **bounds: float
) -> Iterator[endpoint.Endpoint]:
    served = endpoint.Endpoint("127.0.0.1", 0, produce, "text/plain; version=0.0.4", **bounds)  # type: ignore[arg-type]
    try:
        yield served
    finally:
        served.close()


def exchange(port: int, request: bytes, timeout: float = 5.0) -> bytes:
    """Send `request` raw; all the server says until it closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    return answer


def scrape(port: int, path: str = "/metrics") -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


def closed_within(s: socket.socket, seconds: float) -> bytes | None:
    """What the server sent before closing `s` within `seconds`; None if it is still open."""
    s.settimeout(seconds)
    answer = b""
    try:
        while chunk := s.recv(65536):
            answer += chunk
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return answer


def answer_started(s: socket.socket) -> bool:
    """Whether the server has begun to answer on `s` (nothing of it is read)."""
    return s.recv(1, socket.MSG_PEEK) == b"H"


def until(what: str, check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_metrics_answers_get_and_head_with_the_exposition() -> None:
    with serving() as served:
        assert scrape(served.port) == (200, "text/plain; version=0.0.4", BODY)
        assert scrape(served.port, "/metrics?name[]=drctl_up")[2] == BODY
        head = exchange(served.port, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert f"Content-Length: {len(BODY)}\r\n".encode() in head
    assert head.endswith(b"\r\n\r\n")  # no body


def test_an_exposition_in_pieces_is_answered_as_their_join_with_its_whole_length() -> None:
    """Small pieces, empty ones and one past the 64 KiB chunk: as `Metrics` hands them over."""
    pieces = [b"# HELP a x\n", b"", *(b'a{vm="%d"} 1.0\n' % i for i in range(5000))]
    pieces.append(b"b 2.0\n" * 20000)
    whole = b"".join(pieces)
    assert len(pieces[-1]) > endpoint.CHUNK
    with serving(lambda: pieces) as served:
        assert scrape(served.port) == (200, "text/plain; version=0.0.4", whole)
        head = exchange(served.port, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert f"Content-Length: {len(whole)}\r\n".encode() in head


def test_other_paths_are_404_and_other_methods_405_with_a_plain_body() -> None:
    with serving() as served:
        for path in ("/", "/favicon.ico", "/metricsx", "/metrics/"):
            status, kind, body = scrape(served.port, path)
            assert (status, kind) == (404, "text/plain; charset=utf-8")
            assert body == b"not found: drctl serves /metrics only\n"
        posted = exchange(served.port, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
    assert posted.startswith(b"HTTP/1.1 405 Method Not Allowed\r\n")
    assert b"\r\nAllow: GET, HEAD\r\n" in posted


def test_pages_beside_metrics_answer_their_status_and_line_and_a_failing_one_is_500() -> None:
    answers = iter([(200, "ok"), (503, "not ready: no valid revision in force")])

    def broken() -> tuple[int, str]:
        raise RuntimeError("boom")

    with serving() as served:
        served.add_page("/readyz", lambda: next(answers))
        served.add_page("/broken", broken)
        served.add_page(
            "/page", lambda: endpoint.Reply(200, b"<p>hi</p>", "text/html; charset=utf-8")
        )
        assert scrape(served.port, "/page") == (200, "text/html; charset=utf-8", b"<p>hi</p>")
        assert scrape(served.port, "/readyz") == (200, "text/plain; charset=utf-8", b"ok\n")
        assert scrape(served.port, "/readyz")[::2] == (
            503,
            b"not ready: no valid revision in force\n",
        )
        assert scrape(served.port, "/broken")[::2] == (
            500,
            b"drctl could not answer /broken: see its log\n",
        )
        assert scrape(served.port, "/")[2] == (
            b"not found: drctl serves /metrics, /broken, /page, /readyz only\n"
        )
        assert scrape(served.port)[0] == 200  # the endpoint lives on


def test_a_page_made_on_a_worker_is_awaited_off_the_loop_and_one_timeout_cancels_it_for_no_one() -> (
    None
):
    """A page may answer a Future: the endpoint serves others meanwhile, and a client
    that gives up (its answer timeout) leaves the making to those still waiting."""
    making: concurrent.futures.Future[endpoint.Reply] = concurrent.futures.Future()
    with serving(answer_timeout=0.3) as served:
        served.add_page("/slow", lambda: making)
        early = socket.create_connection(("127.0.0.1", served.port), timeout=5)
        early.sendall(b"GET /slow HTTP/1.1\r\n\r\n")
        assert closed_within(early, 2.0) == b""  # timed out: closed without an answer
        early.close()
        assert not making.cancelled()
        served.answer_timeout = 5.0
        waiting = socket.create_connection(("127.0.0.1", served.port), timeout=5)
        waiting.sendall(b"GET /slow HTTP/1.1\r\n\r\n")
        assert scrape(served.port) == (200, "text/plain; version=0.0.4", BODY)  # not blocked
        making.set_result(endpoint.Reply(200, b"<p>made</p>", "text/html; charset=utf-8"))
        answer = closed_within(waiting, 5.0)
        waiting.close()
    assert answer is not None and answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert answer.endswith(b"\r\n\r\n<p>made</p>")


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /metrics\r\n",  # HTTP/0.9: no version
        b"GET /metrics HTTP/2.0\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS ClientHello
        b"get /metrics HTTP/1.1\r\n\r\n",
        b"GET metrics HTTP/1.1\r\n\r\n",
        b"\xff\xfe\x00garbage",
        b"\r\n\r\n",
    ],
)
def test_a_malformed_request_gets_400_with_a_status_line_at_once(request_bytes: bytes) -> None:
    with serving(head_timeout=30) as served:
        started = time.monotonic()
        answer = exchange(served.port, request_bytes)
        took = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n"), answer
    assert b"Content-Type: text/plain; charset=utf-8\r\n" in answer
    assert took < 1.0  # answered, not held until a deadline


def test_a_request_head_over_8_kib_is_refused() -> None:
    with serving() as served:
        answer = exchange(served.port, b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * 9000)
    assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")


def test_idle_and_slow_clients_are_closed_after_the_head_timeout() -> None:
    with serving(head_timeout=0.3) as served:
        idle = socket.create_connection(("127.0.0.1", served.port))
        slow = socket.create_connection(("127.0.0.1", served.port))
        started = time.monotonic()
        told = None
        for byte in b"GET /metrics HTTP/1.1\r\nX-Slow: " + b"a" * 100:
            slow.sendall(bytes([byte]))  # a byte every 50 ms: never whole
            told = closed_within(slow, 0.05)
            if told is not None:
                break
        assert told is not None and told.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
        assert time.monotonic() - started < 1.5
        answer = closed_within(idle, 1.5)
        assert answer is not None and answer.startswith(b"HTTP/1.1 408 ")
        idle.close()
        slow.close()
        until("no connection left", lambda: served.connections == 0)


def test_past_the_bound_the_oldest_idle_connection_makes_room_and_a_scrape_answers() -> None:
    with serving(max_connections=4, head_timeout=30) as served:
        idle = [socket.create_connection(("127.0.0.1", served.port)) for _ in range(10)]
        until(
            "ten accepted",
            lambda: served.connections == 4 and closed_within(idle[5], 0.01) is not None,
        )
        assert all(closed_within(s, 0.5) == b"" for s in idle[:6])  # the oldest, closed
        assert all(closed_within(s, 0.05) is None for s in idle[6:])  # the newest, open
        assert scrape(served.port)[0] == 200
        assert served.connections <= 4
        for s in idle:
            s.close()


def test_when_every_connection_is_being_answered_a_newcomer_gets_503() -> None:
    big = b"x" * 8_000_000  # more than the socket buffers: the writer waits on its reader
    with serving(lambda: big, max_connections=2) as served:
        readers = []
        for _ in range(2):
            s = socket.create_connection(("127.0.0.1", served.port), timeout=5)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(b"GET /metrics HTTP/1.1\r\n\r\n")  # then never reads
            readers.append(s)
        for s in readers:
            until("its answer to start", functools.partial(answer_started, s))
        assert scrape(served.port) == (
            503,
            "text/plain; charset=utf-8",
            b"drctl's metrics port is busy: try again\n",
        )
        for s in readers:
            s.close()
        until("room again", lambda: served.connections == 0)
        status, _, body = scrape(served.port)
    assert (status, len(body)) == (200, len(big))


def test_concurrent_scrapes_share_one_exposition() -> None:
    made: list[float] = []

    def produce() -> bytes:
        made.append(time.monotonic())
        time.sleep(0.5)
        return BODY

    with serving(produce) as served:
        answers: list[tuple[int, str, bytes]] = []
        scrapers = [
            threading.Thread(target=lambda: answers.append(scrape(served.port))) for _ in range(16)
        ]
        for t in scrapers:
            t.start()
        for t in scrapers:
            t.join(timeout=10)
        assert len(answers) == 16 and all(a[0] == 200 and a[2] == BODY for a in answers)
        assert len(made) == 1
        scrape(served.port)  # within three times 0.5 s of the last: the same bytes
        assert len(made) == 1
        until("a new exposition", lambda: scrape(served.port) and len(made) == 2)


def test_a_failing_collector_answers_500_and_the_next_scrape_succeeds() -> None:
    calls = []

    def produce() -> bytes:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a collector bug")
        return BODY

    with serving(produce) as served:
        status, _, body = scrape(served.port)
        assert (status, body) == (500, b"drctl could not make the metrics: see its log\n")
        assert scrape(served.port) == (200, "text/plain; version=0.0.4", BODY)


def test_the_bound_is_a_quarter_of_a_low_open_file_limit() -> None:
    assert endpoint.default_max_connections(128) == 32
    assert endpoint.default_max_connections(1024) == endpoint.MAX_CONNECTIONS == 64
    assert endpoint.default_max_connections(resource.RLIM_INFINITY) == 64
    assert endpoint.default_max_connections(8) == 4


class _Stuck:
    """A collector whose collect() blocks until released: a scrape in the middle of its work."""

    def __init__(self) -> None:
        self.inside = threading.Event()
        self.release = threading.Event()

    def collect(self) -> list[object]:
        self.inside.set()
        self.release.wait(10)
        return []


def test_the_daemon_never_waits_for_a_scrape_in_progress() -> None:
    """prometheus_client holds no lock across a collection that the daemon's updates need."""
    metrics = Metrics()
    stuck = _Stuck()
    metrics.others.register(stuck)  # type: ignore[arg-type]
    served = metrics.serve("127.0.0.1", 0)
    try:
        scraper = threading.Thread(target=lambda: scrape(served.port))
        scraper.start()
        assert stuck.inside.wait(5)
        started = time.monotonic()
        d, o = desired(want("sql01")), observed(vm("sql01"))
        metrics.update_from_plan(plan.build_plan(d, o, NOW), o)
        metrics.record_reconcile("success", 0.1)
        metrics.set_spec(True, "abc123", 1.0)
        metrics.set_leader(True)
        assert time.monotonic() - started < 0.5
        stuck.release.set()
        scraper.join(timeout=10)
    finally:
        stuck.release.set()
        served.close()
