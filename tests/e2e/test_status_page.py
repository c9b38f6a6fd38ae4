"""The status page of a real `drctl run`, in a real headless Chromium (Debian's `chromium`).

Driven by Playwright pointed at /usr/bin/chromium (no browser of Playwright's
own), each browser with a fresh profile and Google's background services off,
so that nothing leaves 127.0.0.1. A commit moves finance: the page, never
reloaded by hand, shows the failover progressing (a VM FailingOver or Stopping
with its job) and then converged; without JavaScript it is the same table;
hostile VM names from the spec and the fabric are shown as text, never run.
The test fails, never skips, without the browser (`make system-deps`).

A screenshot of the failover is written under the test's tmp_path; with
DRCTL_STATUS_SCREENSHOT=PATH set it is also written there (docs/status-page.png
is made so).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e.harness import Site, probe, three_tier, wait_until
from playwright.sync_api import (
    BrowserContext,
    Dialog,
    Page,
    Playwright,
    expect,
    sync_playwright,
)

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
# --headless is Playwright's (headless=True); the profile is a fresh directory
# per browser (launch_persistent_context). Without the background-networking
# flags Chromium reaches for Google's services at start.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Slow enough that a page refreshing every 2 s sees each group's failover run.
SLOW = {"plannedFailover": 2.5, "stopVM": 0.5}
MOVE = 40_000  # ms: the whole three-group move, on a machine shared with other work
VIEWPORT = {"width": 1200, "height": 760}


@pytest.fixture(scope="module")
def browsers() -> Iterator[Playwright]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(
            f"{CHROMIUM} is missing: install the Debian package 'chromium' "
            "(make system-deps); this test does not skip without it"
        )
    with sync_playwright() as p:
        yield p


def open_browser(p: Playwright, profile: Path, *, javascript: bool = True) -> BrowserContext:
    assert not profile.exists()  # a fresh --user-data-dir each time
    return p.chromium.launch_persistent_context(
        str(profile),
        executable_path=CHROMIUM,
        headless=True,
        args=FLAGS,
        java_script_enabled=javascript,
        viewport=VIEWPORT,  # type: ignore[arg-type]
    )


class Watched:
    """A page, and everything it asked for and was told: requests, loads, dialogs, console."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.urls: list[str] = []
        self.loads = 0
        self.dialogs: list[str] = []
        self.console: list[str] = []
        page.on("request", lambda r: self.urls.append(r.url))
        page.on("load", lambda _page: self._loaded())
        page.on("dialog", self._dialog)
        page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))

    def _loaded(self) -> None:
        self.loads += 1

    def _dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def hosts(self) -> set[str | None]:
        return {urllib.parse.urlsplit(u).hostname for u in self.urls}


def screenshot(page: Page, path: Path, *, for_docs: bool = False) -> None:
    """The whole page as a PNG at `path`; with `for_docs`, the first screen of it at
    $DRCTL_STATUS_SCREENSHOT too, when set (small enough for the README)."""
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000  # a drawn page, not a blank one
    docs = os.environ.get("DRCTL_STATUS_SCREENSHOT")
    if for_docs and docs:
        page.screenshot(path=docs)


def without_timing(doc: dict[str, Any]) -> dict[str, Any]:
    """`doc` less what changes from one look to the next at rest: when, and the last sync."""
    doc = json.loads(json.dumps(doc))
    doc["daemon"].pop("updatedAt")
    for vm in doc["vms"]:
        if vm["observed"] is not None:
            vm["observed"].pop("lastSync")
            vm["observed"].pop("powerSeenAt", None)
    return doc


