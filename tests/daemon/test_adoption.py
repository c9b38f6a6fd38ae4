"""`drctl run --adopt-safely` on a virtual clock: the first moving revision waits for a commit.

A real git repository of specs and the simulated fabric; the daemon's passes
run as the loop runs them. What an operator sees is `daemon.json` (what
`drctl status` shows: the revision in force, the one kept out and why),
`drctl_revision_refused`, the log, and the fabric's own jobs.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from e2e import harness

from reconciler.daemon import loop
from reconciler.engine import execute, metrics
from reconciler.engine import state_dir as layout
from reconciler.fabric.sim import inventory
from reconciler.fabric.sim import provider as sim
from reconciler.kits.clock import VirtualClock

PLAN = """\
apiVersion: drctl/v1
kind: RecoveryPlan
metadata: {name: finance}
spec:
  sites: [ams, rtm]
  defaults: {activeSite: SITE}
  policy: {commitAfterSeconds: 0}
  vms:
    - name: sql01
    - name: web01
"""
INVENTORY = """\
sites: [ams, rtm]
vms:
  - {name: sql01, activeSite: ams, replication: ams->rtm}
  - {name: web01, activeSite: ams, replication: ams->rtm}
timings: {plannedFailover: 3, commit: 1, reverseReplicate: 2, stopVM: 1, replicationInterval: 5}
"""


class Setup:
    def __init__(self, tmp_path: Path, site: str, *, adopt_safely: bool = True) -> None:
        self.clock = VirtualClock()
        self.top = tmp_path / "repo"
        self.specs = self.top / "specs"
        self.state = tmp_path / "state"
        self.adopt_safely = adopt_safely
        harness.spec_repo(self.top, {"finance.yaml": PLAN.replace("SITE", site)})
        (tmp_path / "inv.yaml").write_text(INVENTORY)
        sim.init_fabric(self.state, inventory.load_inventory(tmp_path / "inv.yaml"), self.clock)
        self.fabric = sim.SimFabric(self.state, self.clock)
        self.daemon = self.new_daemon()

    def new_daemon(self) -> loop.Daemon:
        config = loop.Config(
            self.specs,
            self.state,
            settings=execute.Settings(backoff_base=1.0),
            adopt_safely=self.adopt_safely,
        )
        d = loop.Daemon(config, self.fabric, self.clock, metrics.Metrics())
        d.prepare()
        return d

    def commit(self, site: str | None, message: str) -> str:
        """Commit the plan at `site` (None: an empty commit); the daemon notices it."""
        if site is not None:
            (self.specs / "finance.yaml").write_text(PLAN.replace("SITE", site))
        harness.git(self.top, "commit", "-qam" if site else "-qm", message, "--allow-empty")
        self.daemon.notice_change()
        return harness.git(self.top, "rev-parse", "HEAD")

    def passes(self, seconds: float) -> None:
        end = self.clock.now().timestamp() + seconds
        while self.clock.now().timestamp() < end:
            wait = self.daemon.reconcile_once()
            self.clock.advance(max(0.1, min(wait, 1.0)))

    def jobs(self) -> list[tuple[str, str]]:
        return [(j.vm, str(j.operation)) for j in self.fabric.list_jobs()]

    def sites(self) -> set[str]:
        return {vm.active_site for vm in self.fabric.observe().vms.values()}

    def status(self) -> dict[str, object]:
        found: dict[str, object] = json.loads(layout.daemon_status_path(self.state).read_text())
        return found

    def refused(self) -> float | None:
        return self.daemon.metrics.registry.get_sample_value("drctl_revision_refused")


def held_reason(rev: str) -> str:
    return (
        f"adopt-safely: revision {rev} would move 2 VMs (finance/sql01, finance/web01); commit "
        "again to confirm (any new commit), or commit specs that keep them where they run"
    )


def test_the_first_moving_revision_waits_for_a_later_commit(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The import moves nothing and goes in force; the first move waits; a commit confirms."""
    s = Setup(tmp_path, "ams")
    imported = harness.git(s.top, "rev-parse", "HEAD")
    s.passes(2)
    assert s.status()["revisionInForce"] == imported
    assert s.status()["revisionRefused"] is None

    moving = s.commit("rtm", "finance to rtm")
    s.passes(30)

    assert s.jobs() == []
    assert s.status()["revisionInForce"] == imported
    assert s.status()["revisionRefused"] == {"revision": moving, "reasons": [held_reason(moving)]}
    assert s.refused() == 1
    said = [r for r in caplog.records if getattr(r, "event", "") == "adopt_safely_held"]
    assert [r.getMessage() for r in said] == [held_reason(moving)]  # once, not every resync

    confirming = s.commit(None, "confirm: finance to rtm")
    s.passes(30)

    assert s.sites() == {"rtm"}
    assert s.status()["revisionInForce"] == confirming
    assert s.status()["revisionRefused"] is None
    assert s.refused() == 0
    # Done for this state dir, restarted or not: the next move goes in force at once.
    s.daemon = s.new_daemon()
    back = s.commit("ams", "finance back to ams")
    s.passes(30)
    assert s.status()["revisionInForce"] == back
    assert s.sites() == {"ams"}
    kept = json.loads(layout.adopt_safely_path(s.state).read_text())
    assert kept == {"held": None, "confirmedBy": confirming}


