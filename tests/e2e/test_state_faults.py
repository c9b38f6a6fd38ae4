"""A real `drctl run` (and `drctl apply`) against bad revisions and a damaged state dir.

What is pushed or broken mid-move: a spec with a control character, an untracked file
whose name is not UTF-8, a state dir turned read-only, a lock path that is a directory.
The daemon must keep running with the last valid revision in force, start nothing it
cannot journal, say so, and go on by itself; `drctl apply` exits 3 with one line naming
the path. Waits poll a real process with a deadline (harness.wait_until).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import disk
import pytest
from e2e.harness import Site, git, three_tier, wait_until

pytestmark = pytest.mark.e2e


def fabric_vms(site: Site) -> list[dict[str, Any]]:
    vms: list[dict[str, Any]] = json.loads(site.drctl("fabric", "show", "--output", "json").stdout)[
        "vms"
    ]
    return vms


def moved_to(site: Site, where: str) -> bool:
    """finance converged at `where`: the daemon says so and the fabric agrees."""
    if site.metric('drctl_plan_converged{plan="finance"}') != 1:
        return False
    return all(vm["activeSite"] == where for vm in fabric_vms(site) if vm["name"] != "hr-web")


def failover_in_flight(site: Site) -> list[dict[str, Any]]:
    return [j for j in site.jobs() if j["operation"] == "PlannedFailover" and not j["finishedAt"]]


def jobs_started(site: Site, *, running: bool = False) -> float:
    """How many jobs the daemon started, as its metrics count them (only those in flight)."""
    total = 0.0
    for line in site.metrics_text().splitlines():
        ended = 'result="succeeded"' in line or 'result="failed"' in line
        if line.startswith("drctl_actions_in_flight{") or (
            not running and line.startswith("drctl_actions_total{") and ended
        ):
            total += float(line.split()[-1])
    return total


def assert_each_operation_once(site: Site) -> None:
    per_step = Counter((j["vm"], j["operation"]) for j in site.jobs())
    assert set(per_step.values()) == {1}, per_step


def push_control_character(site: Site) -> None:
    site.commit("a stray byte", {"finance.yaml": three_tier("rtm").replace("kind", "kin\x00d")})
    site.pull()


def drop_non_utf8_file(site: Site) -> None:
    # Untracked, beside the tracked specs, holding a second copy of the plan.
    (site.specs / os.fsdecode(b"finance-\xff.yaml")).write_text(three_tier("rtm"))


@pytest.mark.parametrize(
    "push", [push_control_character, drop_non_utf8_file], ids=["control-char", "non-utf8-name"]
)
def test_a_bad_revision_mid_move_leaves_the_daemon_running_on_the_last_valid_one(
    tmp_path: Path, push: Any
) -> None:
    site = Site(tmp_path)
    try:
        site.start("--resync", "1")
        moved = site.commit("fail finance over to rtm", {"finance.yaml": three_tier("rtm")})
        site.pull()
        wait_until("the move under way", site.jobs)
        push(site)
        wait_until("drctl_spec_valid 0", lambda: site.metric("drctl_spec_valid") == 0)
        wait_until("finance converged at rtm", lambda: moved_to(site, "rtm"), timeout=60)
        assert site.daemon is not None
        assert site.daemon.poll() is None  # still running
        said = json.loads((site.state / "daemon.json").read_text())
        assert (said["revisionInForce"], said["specValid"]) == (moved, False)
        assert said["specErrors"]
        assert f'drctl_spec_revision_info{{revision="{moved}"}}' in site.metrics_text()
        assert "Traceback" not in site.log_text()
        assert_each_operation_once(site)
    finally:
        if site.daemon is not None:
            assert site.stop(signal.SIGTERM) == 0


def test_drctl_run_on_a_state_dir_turned_read_only_mid_move_waits_then_goes_on(
    tmp_path: Path,
) -> None:
    site = Site(tmp_path)
    try:
        site.start()
        site.commit("fail finance over to rtm", {"finance.yaml": three_tier("rtm")})
        site.pull()
        wait_until("a planned failover in flight", lambda: failover_in_flight(site))
        with disk.read_only(site.state):
            wait_until("drctl_state_writable 0", lambda: site.metric("drctl_state_writable") == 0)
            started = jobs_started(site)
            wait_until("the jobs in flight to end", lambda: jobs_started(site, running=True) == 0)
            passes = site.metric('drctl_reconcile_total{result="error"}') or 0.0
            wait_until(
                "three more passes",
                lambda: (site.metric('drctl_reconcile_total{result="error"}') or 0) >= passes + 3,
            )
            assert jobs_started(site) == started  # followed to their end; nothing more started
            assert f"cannot write {site.state}" in site.log_text()
        wait_until("finance converged at rtm", lambda: moved_to(site, "rtm"), timeout=60)
        assert site.metric("drctl_state_writable") == 1
        assert "writable again" in site.log_text()
        assert "Traceback" not in site.log_text()
        assert_each_operation_once(site)
    finally:
        if site.daemon is not None:
            assert site.stop(signal.SIGTERM) == 0


def test_a_lock_path_that_is_a_directory_is_said_and_waited_for(site: Site) -> None:
    lock = site.state / "drctl.lock"
    lock.unlink(missing_ok=True)
    lock.mkdir()
    refused = site.drctl("apply", str(site.specs), check=False)
    assert refused.returncode == 3
    assert refused.stderr == (
        f"drctl: {lock} is a directory, not drctl's lock file: move it away (drctl makes a new "
        "lock file), or choose another --state-dir\n"
    )
    site.start()
    wait_until("drctl_state_writable 0", lambda: site.metric("drctl_state_writable") == 0)
    assert f"{lock} is a directory, not drctl's lock file" in site.log_text()
    lock.rmdir()
    wait_until("the first pass", lambda: site.metric('drctl_plan_converged{plan="finance"}') == 1)
    assert site.metric("drctl_state_writable") == 1
    assert lock.is_file()


def test_apply_on_a_read_only_state_dir_exits_3_naming_the_path(site: Site) -> None:
    site.commit("fail finance over to rtm", {"finance.yaml": three_tier("rtm")})
    site.pull()
    with disk.read_only(site.state):
        refused = site.drctl("apply", str(site.specs), check=False)
    assert refused.returncode == 3
    (line,) = refused.stderr.splitlines()
    assert line.startswith(f"drctl: cannot write {site.state}: ")
    assert ("Read-only file system" in line) or ("Permission denied" in line)
    assert refused.stdout == ""
    assert site.jobs() == []


def test_apply_on_a_full_state_dir_exits_3_naming_the_path(tmp_path: Path) -> None:
    with disk.small_tmpfs(tmp_path / "state", size="2m") as state:
        site = Site(tmp_path)
        site.commit("fail finance over to rtm", {"finance.yaml": three_tier("rtm")})
        site.pull()
        filler = disk.fill(state)
        refused = site.drctl("apply", str(site.specs), check=False)
        assert refused.returncode == 3
        assert refused.stderr.startswith(f"drctl: cannot write {state}: No space left on device")
        assert len(refused.stderr.splitlines()) == 1
        filler.unlink()
        assert site.jobs() == []
        shutil.rmtree(state / "in-force", ignore_errors=True)
    assert git(site.watched, "status", "--porcelain") == ""


def test_drctl_run_refuses_a_damaged_journal_and_status_says_what_to_do(site: Site) -> None:
    site.start()
    wait_until("the first pass", lambda: site.metric('drctl_plan_converged{plan="finance"}') == 1)
    assert site.stop(signal.SIGTERM) == 0
    journal = site.state / "journal.db"
    assert not journal.with_name("journal.db-wal").exists()  # checkpointed at the stop
    journal.write_bytes(b"\x00garbage" * 512)
    site.commit("fail finance over to rtm", {"finance.yaml": three_tier("rtm")})
    site.pull()
    site.start()
    wait_until("drctl_journal_usable 0", lambda: site.metric("drctl_journal_usable") == 0)
    refused = site.drctl("status", str(site.specs), check=False)
    assert refused.returncode == 3
    (line,) = refused.stderr.splitlines()
    assert line.startswith(f"drctl: the journal {journal} is damaged (file is not a database)")
    assert "A copy is kept at" in line
    assert "check the fabric's job list (`drctl fabric show`" in line
    said = json.loads((site.state / "daemon.json").read_text())
    assert f"drctl: {said['stateProblem']}" == line
    assert site.jobs() == []
    journal.rename(site.root / "journal.db.evidence")  # what the refusal says to do
    wait_until("finance converged at rtm", lambda: moved_to(site, "rtm"), timeout=60)
    assert "What it recorded is gone" in site.log_text()
    assert site.metric("drctl_journal_usable") == 1
