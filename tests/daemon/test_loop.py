"""The daemon's passes on a virtual clock: revisions in force, invalid specs, settle, drift."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
from e2e import harness

from reconciler.core import plan
from reconciler.daemon import logs, loop
from reconciler.engine import execute, metrics, status
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


# --- the settle window restarts when a revision widens what may be done -------------

CONSENT = "allowDataLoss: true, settleSeconds"


def waiting_then_consenting(tmp_path: Path) -> Setup:
    """finance waits to move (ams down, a planned failover impossible) long past its
    settle window; then a commit consents to losing writes."""
    s = Setup(tmp_path, settle=20)
    s.passes(1)
    s.fabric.site_down("ams")
    s.want("rtm")
    s.daemon.notice_change()
    s.passes(60)  # long past the settle window of the move itself: Blocked, waiting
    assert s.jobs() == []
    s.want("rtm", PLAN.replace("settleSeconds", CONSENT))
    s.daemon.notice_change()
    return s


def test_consent_added_and_reverted_within_the_settle_window_runs_nothing(tmp_path: Path) -> None:
    """A plan waiting to move: a commit adds consent and is reverted 1 s later. The
    settle window restarts with the consent, so nothing runs."""
    s = waiting_then_consenting(tmp_path)
    s.passes(1)
    s.want("rtm")  # the revert
    s.daemon.notice_change()
    s.passes(60)
    assert s.jobs() == []


def test_consent_that_stays_runs_once_the_settle_window_from_it_has_passed(
    tmp_path: Path,
) -> None:
    s = waiting_then_consenting(tmp_path)
    s.passes(19)
    assert s.jobs() == []  # settling from the revision that consented
    s.passes(30)
    assert ("sql01", "UnplannedFailover") in s.jobs()


def test_a_daemon_restarted_inside_the_settle_window_still_waits_it_out(tmp_path: Path) -> None:
    s = waiting_then_consenting(tmp_path)
    s.passes(5)
    s.daemon = s.new_daemon()  # a crash and a restart, 5 s into the window
    s.passes(10)
    assert s.jobs() == []
    s.passes(30)
    assert ("sql01", "UnplannedFailover") in s.jobs()


# --- a revision that would leave a move in flight unmanaged is refused ---------------

WEB_ONLY = """\
apiVersion: drctl/v1
kind: RecoveryPlan
metadata: {name: web}
spec:
  sites: [ams, rtm]
  defaults: {activeSite: rtm}
  policy: {commitAfterSeconds: 0}
  vms:
    - name: web01
