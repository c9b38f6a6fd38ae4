"""The status page's HTML: what it shows of a pass, escaped, self-contained, within its CSP."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import html.parser
import re
from datetime import timedelta

from builders import NOW, daemon_status, desired, job, observed, vm, want

from reconciler.core import plan
from reconciler.core.desired import Group
from reconciler.core.state import Operation
from reconciler.engine import event
from reconciler.ui import status_page

HOSTILE = '</td><script>alert("x")</script><img src=x onerror=alert(1)>&amp;'
# Every element the page is made of: anything else came from a name or a reason.
TAGS = {
    "html", "head", "meta", "title", "style", "body", "header", "h1", "h2", "p", "ul", "li",
    "table", "thead", "tbody", "tr", "th", "td", "code", "time", "progress", "a", "footer",
}  # fmt: skip


def moving_plan() -> plan.Plan:
    """finance moving to rtm in two groups: db01's failover runs, web01 waits for it; hr rests."""
    d = desired(
        want("db01", "rtm", group="db"),
        want("web01", "rtm", group="web"),
        want("hr01", plan="hr"),
        groups=(Group("db", (), ("db01",)), Group("web", ("db",), ("web01",))),
    )
    failover = job("db01", job_id="job-000007", progress=0.4, age=5.0)
    o = observed(vm("db01", running=(), job=failover), vm("web01", running=()), vm("hr01"))
    return plan.build_plan(d, o, NOW)


