"""One actor on a fabric, whatever happens to the state dir: real `drctl run` and
`drctl apply` processes, the lock file deleted or a directory, the state dir replaced."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from e2e.harness import OTHER_PLAN, Site, lock_held, three_tier, wait_until

pytestmark = pytest.mark.e2e


def moving_specs(root: Path) -> Path:
    """A spec dir (not the daemon's) that wants finance at rtm: an apply of it has work to do."""
    specs = root / "apply-specs"
    specs.mkdir()
    (specs / "finance.yaml").write_text(three_tier("rtm"))
    (specs / "hr.yaml").write_text(OTHER_PLAN)
    return specs


def converged(site: Site) -> None:
    wait_until(
        "the daemon's first pass",
        lambda: site.metric('drctl_plan_converged{plan="finance"}') == 1,
    )


def test_apply_refuses_beside_a_daemon_whose_lock_file_was_deleted(site: Site) -> None:
    """An operator cleaning up the state dir deletes drctl.lock under a running daemon:
    a second drctl still cannot act, says who does, and starts nothing."""
    site.start()
    converged(site)
    (site.state / "drctl.lock").unlink()
    specs = moving_specs(site.root)
    done = site.drctl("apply", str(specs), "--timeout", "3", check=False)
    assert done.returncode == 3, done.stdout + done.stderr
    said = done.stderr.strip()
    assert "\n" not in said, said
    assert site.daemon is not None
    assert f"pid {site.daemon.pid}" in said
    assert "only one drctl may act at a time" in said
    assert site.jobs() == []
    assert site.daemon.poll() is None


def test_a_lock_path_that_is_a_directory_is_refused_with_what_to_do(site: Site) -> None:
    """`apply` refuses in one line; `drctl run` waits for it, said and measured
    (tests/e2e/test_state_faults.py)."""
    (site.state / "drctl.lock").unlink()
    (site.state / "drctl.lock").mkdir()
    done = site.drctl("apply", str(site.specs), check=False)
    assert done.returncode == 3, done.stdout + done.stderr
    said = done.stderr.strip()
    assert "\n" not in said, said
    assert said.startswith("drctl: ")
    assert f"{site.state / 'drctl.lock'} is a directory" in said
    assert "move it away" in said
    assert site.jobs() == []


def test_a_daemon_whose_state_dir_is_replaced_starts_nothing_more_and_says_so(
    site: Site,
) -> None:
    """The state dir restored from a copy under a running daemon: the daemon's lock is on
    the old directory, so a drctl on the new one may act; the daemon stops acting."""
    site.start("--resync", "0.3")
    converged(site)
    old = site.root / "state.old"
    copy = site.root / "state.copy"
    shutil.copytree(site.state, copy)
    site.state.rename(old)
    copy.rename(site.state)
    site.commit("fail finance over to rtm", {"finance.yaml": three_tier("rtm")})
    site.pull()
    assert site.daemon is not None
    code = site.daemon.wait(timeout=10)
    site.daemon = None
    assert code == 3
    log = site.log_text()
    assert "lock_lost" in log
    assert f"{site.state} is no longer the directory this drctl locked" in log
    assert site.jobs() == []
    shown = subprocess.run(
        [
            sys.executable,
            "-m",
            "reconciler",
            "fabric",
            "show",
            "--output",
            "json",
            "--state-dir",
            str(old),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(shown.stdout)["jobs"] == []


def test_a_daemon_waiting_for_the_lock_says_it_does_not_lead_and_serves_no_plan_series(
    site: Site,
) -> None:
    with lock_held(site.state):
        site.start()
        wait_until("the daemon to say it waits", lambda: "waiting for the lock" in site.log_text())
        text = site.metrics_text()
        assert "drctl_leader 0.0" in text
        assert "drctl_plan_placed{" not in text
        assert "drctl_vm_converged{" not in text
    wait_until("the daemon to lead", lambda: site.metric("drctl_leader") == 1)
    converged(site)
    assert site.stop(signal.SIGTERM) == 0
