"""Live terminal views on a real pseudo-terminal, and their plain lines through pipes:
`drctl status --watch` redraws as the fabric changes and Ctrl-C ends it with 0; `drctl apply`
shows a live line per running operation with its progress and elapsed time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from e2e import harness
from e2e.harness import HR_AT_RTM, Site, wait_until

pytestmark = pytest.mark.e2e


def ctrl_c(pid: int, _fd: int) -> None:
    os.kill(pid, signal.SIGINT)


def test_status_watch_redraws_the_table_in_place_and_ctrl_c_ends_it(site: Site) -> None:
    watch = ["status", str(site.specs), "--watch", "--interval", "0.2", "--state-dir"]
    code, seen = harness.on_a_terminal(
        [*watch, str(site.state)],
        [
            (
                lambda s: "rtm connected" in s,
                lambda _pid, _fd: site.drctl("fabric", "site-down", "rtm"),
            ),
            (lambda s: "rtm disconnected" in s, ctrl_c),
        ],
    )
    assert code == 0, seen
    assert "Ctrl-C to stop" in seen
    assert "sites of embedded: ams connected, rtm disconnected" in seen
    assert "\x1b[2K" in seen  # rich erased the region to draw it again, in place
    assert "Traceback" not in seen


def test_status_watch_to_a_pipe_prints_the_table_again_only_when_it_changed(site: Site) -> None:
    command = [sys.executable, "-m", "reconciler", "status", str(site.specs), "--watch"]
    with subprocess.Popen(
        [*command, "--interval", "0.1", "--state-dir", str(site.state)],
        stdout=subprocess.PIPE,
        text=True,
    ) as watching:
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(watching.stdout or ()), daemon=True)
        reader.start()

        def tables() -> int:
            return sum("VMs converged" in line for line in list(lines))

        try:
            wait_until("the first table", lambda: tables() == 1, timeout=15)
            time.sleep(1.0)  # ten looks: nothing changed, nothing printed
            site.drctl("fabric", "site-down", "rtm")
            wait_until("the second table", lambda: tables() >= 2, timeout=15)
            watching.send_signal(signal.SIGINT)
            watching.wait(timeout=30)
        finally:
            watching.kill()
        reader.join(timeout=5)
    assert watching.returncode == 0
    text = "".join(lines)
    assert text.count("--- ") == tables() >= 2, text
    assert "\x1b" not in text  # plain lines
    assert text.count("PLAN     VM") == tables()
    assert "sites of embedded: ams connected, rtm disconnected" in text


def test_apply_at_a_terminal_shows_a_live_line_per_running_operation(tmp_path: Path) -> None:
    site = Site(tmp_path, timings={"plannedFailover": 1.5})
    (site.specs / "hr.yaml").write_text(HR_AT_RTM)
    apply = ["apply", str(site.specs), "--poll-interval", "0.05", "--state-dir"]
    code, seen = harness.on_a_terminal([*apply, str(site.state)], [])
    assert code == 0, seen
    # A live line: the VM, its operation, progress and elapsed time.
    live = [line for line in seen.splitlines() if "... hr/hr-web PlannedFailover" in line]
    assert live, seen
    assert any("%" in line and line.rstrip().endswith("s") for line in live), live
    # The plain event lines, as ever, and none of the old hand-written escapes.
    assert "hr/hr-web PlannedFailover -> rtm started" in seen
    assert "converged: 6 VMs at their desired site and protected" in seen
    assert "F\x1b[J" not in seen


def test_apply_through_a_pipe_prints_plain_lines_only(tmp_path: Path) -> None:
    site = Site(tmp_path)
    (site.specs / "hr.yaml").write_text(HR_AT_RTM)
    done = site.drctl("apply", str(site.specs), "--poll-interval", "0.05")
    assert "\x1b" not in done.stdout
    assert "... hr/" not in done.stdout
    assert "hr/hr-web PlannedFailover -> rtm started" in done.stdout
