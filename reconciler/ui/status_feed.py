"""The status page and `/status.json`, made off the reconcile path and off the endpoint's thread.

The daemon (daemon/loop.py) `publish`es a `status_page.Snapshot` after each
pass: a reference swap, nothing rendered. The CLI serves `html` at `/` and
`/status` and `document` at `/status.json` (`engine.endpoint.add_page`);
each is called on the endpoint's thread and returns at once: the bytes
already made from the newest snapshot, or the future of those a worker
thread is making, shared by every request that waits meanwhile, as the
exposition of /metrics is. A page is made again only once a newer snapshot
exists and the last one made is older than `REUSE` times what making it
took, so that a fleet of 100k VMs refreshed by many browsers costs the
daemon at most a quarter of a core; when nobody looks, nothing is made.

`/status.json` is the document of `drctl status --output json`
(`report.status_json`) for the revision in force, with the daemon's status
of the same pass.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from reconciler.engine import endpoint
from reconciler.ui import report, status_page

# A page is made again once the last one is older than REUSE times what it took.
REUSE = 3.0
JSON = "application/json"
JSON_HEADERS = (
    "Content-Security-Policy: default-src 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options: nosniff",
    "Cache-Control: no-store",
)
_NOT_YET = endpoint.Reply(
    503,
    b"drctl has made no pass yet (it waits for the fabric lock, or starts): try again\n",
    endpoint.TEXT,
    ("Retry-After: 1", "Cache-Control: no-store"),
)

Answer = endpoint.Reply | concurrent.futures.Future[endpoint.Reply]


def render_document(snap: status_page.Snapshot) -> endpoint.Reply:
    """/status.json: `drctl status --output json`'s document."""
    if snap.built is None or snap.revision is None:
        d = snap.daemon
        why = "; ".join(d.spec_errors) or d.revision_error or "no valid revision seen yet"
        text = f"no revision in force (acts on nothing): {why}\n"
        return endpoint.Reply(503, text.encode(), endpoint.TEXT, JSON_HEADERS)
    # The text `drctl status --output json` prints: a VM a line, the parts
    # many VMs share encoded once (bench/status_page_scale.py).
    lines = report.status_json_lines(snap.built, snap.revision, snap.daemon, snap.sites)
    return endpoint.Reply(200, "".join(lines).encode(), JSON, JSON_HEADERS)


def render_html(snap: status_page.Snapshot) -> endpoint.Reply:
    """/ and /status: the status page."""
    body = status_page.render(snap)
    return endpoint.Reply(200, body, status_page.CONTENT_TYPE, status_page.HEADERS)


@dataclass(frozen=True)
class _Made:
    version: int  # the snapshot's
    reply: endpoint.Reply
    fresh_until: float  # monotonic: reused until then even when a newer snapshot exists


class _Page:
    """One page of the feed: made from the newest snapshot on a worker, shared, reused."""

    def __init__(self, feed: Feed, name: str, make: Make) -> None:
        self._feed = feed
        self._name = name
        self._make = make
        self._made: _Made | None = None
        self._making: concurrent.futures.Future[endpoint.Reply] | None = None

    def __call__(self) -> Answer:
        with self._feed.lock:
            snap, version = self._feed.snapshot, self._feed.version
            if snap is None:
                return _NOT_YET
            made = self._made
            if made is not None and (
                made.version == version or self._feed.monotonic() < made.fresh_until
            ):
                return made.reply
            if self._making is None:
                self._making = concurrent.futures.Future()
                worker = threading.Thread(
                    target=self._run,
                    args=(snap, version, self._making),
                    name=f"drctl-{self._name}-make",
                    daemon=True,
                )
                worker.start()
            return self._making

    def _run(
        self,
        snap: status_page.Snapshot,
        version: int,
        making: concurrent.futures.Future[endpoint.Reply],
    ) -> None:
        started = self._feed.monotonic()
        try:
            reply = self._make(snap)
        except Exception as exc:  # noqa: BLE001 (handed on: the endpoint logs it, answers 500)
            with self._feed.lock:
                self._making = None
            making.set_exception(exc)
            return
        now = self._feed.monotonic()
        with self._feed.lock:
            self._made = _Made(version, reply, now + REUSE * (now - started))
            self._making = None
        making.set_result(reply)


Make = Callable[[status_page.Snapshot], endpoint.Reply]


class Feed:
    """The newest snapshot, and the pages made of it: `html` and `document`."""

    def __init__(
        self,
        make_html: Make = render_html,
        make_document: Make = render_document,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lock = threading.Lock()  # held only to swap or read references
        self.monotonic = monotonic
        self.snapshot: status_page.Snapshot | None = None
        self.version = 0
        self.html = _Page(self, "status-page", make_html)
        self.document = _Page(self, "status-json", make_document)

    def publish(self, snap: status_page.Snapshot) -> None:
        """The daemon's last pass (daemon thread): what the next request shows."""
        with self.lock:
            self.snapshot = snap
            self.version += 1
