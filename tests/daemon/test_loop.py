"""The daemon's passes on a virtual clock: revisions in force, invalid specs, settle, drift."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from reconciler.daemon import logs, loop
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
  policy: {settleSeconds: SETTLE, commitAfterSeconds: 0}
  groups:
    - {name: db, vms: [sql01]}
    - {name: web, after: [db], vms: [web01]}
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
    def __init__(self, tmp_path: Path, settle: float = 0) -> None:
        self.clock = VirtualClock()
        self.specs = tmp_path / "specs"
        self.specs.mkdir()
        self.state = tmp_path / "state"
        self.settle = settle
        self.want("ams")
        (tmp_path / "inv.yaml").write_text(INVENTORY)
        sim.init_fabric(self.state, inventory.load_inventory(tmp_path / "inv.yaml"), self.clock)
        self.fabric = sim.SimFabric(self.state, self.clock)
        self.outcomes: list[tuple[str, bool]] = []
        self.daemon = self.new_daemon()

    def new_daemon(self) -> loop.Daemon:
        d = loop.Daemon(
            loop.Config(
                self.specs, self.state, resync=30.0, settings=execute.Settings(backoff_base=1.0)
            ),
            self.fabric,
            self.clock,
            metrics.Metrics(),
            on_revision=lambda rev, built, _entries: self.outcomes.append((rev, built.converged)),
        )
        d.prepare()
        return d

    def sample(self, name: str, **labels: str) -> float | None:
        return self.daemon.metrics.registry.get_sample_value(name, labels)

    def want(self, site: str, text: str | None = None) -> None:
        body = (text or PLAN).replace("SITE", site).replace("SETTLE", str(self.settle))
        (self.specs / "finance.yaml").write_text(body)

    def passes(self, seconds: float) -> None:
        """Run passes as the loop would, for `seconds` of virtual time."""
        end = self.clock.now().timestamp() + seconds
        while self.clock.now().timestamp() < end:
            wait = self.daemon.reconcile_once()
            self.clock.advance(max(0.1, min(wait, 1.0)))

    def jobs(self) -> list[tuple[str, str]]:
        return [(j.vm, str(j.operation)) for j in self.fabric.list_jobs()]


def test_a_committed_move_is_converged_and_timed(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    s.passes(1)
    assert s.jobs() == []
    s.want("rtm")
    s.daemon.notice_change()
    s.passes(40)
    observed = s.fabric.observe()
    assert {vm.active_site for vm in observed.vms.values()} == {"rtm"}
    assert s.sample("drctl_placement_duration_seconds_count", plan="finance") == 1
    assert s.sample("drctl_convergence_duration_seconds_count", plan="finance") == 1
    placed = s.sample("drctl_placement_duration_seconds_sum", plan="finance")
    converged = s.sample("drctl_convergence_duration_seconds_sum", plan="finance")
    assert placed is not None
    assert converged is not None
    # stop web, stop db (1 s each), fail over db, then web (3 s each), commit (1 s)
    assert 9 <= placed <= 12
    assert converged >= placed
    assert s.sample("drctl_plan_converged", plan="finance") == 1
    revision = s.daemon.in_force.revision if s.daemon.in_force else ""
    assert s.outcomes[-1] == (revision, True)


def test_invalid_revision_changes_nothing_and_the_next_valid_one_converges(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    s.passes(1)
    s.want("rtm", PLAN.replace("groups", "grups"))
    s.daemon.notice_change()
    s.passes(10)
    assert s.jobs() == []
    assert s.daemon.spec_error is not None
    assert "unknown key 'grups'" in str(s.daemon.spec_error)
    status = layout.daemon_status_path(s.state).read_text()
    assert '"specValid": false' in status
    assert s.sample("drctl_spec_valid") == 0
    s.want("rtm")
    s.daemon.notice_change()
    s.passes(40)
    assert s.daemon.spec_error is None
    assert s.sample("drctl_spec_valid") == 1
    assert {vm.active_site for vm in s.fabric.observe().vms.values()} == {"rtm"}


def test_restarted_daemon_keeps_acting_on_the_last_valid_revision(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    s.passes(1)
    valid = s.daemon.in_force
    assert valid is not None
    s.want("rtm", PLAN.replace("groups", "grups"))
    s.daemon = s.new_daemon()  # a restart while the files on disk are invalid
    assert s.daemon.in_force is not None
    assert s.daemon.in_force.revision == valid.revision
    s.passes(5)
    assert s.jobs() == []
    assert s.daemon.in_force.revision == valid.revision
    # drift while HEAD is invalid is still corrected towards the revision in force
    s.fabric.move("web01", "rtm")
    s.passes(40)
    assert s.fabric.observe().vms["web01"].active_site == "ams"


def test_settle_time_lets_a_quick_revert_move_nothing(tmp_path: Path) -> None:
    s = Setup(tmp_path, settle=20)
    s.passes(1)
    s.want("rtm")
    s.daemon.notice_change()
    s.passes(10)
    assert s.jobs() == []  # still settling
    s.want("ams")
    s.daemon.notice_change()
    s.passes(30)
    assert s.jobs() == []


def test_settle_time_then_the_move_goes_ahead(tmp_path: Path) -> None:
    s = Setup(tmp_path, settle=5)
    s.passes(1)
    s.want("rtm")
    s.daemon.notice_change()
    s.passes(4)
    assert s.jobs() == []
    s.passes(40)
    assert {vm.active_site for vm in s.fabric.observe().vms.values()} == {"rtm"}


def test_a_move_made_in_the_fabric_is_held_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Rule 1: an operator's failover is never reverted by drctl on its own."""
    s = Setup(tmp_path)
    made = s.clock.now().timestamp()
    os.utime(s.specs / "finance.yaml", (made, made))  # the revision predates the move
    s.passes(1)
    s.clock.advance(5)
    s.fabric.move("sql01", "rtm")
    with caplog.at_level(logging.WARNING, logger="drctl"):
        s.passes(31 + 20)  # one resync interval, and time for a failback
    assert s.fabric.observe().vms["sql01"].active_site == "rtm"
    assert s.jobs() == [("sql01", "PlannedFailover")]  # the operator's, and nothing of drctl
    held = [r for r in caplog.records if getattr(r, "event", None) == "vm_held"]
    assert [(r.getMessage().split(":")[0], getattr(r, "vm", None)) for r in held] == [
        ("finance/sql01 held", "sql01")
    ]
    assert s.sample("drctl_vm_held", plan="finance", vm="sql01") == 1