"""


def moving(tmp_path: Path) -> tuple[Setup, str]:
    """finance on its way to rtm: its VMs stopped by drctl, the first failover running;
    with the revision in force that moves it."""
    s = Setup(tmp_path)
    s.passes(1)
    s.want("rtm")
    s.daemon.notice_change()
    while ("sql01", "PlannedFailover") not in s.jobs():
        s.daemon.reconcile_once()
        s.clock.advance(0.1)
    assert s.daemon.in_force is not None
    return s, s.daemon.in_force.revision


def refused_reasons(s: Setup, kept: str) -> list[str]:
    """Why the newest revision is refused, as `drctl status` reads it; `kept` stays in force."""
    assert s.daemon.in_force is not None
    assert s.daemon.in_force.revision == kept
    assert s.sample("drctl_revision_refused") == 1
    assert s.sample("drctl_spec_valid") == 1  # valid, and refused
    refused = daemon_status(s)["revisionRefused"]
    assert isinstance(refused, dict)
    assert refused["revision"] == s.daemon.revision_seen
    reasons: list[str] = refused["reasons"]
    return reasons


def daemon_status(s: Setup) -> dict[str, object]:
    found: dict[str, object] = json.loads(layout.daemon_status_path(s.state).read_text())
    return found


def test_a_revision_with_no_plan_pushed_mid_move_is_refused_and_the_move_finishes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    s, kept = moving(tmp_path)
    (s.specs / "finance.yaml").rename(s.specs / "finance.yaml.off")  # no spec file left
    s.daemon.notice_change()
    s.passes(40)
    # The revision in force carried the move on: no VM is left stopped, unmanaged.
    vms = s.fabric.observe().vms.values()
    assert {(vm.active_site, vm.running) for vm in vms} == {("rtm", ("rtm",))}
    (why,) = refused_reasons(s, kept)
    assert why.startswith("it holds no RecoveryPlan")
    said = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert said[0] == f"revision {s.daemon.revision_seen} refused: {why}"
    assert len(said) == 2  # said once (the reason, then what stays in force), not every resync


def test_a_plan_dropped_mid_move_is_refused_until_its_vms_rest_then_retired(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    s, kept = moving(tmp_path)
    s.want("rtm", WEB_ONLY)  # finance gone; web01 managed by a new plan, sql01 by none
    s.daemon.notice_change()
    s.passes(2)
    (why,) = refused_reasons(s, kept)
    assert why.startswith("it drops sql01 of plan finance while its PlannedFailover job")
    assert "restore the plan" in why
    s.passes(30)  # the move ends under the revision in force
    s.daemon.notice_change()  # the next resync looks again, and accepts it
    s.passes(2)
    assert s.daemon.in_force is not None
    assert s.daemon.in_force.revision != kept
    assert s.sample("drctl_revision_refused") == 0
    assert daemon_status(s)["revisionRefused"] is None
    assert any("plan finance retired" in r.getMessage() for r in caplog.records)
    assert {vm.active_site for vm in s.fabric.observe().vms.values()} == {"rtm"}


def test_a_plan_whose_vms_rest_is_retired_at_once(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    s.passes(1)
    s.want("ams", WEB_ONLY.replace("activeSite: rtm", "activeSite: ams"))
    s.daemon.notice_change()
    s.passes(2)
    assert s.sample("drctl_revision_refused") == 0
    assert s.daemon.in_force is not None
    assert [p.name for p in s.daemon.in_force.desired.plans] == ["web"]
    assert s.jobs() == []


# --- a broken repository is an error, never a switch to a content hash -------------


def in_git(s: Setup) -> Path:
    """The specs of `s` committed in a git repository; returns its top."""
    top = s.specs.parent
    harness.git(top, "init", "-q", "-b", "main")
    harness.git(top, "add", "specs")
    harness.git(top, "commit", "-qm", "finance at ams")
    return top


@pytest.mark.parametrize("breaks", ["HEAD garbage", "no git on PATH"])
def test_a_broken_repository_keeps_the_revision_in_force_and_says_so(
    tmp_path: Path, breaks: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = Setup(tmp_path)
    top = in_git(s)
    s.passes(1)
    commit = harness.git(top, "rev-parse", "HEAD")
    assert s.daemon.in_force is not None
    assert s.daemon.in_force.revision == commit
    assert s.sample("drctl_spec_revision_readable") == 1
    head = (top / ".git" / "HEAD").read_text()
    if breaks == "HEAD garbage":
        (top / ".git" / "HEAD").write_text("garbage\n")
    else:
        monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    s.want("rtm")  # what the files say can no longer be tied to a commit
    s.daemon.notice_change()
    s.passes(5)
    assert s.daemon.in_force.revision == commit
    assert s.daemon.revision_seen == commit  # never a content hash
    assert s.jobs() == []
    assert s.sample("drctl_spec_revision_readable") == 0
    said = daemon_status(s)["revisionError"]
    assert isinstance(said, str)
    assert str(top / ".git") in said
    (top / ".git" / "HEAD").write_text(head)
    monkeypatch.undo()
    s.daemon.notice_change()
    s.passes(1)
    assert s.sample("drctl_spec_revision_readable") == 1
    assert daemon_status(s)["revisionError"] is None
    assert s.daemon.in_force.revision == f"{commit}+dirty." + s.daemon.in_force.revision[-16:]


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_logging_formats(fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure_logging(fmt)
    logs.log.info("plan %s converged", "finance", extra={"event": "plan_converged"})
    err = capsys.readouterr().err
    assert "plan finance converged" in err
    if fmt == "json":
        assert '"event": "plan_converged"' in err


def test_each_pass_hands_the_status_page_its_plan_revision_status_and_recent_actions(
    tmp_path: Path,
) -> None:
    s = Setup(tmp_path)
    s.passes(1)
    snap = s.daemon.feed.snapshot
    assert snap is not None and snap.built is not None
    assert snap.revision == snap.daemon.revision_in_force and snap.built.converged
    assert snap.recent == ()
    s.want("rtm")
    s.daemon.notice_change()
    s.passes(3)
    snap = s.daemon.feed.snapshot
    assert snap is not None and snap.built is not None
    moving = {vp.name: vp.phase for vp in snap.built.vms}
    assert moving["web01"] in (plan.Phase.STOPPING, plan.Phase.FAILING_OVER)
    assert [(e.vm, str(e.operation), str(e.kind)) for e in snap.recent][:2] == [
        ("web01", "StopVM", "started"),
        ("web01", "StopVM", "succeeded"),
    ]
    assert snap.daemon == status.read_status(s.state)  # this pass's status, as daemon.json says
    s.passes(40)
    snap = s.daemon.feed.snapshot
    assert snap is not None and snap.built is not None and snap.built.converged
    assert len(snap.recent) == 16  # 8 jobs, started and ended (at most RECENT_ACTIONS)
    assert (str(snap.recent[-1].operation), str(snap.recent[-1].kind)) == (
        "ReverseReplicate",
        "succeeded",
    )


def test_before_a_valid_revision_the_status_page_has_no_plan_and_the_errors(
    tmp_path: Path,
) -> None:
    s = Setup(tmp_path)
    s.want("ams", PLAN.replace("groups", "grups"))
    s.daemon = s.new_daemon()
    s.passes(1)
    snap = s.daemon.feed.snapshot
    assert snap is not None and snap.built is None and snap.revision is None
    assert "unknown key 'grups'" in snap.daemon.spec_errors[0]
