"""The HTTP endpoint of `drctl run` (/metrics), bounded so that no client can stop the daemon.

`Metrics.serve` starts one with the exposition as its `produce`; the CLI
adds the daemon's probes (`/healthz`, `/readyz`: `add_page`, each a cheap
function answering a status and a line of text) and the status page (`/`,
`/status`, `/status.json`: made by a worker, `ui/status_feed.py`, and
answered as a future of its Reply) and closes it when the daemon stops.
Anyone who can reach the port must not be able to take the DR controller
down, so everything a client can make it hold is bounded:

- open connections: at most `max_connections` (64, and never more than a
  quarter of the process's limit of open files, so git, the journal and
  the fabric keep theirs). Beyond, the oldest connection still waiting for
  its request is closed; when every one is being answered, the newcomer
  gets 503. The listening socket never stops accepting.
- time: a request head must arrive whole within `head_timeout` of the
  connection (an idle or slow client gets 408, then is closed); bytes that
  cannot begin an HTTP/1.x request line (HTTP/0.9, TLS, garbage) get 400
  at once; the answer, waiting for the exposition and writing it, has
  `answer_timeout`. One request per connection (`Connection: close`).
- memory: a head over 8 KiB gets 431; the body is written in pieces of at
  most 64 KiB of shared bytes objects (the exposition comes as a list of
  them, `engine/vm_series.py`), each once the last is drained, so a client
  that reads slowly holds a piece of it, not a copy.

Off the reconcile path: the endpoint runs on its own thread (an asyncio
loop) and the exposition is made on a worker thread, one at a time however
many clients ask; scrapes that arrive meanwhile share it, and it is made
again only once the last one is older than `REUSE` times what it took to
make, so scraping takes at most a quarter of a core away from the daemon's
passes. The pass and the scrape share no lock that either holds for long:
the daemon swaps whole snapshots that the collector reads, and
prometheus_client's registry lock guards only the copy of its collector
list, each metric's lock one child or value (`engine/metrics.py`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import functools
import http
import logging
import re
import resource
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence

log = logging.getLogger("drctl")

MAX_CONNECTIONS = 64
HEAD_TIMEOUT = 5.0  # seconds from the connection to the end of its request head
ANSWER_TIMEOUT = 60.0  # seconds to wait for the exposition and write it
HEAD_LIMIT = 8192
ACCEPT_BATCH = 16  # connections accepted per wake-up, each after room is made for it
ACCEPT_PAUSE = 0.5  # seconds without accepting after the process ran out of descriptors
CHUNK = 65536
# Answers start at most SEND_RATE bytes a second, each counted ANSWER_COST
# bytes more. An answer costs about 0.3 ms of CPU and each MB of it 0.1 to
# 0.3 ms more (measured on 2 cores; about half is the kernel's copy): so
# scrapers back to back, or a flood of small requests, take at most about
# a tenth of a core (256 answers or 256 MB a second).
SEND_RATE = 256 * 1024 * 1024
ANSWER_COST = 1024 * 1024
# The exposition is made again once the last one is older than REUSE times
# what it took: at most 1 / (1 + REUSE) of a core spent on it.
REUSE = 3.0
PATH = "/metrics"
TEXT = "text/plain; charset=utf-8"

_REQUEST_LINE = re.compile(rb"([A-Z]{1,20}) ([\x21-\x7e]+) HTTP/1\.[01]")
# What the bytes before the first line end may be, if they are to become a
# request line: a prefix of `_REQUEST_LINE`.
_REQUEST_LINE_PREFIX = re.compile(
    rb"[A-Z]{0,20}(?: [\x21-\x7e]*(?: H(?:T(?:T(?:P(?:/(?:1(?:\.[01]?\r?)?)?)?)?)?)?)?)?"
)
_HEAD_END = re.compile(rb"\r?\n\r?\n")


@dataclasses.dataclass(frozen=True)
class _Refusal:
    """A request answered with an error status, and the plain text saying why."""

    status: int
    text: str
    headers: tuple[str, ...] = ()


class _Connection:
    """One accepted socket, the task serving it, and its stream once that task made one."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.task: asyncio.Task[None] | None = None
        self.transport: asyncio.WriteTransport | None = None
        self.answering = False  # its request head is in: never closed to make room

    def abort(self) -> None:
        # Never close the socket under a transport that may be watching it:
        # the descriptor's number comes back with the next accept.
        if self.transport is not None:
            self.transport.abort()
        elif self.task is not None:
            self.task.cancel()  # still making its stream: asyncio closes it
        else:
            self.sock.close()


