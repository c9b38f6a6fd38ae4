"""Break-glass beside a real `drctl run`: `drctl retry` clears the budget of a Blocked VM,
`drctl reconcile` wakes the daemon for a pass now, and `drctl audit` shows who did both."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from e2e.harness import HR_AT_RTM, Site, wait_until

from reconciler.cli import main as cli
from reconciler.engine import status

pytestmark = pytest.mark.e2e


def phase(site: Site, vm: str) -> str:
    return str(next(v["phase"] for v in site.status()["vms"] if v["name"] == vm))


def test_a_vm_blocked_after_its_attempts_moves_after_retry_and_reconcile(site: Site) -> None:
    """No commit needed: the daemon (resync 300 s) acts at once on the cleared budget."""
    site.drctl("fabric", "fail", "hr-web", "PlannedFailover", "--times", "3")
    site.start("--resync", "300")
    moved = site.commit("hr to rtm", {"hr.yaml": HR_AT_RTM})
    site.pull()
    wait_until("hr-web Blocked", lambda: phase(site, "hr-web") == "Blocked")
    assert "drctl retry --vm hr-web" in site.drctl("status", str(site.specs)).stdout

    pid = site.daemon.pid if site.daemon else 0
    cleared = site.drctl("retry", str(site.specs), "--vm", "hr-web")
    again = "plans them again at its next pass; `drctl reconcile` asks for it now"
    assert cleared.stdout.splitlines() == [
        f"hr/hr-web: attempts cleared (3 failed PlannedFailover) under revision {moved}",
        f"the daemon (pid {pid}) {again}",
    ]
    asked = site.drctl("reconcile")
    assert asked.stdout.startswith(f"asked the daemon (pid {pid})")
    wait_until("hr-web converged at rtm", lambda: site.converged_at("rtm", plan="hr"), timeout=20)
    assert '"event": "pass_requested"' in site.log_text()

    audit = site.drctl("audit", str(site.specs)).stdout
    assert "attempts cleared by" in audit
    assert "(drctl retry: 3 failed PlannedFailover)" in audit
    assert "reconcile requested by" in audit
    entries = json.loads(site.drctl("audit", str(site.specs), "--output", "json").stdout)
    hr = next(e for e in entries if e["vm"] == "hr-web" and e["revision"] == moved)
    assert [i["clearedAttempts"] for i in hr["interventions"]] == [{"PlannedFailover": 3}]
    asks = [e for e in entries if e["vm"] is None and "interventions" in e]
    assert [i["kind"] for e in asks for i in e["interventions"]] == ["reconcile"]


def test_reconcile_without_a_daemon_says_so_and_signals_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["reconcile", "--state-dir", str(tmp_path / "nowhere")]) == 2
    assert "no state dir at" in capsys.readouterr().err
    state = tmp_path / "state"
    state.mkdir()
    assert cli.main(["reconcile", "--state-dir", str(state)]) == 3
    assert "no daemon runs on" in capsys.readouterr().err
    # A daemon.json left by a daemon that is gone, its pid taken by another program:
    # SIGUSR1 would end that program.
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as other:
        try:
            said = status.DaemonStatus(
                other.pid, True, "rev1", "rev1", True, (), datetime.now().astimezone()
            )
            status.write_status(state, said)
            assert cli.main(["reconcile", "--state-dir", str(state)]) == 3
            assert f"pid {other.pid} in daemon.json is not a drctl process" in (
                capsys.readouterr().err
            )
            assert other.poll() is None  # still running: nothing was signalled
        finally:
            other.kill()


def test_retry_of_a_plan_or_vm_the_revision_lacks_is_exit_2_and_nothing_spent_is_exit_0(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    state = ["--state-dir", str(site.state)]
    assert cli.main(["retry", str(site.specs), "--plan", "payroll", *state]) == 2
    assert "--plan payroll: no such plan in the revision in force (plans: finance, hr)" in (
        capsys.readouterr().err
    )
    assert cli.main(["retry", str(site.specs), "--plan", "hr", "--vm", "sql01", *state]) == 2
    assert "--vm sql01: no such VM in plan hr" in capsys.readouterr().err
    assert cli.main(["retry", str(site.specs), *state]) == 0
    assert "nothing to clear" in capsys.readouterr().err