def test_a_first_revision_that_moves_is_held_across_a_restart_and_dirty_files(
    tmp_path: Path,
) -> None:
    """Nothing in force yet, nothing started; a restart holds the same revision; an edit
    not committed confirms nothing; the commit does."""
    s = Setup(tmp_path, "rtm")  # the fabric runs everything at ams
    first = harness.git(s.top, "rev-parse", "HEAD")
    s.passes(5)
    assert s.jobs() == []
    assert s.status()["revisionInForce"] is None
    assert s.status()["revisionRefused"] == {"revision": first, "reasons": [held_reason(first)]}
    success = s.daemon.metrics.registry.get_sample_value(
        "drctl_reconcile_total", {"result": "success"}
    )
    assert success is not None and success > 0  # holding as asked is no invalid spec

    s.daemon = s.new_daemon()  # restarted
    s.passes(5)
    assert s.jobs() == []
    assert s.status()["revisionRefused"] == {"revision": first, "reasons": [held_reason(first)]}

    (s.specs / "finance.yaml").write_text(PLAN.replace("SITE", "rtm") + "# an edit\n")
    s.daemon.notice_change()
    s.passes(5)
    assert s.jobs() == []
    assert s.status()["revisionInForce"] is None

    confirming = s.commit("rtm", "confirm: finance at rtm")
    s.passes(30)
    assert s.status()["revisionInForce"] == confirming
    assert s.sites() == {"rtm"}


def test_without_the_flag_the_first_moving_revision_goes_in_force(tmp_path: Path) -> None:
    """Plain `drctl run` is unaffected: it moves at once, and keeps no adopt-safely state."""
    s = Setup(tmp_path, "rtm", adopt_safely=False)
    s.passes(30)
    assert s.sites() == {"rtm"}
    assert not layout.adopt_safely_path(s.state).exists()


def test_a_damaged_record_holds_again(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A record it cannot read is read as nothing confirmed: holding once more is safe."""
    caplog.set_level(logging.ERROR)
    s = Setup(tmp_path, "ams")
    s.passes(1)
    layout.adopt_safely_path(s.state).write_text("{not json")
    s.daemon = s.new_daemon()
    moving = s.commit("rtm", "finance to rtm")
    s.passes(10)
    assert s.jobs() == []
    assert s.status()["revisionRefused"] == {"revision": moving, "reasons": [held_reason(moving)]}
    assert any("is damaged" in r.getMessage() for r in caplog.records)


def test_a_revision_is_not_weighed_while_its_fabric_cannot_be_observed(tmp_path: Path) -> None:
    """drctl cannot tell whether it moves VMs: it waits, and is held once the fabric answers."""
    s = Setup(tmp_path, "ams")
    s.passes(1)
    s.fabric.set_reachable(False)
    moving = s.commit("rtm", "finance to rtm")
    s.passes(5)
    assert s.status()["revisionInForce"] != moving
    waiting = (
        f"adopt-safely: cannot tell whether revision {moving} moves VMs: fabric embedded "
        "cannot be observed; it is weighed again at each look"
    )
    assert s.status()["revisionRefused"] == {"revision": moving, "reasons": [waiting]}
    s.fabric.set_reachable(True)
    s.daemon.notice_change()  # the next resync looks again
    s.passes(10)
    assert s.jobs() == []
    assert s.status()["revisionRefused"] == {"revision": moving, "reasons": [held_reason(moving)]}