def test_a_move_made_in_the_fabric_is_corrected_with_self_heal(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    s.want("ams", PLAN.replace("commitAfterSeconds: 0}", "commitAfterSeconds: 0, selfHeal: true}"))
    made = s.clock.now().timestamp()
    os.utime(s.specs / "finance.yaml", (made, made))
    s.passes(1)
    s.clock.advance(5)
    s.fabric.move("sql01", "rtm")
    s.passes(31 + 20)  # one resync interval, then the failback itself
    assert s.fabric.observe().vms["sql01"].active_site == "ams"
    assert ("sql01", "PlannedFailover") in s.jobs()


def test_a_throttled_start_makes_the_daemon_sleep_until_the_retry_time(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    s.passes(1)
    s.fabric.inject_call_error("start", "throttled", retry_after=20.0)
    s.want("rtm")
    s.daemon.notice_change()
    while not s.sample("drctl_actions_total", operation="StopVM", result="throttled"):
        s.daemon.reconcile_once()
        s.clock.advance(0.1)
    # The next pass plans the backoff and sleeps until the time the fabric said.
    assert s.daemon.reconcile_once() == pytest.approx(20.0 - 0.1)
    assert s.jobs() == []
    s.passes(60)
    assert {vm.active_site for vm in s.fabric.observe().vms.values()} == {"rtm"}


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_logging_formats(fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure_logging(fmt)
    logs.log.info("plan %s converged", "finance", extra={"event": "plan_converged"})
    err = capsys.readouterr().err
    assert "plan finance converged" in err
    if fmt == "json":
        assert '"event": "plan_converged"' in err