class Page(html.parser.HTMLParser):
    """The page parsed: its tags, the text of each cell, its links and its style."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.cells: list[str] = []
        self.links: list[str] = []
        self.style = ""
        self._in: str | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.links += [v or "" for k, v in attrs if k in ("href", "src")]
        if tag in ("td", "style"):
            self._in = tag
            if tag == "td":
                self.cells.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == self._in:
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "td":
            self.cells[-1] += data
        elif self._in == "style":
            self.style += data


def render(snap: status_page.Snapshot, **options: int) -> str:
    return status_page.render(snap, **options).decode()


def test_the_page_shows_each_plan_each_vm_its_job_and_what_it_waits_for() -> None:
    built = moving_plan()
    page = Page(render(status_page.Snapshot(daemon_status(), built, "abc123")))
    cells = page.cells
    # Plans: VMS, PLACED, CONVERGED, MOVING, WAITING FOR A PERSON, then the path.
    assert cells[cells.index("finance") : cells.index("finance") + 6] == [
        "finance", "2", "0", "0", "2", "0",
    ]  # fmt: skip
    assert cells[cells.index("hr") : cells.index("hr") + 6] == ["hr", "1", "1", "1", "0", "0"]
    db = cells.index("db01")
    assert cells[db + 1 : db + 6] == [
        "rtm rtm->ams",
        "ams ams->rtm",
        "FailingOver",
        "40% PlannedFailover 40% job-000007",
        "its job in the fabric to end",
    ]
    web = cells.index("web01")
    assert cells[web + 3] == "FailingOver"
    assert cells[web + 5] == "PlannedFailover -> rtm after db01"
    assert cells[cells.index("hr01") + 5] == ""  # converged: waits for nothing


def test_the_page_says_what_is_kept_out_and_who_leads() -> None:
    said = daemon_status(
        revision_seen="def456",
        spec_valid=False,
        spec_errors=("finance.yaml:7: vms.0: unknown key 'nmae'",),
        replica={"identity": "ams-1", "lock": "etcd://127.0.0.1:2379/drctl", "leading": False,
                 "leader": "rtm-1", "revisionsInForce": {"ams-1": "abc123"}},
    )  # fmt: skip
    text = render(status_page.Snapshot(said, moving_plan(), "abc123"))
    assert "revision in force <code>abc123</code>" in text
    assert "daemon (pid 4242): revision in force abc123; not yet def456</li>" in text
    assert (
        '<li class="attention">newest revision invalid, kept out: finance.yaml:7: vms.0: '
        "unknown key &#x27;nmae&#x27;</li>"
    ) in text
    assert "leader: rtm-1; this replica (ams-1) follows, on etcd://127.0.0.1:2379/drctl" in text


def test_before_a_revision_is_in_force_the_page_says_it_acts_on_nothing_and_why() -> None:
    said = daemon_status(
        revision_in_force=None, spec_valid=False, spec_errors=("finance.yaml:3: bad",)
    )
    page = Page(render(status_page.Snapshot(said)))
    text = render(status_page.Snapshot(said))
    assert '<p class="verdict attention" id="verdict">no revision in force: acts on nothing' in text
    assert "newest revision invalid, kept out: finance.yaml:3: bad" in text
    assert "<table" not in text and page.cells == []


def test_recent_actions_come_newest_first_with_what_became_of_them() -> None:
    started = event.Event(
        event.EventKind.STARTED, "finance", "db01", Operation.PLANNED_FAILOVER, "rtm", NOW,
        job_id="job-000007",
    )  # fmt: skip
    failed = dataclasses.replace(
        started, kind=event.EventKind.FAILED, at=NOW + timedelta(seconds=3), error="host gone"
    )
    snap = status_page.Snapshot(daemon_status(), moving_plan(), "abc123", (started, failed))
    cells = Page(render(snap)).cells
    first = cells.index("12:00:03 UTC")
    assert cells[first : first + 8] == [
        "12:00:03 UTC", "finance/db01", "PlannedFailover -> rtm", "failed: host gone",
        "12:00:00 UTC", "finance/db01", "PlannedFailover -> rtm", "started (job-000007)",
    ]  # fmt: skip


def test_hostile_names_and_reasons_are_text_never_markup() -> None:
    d = desired(want(HOSTILE, "rtm"), want("web01"))
    o = observed(vm(HOSTILE), vm("web01"), vm(HOSTILE + "-unmanaged"))
    built = plan.build_plan(d, o, NOW)
    web = dataclasses.replace(built.vms[1], reason=HOSTILE)
    built = dataclasses.replace(built, vms=(built.vms[0], web))
    said = daemon_status(spec_errors=(HOSTILE,), revision_seen=HOSTILE)
    text = render(status_page.Snapshot(said, built, HOSTILE))
    page = Page(text)
    assert page.tags <= TAGS
    assert "<script" not in text and "<img" not in text
    assert HOSTILE in page.cells  # the VM's name, and web01's reason, as the text they are
    assert page.cells.count(HOSTILE) == 2
    assert "&lt;/td&gt;&lt;script&gt;" in text


def test_the_page_loads_nothing_but_itself_and_its_style_is_the_one_its_policy_allows() -> None:
    text = render(status_page.Snapshot(daemon_status(), moving_plan(), "abc123"))
    page = Page(text)
    assert all(link.startswith("/") for link in page.links), page.links
    assert not page.tags & {"script", "form", "input", "button", "iframe", "img", "link"}
    digest = base64.b64encode(hashlib.sha256(page.style.encode()).digest()).decode()
    policy = dict(h.split(": ", 1) for h in status_page.HEADERS)
    assert f"style-src 'sha256-{digest}'" in policy["Content-Security-Policy"]
    assert "default-src 'none'" in policy["Content-Security-Policy"]
    assert "script-src" not in policy["Content-Security-Policy"]  # none: default-src 'none'
    assert policy["X-Content-Type-Options"] == "nosniff"
    assert policy["Cache-Control"] == "no-store"
    assert re.search(r'<meta http-equiv="refresh" content="2">', text)


def test_a_fleet_past_the_row_limit_shows_the_vms_not_converged_and_counts_the_rest() -> None:
    snap = status_page.Snapshot(daemon_status(), moving_plan(), "abc123")
    cells = Page(render(snap, max_vm_rows=1)).cells
    assert "db01" in cells and "web01" not in cells and "hr01" not in cells
    assert "2 VMs not shown (converged ones are left out first, and any past the first 1)" in (
        render(snap, max_vm_rows=1)
    )