def default_max_connections(open_files: int | None = None) -> int:
    """`MAX_CONNECTIONS`, or a quarter of the limit of open files if that is lower.

    `open_files` is the soft RLIMIT_NOFILE, the process's own by default.
    """
    if open_files is None:
        open_files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if open_files == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(4, min(MAX_CONNECTIONS, open_files // 4))


@dataclasses.dataclass(frozen=True)
class Reply:
    """A page's answer: its HTTP status, body and content type."""

    status: int
    body: bytes
    content_type: str = TEXT
    headers: tuple[str, ...] = ()


# What `produce` makes for /metrics: the body, whole or as pieces written one after another.
Body = bytes | Sequence[bytes]

# A page beside /metrics: a line of text (HTTP status, text), a whole Reply, or the
# future of a Reply that a worker thread makes (the status page, made like the
# exposition: off this thread, shared by the requests that wait for it). Called on
# the endpoint's thread, so it must only read what the daemon keeps in memory (no
# I/O, no lock held for long) and be quick.
Page = Callable[[], "tuple[int, str] | Reply | concurrent.futures.Future[Reply]"]


class Endpoint:
    """Serves `produce()` at /metrics on HOST:PORT from a thread of its own until `close`."""

    def __init__(
        self,
        host: str,
        port: int,
        produce: Callable[[], Body],
        content_type: str,
        *,
        max_connections: int | None = None,
        head_timeout: float = HEAD_TIMEOUT,
        answer_timeout: float = ANSWER_TIMEOUT,
    ) -> None:
        self._produce = produce
        self._content_type = content_type
        self._pages: dict[str, Page] = {}
        self.max_connections = max_connections or default_max_connections()
        self.head_timeout = head_timeout
        self.answer_timeout = answer_timeout
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        # Bound here, so that a port in use is the caller's OSError.
        self._socket = socket.create_server((host, port), family=family, backlog=128)
        self.port: int = self._socket.getsockname()[1]
        self._open: dict[_Connection, None] = {}  # oldest first
        self._tasks: set[asyncio.Task[None]] = set()
        self._accept_failing = False
        self._next_answer_at = 0.0  # loop time at which the next answer may start
        self._made: tuple[bytes, ...] | None = None
        self._fresh_until = 0.0
        self._making: asyncio.Future[tuple[bytes, ...] | None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        started = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(started,), name="drctl-metrics-http", daemon=True
        )
        self._thread.start()
        started.wait()

    def add_page(self, path: str, page: Page) -> None:
        """Serve `page()` at `path` (GET and HEAD): plain text, or the Reply it makes."""
        self._pages[path] = page

    @property
    def connections(self) -> int:
        """How many connections are open now."""
        return len(self._open)

    def close(self) -> None:
        """Stop listening, close every connection, and end the thread."""
        if self._loop is not None and self._stopping is not None:
            with contextlib.suppress(RuntimeError):  # the loop has ended already
                self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout=5)

    # --- the loop's thread ---------------------------------------------------------

    def _run(self, started: threading.Event) -> None:
        asyncio.run(self._serve(started))

    async def _serve(self, started: threading.Event) -> None:
        self._loop = loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._socket.setblocking(False)
        loop.add_reader(self._socket.fileno(), self._accept)
        started.set()
        await self._stopping.wait()
        loop.remove_reader(self._socket.fileno())
        self._socket.close()
        for conn in list(self._open):
            conn.abort()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=1)

    def _accept(self) -> None:
        """Accept what waits, one at a time, making room before the next is accepted.

        So the descriptors held never pass `max_connections`, however many
        clients connect at once.
        """
        loop = asyncio.get_running_loop()
        for _ in range(ACCEPT_BATCH):
            try:
                sock, _address = self._socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of descriptors or memory: never stop listening
                self._pause_accepting(exc)
                return
            self._accept_failing = False
            sock.setblocking(False)
            if len(self._open) >= self.max_connections and not self._make_room():
                with contextlib.suppress(OSError):
                    sock.send(_BUSY)  # a few bytes into an empty buffer: never blocks
                sock.close()
                continue
            conn = _Connection(sock)
            self._open[conn] = None
            conn.task = loop.create_task(self._handle(conn))
            self._tasks.add(conn.task)  # held, or the loop may drop it
            conn.task.add_done_callback(functools.partial(self._ended, conn))

    def _ended(self, conn: _Connection, task: asyncio.Task[None]) -> None:
        # Also for a task cancelled before it ran, whose body never closed anything.
        self._tasks.discard(task)
        self._open.pop(conn, None)
        conn.sock.close()

    def _pause_accepting(self, exc: OSError) -> None:
        if not self._accept_failing:
            self._accept_failing = True
            log.warning(
                "metrics port: cannot accept a connection (%s); trying again every %g s",
                exc.strerror or exc,
                ACCEPT_PAUSE,
                extra={"event": "metrics_accept_failed", "error": str(exc)},
            )
        loop = asyncio.get_running_loop()
        fd = self._socket.fileno()
        loop.remove_reader(fd)
        loop.call_later(ACCEPT_PAUSE, self._resume_accepting)

    def _resume_accepting(self) -> None:
        if self._stopping is not None and not self._stopping.is_set():
            asyncio.get_running_loop().add_reader(self._socket.fileno(), self._accept)

    def _make_room(self) -> bool:
        """Close the oldest connection still waiting for its request; False if none is."""
        for conn in self._open:
            if not conn.answering:
                del self._open[conn]
                conn.abort()
                return True
        return False

    async def _handle(self, conn: _Connection) -> None:
        deadline = asyncio.get_running_loop().time() + self.head_timeout
        writer = None
        try:
            reader, writer = await asyncio.open_connection(sock=conn.sock)
            conn.transport = writer.transport
            try:
                async with asyncio.timeout_at(deadline):
                    request = await _read_head(reader)
            except TimeoutError:
                request = _Refusal(408, f"no whole request within {self.head_timeout:g} s")
            if request is None:
                return  # the client left
            conn.answering = True
            async with asyncio.timeout(self.answer_timeout):
                head, body, head_only = await self._answer(request)
                size = len(body) if isinstance(body, bytes) else sum(map(len, body))
                await self._pace(len(head) + (0 if head_only else size))
                await self._send(writer, head, body, head_only)
        except (OSError, TimeoutError):
            pass  # gone or too slow: closed below, whatever it was
        finally:
            self._open.pop(conn, None)
            if writer is None:
                pass  # never streamed, or its transport is closed already: `_ended` closes
            elif writer.transport.get_write_buffer_size():
                writer.transport.abort()
            else:
                writer.close()

    async def _answer(self, request: tuple[str, str] | _Refusal) -> tuple[bytes, Body, bool]:
        if isinstance(request, _Refusal):
            return _plain(request.status, request.text, request.headers)
        method, path = request
        page = self._pages.get(path)
        if path != PATH and page is None:
            served = ", ".join([PATH, *sorted(self._pages)])
            return _plain(404, f"not found: drctl serves {served} only")
        if method not in ("GET", "HEAD"):
            return _plain(405, f"{path} answers GET and HEAD", ("Allow: GET, HEAD",))
        if page is not None:
            try:
                answer = page()
                if isinstance(answer, concurrent.futures.Future):
                    # Shielded: one client's timeout must not cancel what others wait for.
                    answer = await asyncio.shield(asyncio.wrap_future(answer))
            except Exception:  # a page must never take the endpoint down
                log.exception("the page %s failed", path)
                return _plain(500, f"drctl could not answer {path}: see its log")
            if isinstance(answer, Reply):
                head = _head(answer.status, answer.content_type, len(answer.body), answer.headers)
                return head, answer.body, method == "HEAD"
            head, said, _ = _plain(*answer)
            return head, said, method == "HEAD"
        body = await self._exposition()
        if body is None:
            return _plain(500, "drctl could not make the metrics: see its log")
        length = sum(map(len, body))
        return _head(200, self._content_type, length), body, method == "HEAD"

    async def _exposition(self) -> tuple[bytes, ...] | None:
        """The exposition, made on a worker thread and shared by every scrape waiting for it.

        None when making it failed (the worker logged why).
        """
        if self._made is not None and time.monotonic() < self._fresh_until:
            return self._made
        if self._making is None:
            loop = asyncio.get_running_loop()
            making: asyncio.Future[tuple[bytes, ...] | None] = loop.create_future()
            self._making = making
            worker = threading.Thread(
                target=self._make, args=(loop, making), name="drctl-metrics-make", daemon=True
            )
            worker.start()
        return await asyncio.shield(self._making)

    def _make(
        self, loop: asyncio.AbstractEventLoop, making: asyncio.Future[tuple[bytes, ...] | None]
    ) -> None:
        started = time.monotonic()
        made: tuple[bytes, ...] | None
        try:
            produced = self._produce()
            made = (produced,) if isinstance(produced, bytes) else tuple(produced)
        except Exception:
            # A bug in a collector must not end the endpoint: the scrape gets 500.
            log.exception("could not make the metrics exposition")
            made = None
        took = time.monotonic() - started
        with contextlib.suppress(RuntimeError):  # the endpoint closed meanwhile
            loop.call_soon_threadsafe(self._made_one, making, made, took)

    def _made_one(
        self,
        making: asyncio.Future[tuple[bytes, ...] | None],
        made: tuple[bytes, ...] | None,
        took: float,
    ) -> None:
        self._making = None
        if made is not None:
            self._made = made
            self._fresh_until = time.monotonic() + REUSE * took
        making.set_result(made)

    async def _pace(self, size: int) -> None:
        """Wait for this answer's turn: answers start at most `SEND_RATE` bytes a second.

        Each answer also costs `ANSWER_COST` bytes, what accepting and reading a
        request takes: so scrapers back to back, or a flood of small requests,
        keep the endpoint's thread to a small share of a core.
        """
        loop = asyncio.get_running_loop()
        now = loop.time()
        start = max(now, self._next_answer_at)
        self._next_answer_at = start + (size + ANSWER_COST) / SEND_RATE
        if start > now:
            await asyncio.sleep(start - now)

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, head: bytes, body: Body, head_only: bool) -> None:
        writer.write(head)
        if not head_only:
            written = 0  # since the last drain
            for piece in (body,) if isinstance(body, bytes) else body:
                view = memoryview(piece)
                for start in range(0, len(view), CHUNK):
                    part = view[start : start + CHUNK]
                    writer.write(part)
                    written += len(part)
                    # Many pieces are small (a block of VMs' samples): drained
                    # once per CHUNK written, not once per piece.
                    if written >= CHUNK:
                        await writer.drain()
                        written = 0
        await writer.drain()


