"""The status page's feed: made off the endpoint's thread, shared, reused, and served read-only."""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from builders import NOW, daemon_status, desired, job, observed, vm, want

from reconciler.core import plan
from reconciler.engine import endpoint
from reconciler.ui import report, status_feed, status_page


def moving_plan() -> plan.Plan:
    """db01 failing over to rtm, its job at 40%."""
    failover = job("db01", job_id="job-000007", progress=0.4)
    return plan.build_plan(desired(want("db01", "rtm")), observed(vm("db01", job=failover)), NOW)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def snapshot(pid: int = 4242) -> status_page.Snapshot:
    return status_page.Snapshot(daemon_status(pid=pid), moving_plan(), "abc123")


def answered(answer: status_feed.Answer) -> endpoint.Reply:
    if isinstance(answer, concurrent.futures.Future):
        return answer.result(timeout=5)
    return answer


def test_before_the_first_pass_both_pages_say_to_try_again() -> None:
    feed = status_feed.Feed()
    for page in (feed.html, feed.document):
        reply = answered(page())
        assert reply.status == 503
        assert b"drctl has made no pass yet" in reply.body
        assert "Retry-After: 1" in reply.headers


def test_status_json_is_the_document_of_drctl_status_for_the_revision_in_force() -> None:
    feed = status_feed.Feed()
    feed.publish(snapshot())
    reply = answered(feed.document())
    assert (reply.status, reply.content_type) == (200, "application/json")
    expected = report.status_json(moving_plan(), "abc123", daemon_status())
    assert json.loads(reply.body) == expected
    assert "X-Content-Type-Options: nosniff" in reply.headers


def test_without_a_revision_in_force_status_json_is_503_saying_why() -> None:
    feed = status_feed.Feed()
    said = daemon_status(revision_in_force=None, spec_errors=("finance.yaml:3: bad",))
    feed.publish(status_page.Snapshot(said))
    reply = answered(feed.document())
    assert reply.status == 503
    assert reply.body == b"no revision in force (acts on nothing): finance.yaml:3: bad\n"
    assert answered(feed.html()).status == 200  # the page shows it


def test_requests_while_a_page_is_made_share_it_and_later_ones_reuse_it() -> None:
    release = threading.Event()
    made: list[int] = []

    def slow(snap: status_page.Snapshot) -> endpoint.Reply:
        release.wait(5)
        made.append(snap.daemon.pid)
        return endpoint.Reply(200, str(snap.daemon.pid).encode())

    clock = Clock()
    feed = status_feed.Feed(make_html=slow, monotonic=clock)
    feed.publish(snapshot(pid=1))
    first, second = feed.html(), feed.html()
    assert isinstance(first, concurrent.futures.Future) and first is second
    assert not first.done()  # the endpoint's thread never waits for the making
    release.set()
    assert answered(first).body == b"1"
    assert answered(feed.html()).body == b"1" and made == [1]  # reused: nothing new
    feed.publish(snapshot(pid=2))
    assert answered(feed.html()).body == b"2" and made == [1, 2]


def test_a_page_slow_to_make_is_reused_for_three_times_what_it_took() -> None:
    clock = Clock()

    def took_two_seconds(snap: status_page.Snapshot) -> endpoint.Reply:
        clock.now += 2.0
        return endpoint.Reply(200, str(snap.daemon.pid).encode())

    feed = status_feed.Feed(make_html=took_two_seconds, monotonic=clock)
    feed.publish(snapshot(pid=1))
    assert answered(feed.html()).body == b"1"
    feed.publish(snapshot(pid=2))
    clock.now += 5.9
    assert answered(feed.html()).body == b"1"  # a newer pass, but made 5.9 s ago: reused
    clock.now += 0.2
    assert answered(feed.html()).body == b"2"


@contextmanager
def serving(feed: status_feed.Feed) -> Iterator[int]:
    served = endpoint.Endpoint("127.0.0.1", 0, lambda: b"", "text/plain")
    served.add_page("/", feed.html)
    served.add_page("/status", feed.html)
    served.add_page("/status.json", feed.document)
    try:
        yield served.port
    finally:
        served.close()


def fetch(port: int, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_the_endpoint_serves_the_page_with_its_headers_and_takes_no_write() -> None:
    feed = status_feed.Feed()
    feed.publish(snapshot())
    with serving(feed) as port:
        code, headers, body = fetch(port, "/status")
        assert code == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
        assert headers["Content-Security-Policy"] == status_page.CONTENT_SECURITY_POLICY
        assert headers["Cache-Control"] == "no-store"
        assert body == fetch(port, "/")[2] and b"db01" in body
        assert json.loads(fetch(port, "/status.json")[2])["revision"] == "abc123"
        for method in ("POST", "PUT", "DELETE"):
            code, headers, body = fetch(port, "/status", method)
            assert (code, headers["Allow"]) == (405, "GET, HEAD"), body


def test_a_page_that_fails_to_be_made_is_500_and_the_endpoint_lives_on() -> None:
    def broken(_snap: status_page.Snapshot) -> endpoint.Reply:
        raise RuntimeError("boom")

    feed = status_feed.Feed(make_html=broken)
    feed.publish(snapshot())
    with serving(feed) as port:
        assert fetch(port, "/")[::2] == (500, b"drctl could not answer /: see its log\n")
        assert fetch(port, "/status.json")[0] == 200
        assert fetch(port, "/")[0] == 500  # made again, not a failure kept


def test_snapshot_times_are_the_passes_not_the_clock() -> None:
    later = daemon_status(updated_at=NOW.replace(hour=13))
    text = status_page.render(status_page.Snapshot(later, moving_plan(), "abc123")).decode()
    assert "last pass <time" in text and ">13:00:00 UTC</time>" in text
