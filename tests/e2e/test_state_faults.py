"""A real `drctl run` against bad revisions pushed mid-move.

A spec with a control character, an untracked file whose name is not UTF-8: the
daemon must keep running with the last valid revision in force, exactly as for a
schema error. Waits poll a real process with a deadline (harness.wait_until).
"""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from e2e.harness import Site, three_tier, wait_until

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