def test_the_page_shows_a_failover_progressing_then_converged_without_a_reload(
    tmp_path: Path, browsers: Playwright
) -> None:
    site = Site(tmp_path, timings=SLOW)
    try:
        site.start()
        with open_browser(browsers, tmp_path / "profile") as context:
            watched = Watched(context.new_page())
            page = watched.page
            page.goto(f"http://127.0.0.1:{site.metrics_port}/")
            verdict = page.locator("#verdict")
            expect(verdict).to_have_text("converged: 6 of 6 VMs placed and protected")
            expect(page.locator("#plans tbody tr")).to_have_count(2)
            loads_before = watched.loads

            site.commit("finance to rtm", {"finance.yaml": three_tier("rtm")})
            site.pull()
            moving = page.locator(
                "#vms tr.vm",
                has=page.locator("td.job progress"),
                has_text=re.compile(r"FailingOver|Stopping"),
            )
            expect(moving.first).to_be_visible(timeout=MOVE)
            expect(verdict).to_contain_text("not converged")
            screenshot(page, tmp_path / "status-page-failover.png", for_docs=True)
            expect(page.locator("#actions")).to_contain_text("PlannedFailover -> rtm")

            expect(verdict).to_have_text("converged: 6 of 6 VMs placed and protected", timeout=MOVE)
            finance = page.locator("#vms tr.vm", has_text="finance")
            expect(finance).to_have_count(5)
            for row in finance.all():
                expect(row.locator("td.phase")).to_have_text("Converged")
                expect(row.locator("td").nth(3)).to_have_text("rtm rtm->ams")
            expect(page.locator("#actions")).to_contain_text("succeeded in")
            screenshot(page, tmp_path / "status-page-converged.png")
            assert watched.loads - loads_before >= 2, "the page never refreshed by itself"
            assert watched.hosts() == {"127.0.0.1"}, watched.urls  # no CDN, nothing outside
            assert not [m for m in watched.console if m.startswith("error")], watched.console

        # /status.json: what `drctl status --output json` prints, but for the timing.
        code, text = probe(site.metrics_port, "/status.json")
        assert code == 200, text
        assert without_timing(json.loads(text)) == without_timing(site.status())

        # The same page without JavaScript: the plain table, refreshing all the same.
        with open_browser(browsers, tmp_path / "profile-nojs", javascript=False) as context:
            watched = Watched(context.new_page())
            page = watched.page
            page.goto(f"http://127.0.0.1:{site.metrics_port}/status")
            expect(page.locator("#verdict")).to_have_text(
                "converged: 6 of 6 VMs placed and protected"
            )
            expect(page.locator("#vms tr.vm")).to_have_count(6)
            expect(page.locator("#vms tr.vm", has_text="sql01")).to_contain_text("rtm rtm->ams")
            page.wait_for_event("load", timeout=10_000)  # the meta refresh, no script
            assert watched.hosts() == {"127.0.0.1"}, watched.urls
    finally:
        if site.daemon is not None:
            site.stop()


# Names without white space: the simulator's inventory takes no other.
HOSTILE_VM = "<img/src=x/onerror=alert(1)>"
HOSTILE_ROW = "</td></tr><script>alert(2)</script>"
HOSTILE_UNMANAGED = '"><svg/onload=alert(3)>'

HOSTILE_PLAN = f"""\
apiVersion: drctl/v1
kind: RecoveryPlan
metadata: {{name: finance}}
spec:
  sites: [ams, rtm]
  defaults: {{activeSite: ams, replication: ams->rtm}}
  vms:
    - name: {json.dumps(HOSTILE_VM)}
    - name: {json.dumps(HOSTILE_ROW)}
"""


def test_hostile_names_from_the_spec_and_the_fabric_are_shown_as_text_and_never_run(
    tmp_path: Path, browsers: Playwright
) -> None:
    site = Site(tmp_path)
    inventory = {
        "sites": ["ams", "rtm"],
        "vms": [
            {"name": n, "activeSite": "ams", "replication": "ams->rtm"}
            for n in (HOSTILE_VM, HOSTILE_ROW, HOSTILE_UNMANAGED)
        ],
    }
    (tmp_path / "hostile.yaml").write_text(json.dumps(inventory))
    (site.state / "fabric.db").unlink()
    site.drctl("fabric", "init", str(tmp_path / "hostile.yaml"))
    (site.upstream / "specs" / "hr.yaml").unlink()
    site.commit("hostile names", {"finance.yaml": HOSTILE_PLAN})
    site.pull()
    try:
        site.start()
        wait_until("a page", lambda: probe(site.metrics_port, "/")[0] == 200)
        with open_browser(browsers, tmp_path / "profile") as context:
            watched = Watched(context.new_page())
            page = watched.page
            page.goto(f"http://127.0.0.1:{site.metrics_port}/")
            expect(page.locator("#verdict")).to_have_text(
                "converged: 2 of 2 VMs placed and protected"
            )
            names = page.locator("#vms tr.vm td:nth-child(2)")
            expect(names).to_have_text([HOSTILE_VM, HOSTILE_ROW])
            expect(page.locator("body")).to_contain_text(HOSTILE_UNMANAGED)
            assert page.locator("img, script, svg").count() == 0
            page.wait_for_event("load", timeout=10_000)  # and again after a refresh
            assert watched.dialogs == []
            assert not [m for m in watched.console if m.startswith("error")], watched.console
    finally:
        if site.daemon is not None:
            site.stop()