async def _read_head(reader: asyncio.StreamReader) -> tuple[str, str] | _Refusal | None:
    """(method, path) once the whole request head is in; a refusal; None if the client left."""
    received = b""
    request: tuple[str, str] | None = None
    while True:
        chunk = await reader.read(4096)
        if not chunk:
            return None
        received += chunk
        if request is None:
            end = received.find(b"\n")
            if end < 0:
                if not _REQUEST_LINE_PREFIX.fullmatch(received):
                    return _Refusal(400, "not an HTTP/1.x request")
            else:
                line = received[:end].removesuffix(b"\r")
                parsed = _request_line(line)
                if isinstance(parsed, _Refusal):
                    return parsed
                request = parsed
        if request is not None and _HEAD_END.search(received):
            return request
        if len(received) > HEAD_LIMIT:
            return _Refusal(431, f"the request head is over {HEAD_LIMIT} bytes")


def _request_line(line: bytes) -> tuple[str, str] | _Refusal:
    matched = _REQUEST_LINE.fullmatch(line)
    if matched is None:
        return _Refusal(400, "not an HTTP/1.x request line (METHOD /path HTTP/1.1)")
    method, target = matched.group(1).decode(), matched.group(2).decode("ascii")
    if target.startswith("/"):
        return method, target.partition("?")[0]
    if target.startswith(("http://", "https://")):
        return method, urllib.parse.urlsplit(target).path or "/"
    return _Refusal(400, "the request target is not a path")


def _busy() -> bytes:
    head, body, _ = _plain(503, "drctl's metrics port is busy: try again")
    return head + body


def _head(status: int, content_type: str, length: int, headers: tuple[str, ...] = ()) -> bytes:
    lines = [
        f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}",
        f"Content-Type: {content_type}",
        f"Content-Length: {length}",
        "Connection: close",
        *headers,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _plain(status: int, text: str, headers: tuple[str, ...] = ()) -> tuple[bytes, bytes, bool]:
    body = (text + "\n").encode()
    return _head(status, TEXT, len(body), headers), body, False


_BUSY = _busy()
