"""End to end on Hyper-V Replica: a real `drctl run` SIGKILLed between two cmdlets of one job.

A planned failover is five cmdlets on two hosts (Stop-VM and `Start-VMFailover
-Prepare` on the primary; `Start-VMFailover`, `Set-VMReplication -Reverse` and
`Start-VM` on the replica) with no job on the hosts' side. The stand-in pwsh
(tests/fabric/hyperv/pwsh.py) holds the answer to sql01's `Start-VMFailover` on
the replica after the host ran it, the daemon is SIGKILLed right there (it
journaled the step as issued, never its answer), and a new daemon must resume
at `-Reverse` from what the hosts show, sending no cmdlet twice: the hosts'
own record of the cmdlets they ran says so.
"""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e import providers
from e2e.harness import three_tier
from fabric.hyperv import harness as hv_harness

pytestmark = pytest.mark.e2e


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[providers.HyperVDriver]:
    built = providers.HyperVDriver(tmp_path)
    built.want(three_tier("ams"))
    try:
        yield built
    finally:
        built.close()


def test_a_daemon_killed_between_start_vmfailover_and_reverse_resumes_sending_nothing_twice(
    driver: providers.HyperVDriver,
) -> None:
    ams, rtm = hv_harness.host_of("ams"), hv_harness.host_of("rtm")
    driver.start_daemon()
    driver.wait("the daemon to converge at ams", lambda: driver.daemon_converged_at("ams"))
    held = driver.hosts.hold(rtm, "failover", "sql01")
    driver.want(three_tier("rtm"))
    driver.wait("sql01's Start-VMFailover on rtm", held.held.is_set, 60)
    assert driver.stop_daemon(signal.SIGKILL) == -signal.SIGKILL
    held.release()  # its answer is dropped: the drctl that asked is gone
    with driver.hosts.lock:  # failed over on rtm, not yet reversed
        copy = next(
            r for r in driver.hosts.emulator.state.records[rtm].values() if r.name == "sql01"
        )
        assert (copy.mode, copy.ps_state) == ("Replica", "FailedOverWaitingCompletion")
    vm = driver.vms()["sql01"]
    assert vm["observed"]["activeSite"] == "rtm"
    assert vm["observed"]["job"]["state"] == "Running"

    driver.start_daemon()
    driver.wait("the daemon to converge at rtm", lambda: driver.daemon_converged_at("rtm"), 60)
    assert driver.stop_daemon() == 0
    sent = [(c.host, c.command, c.vm) for c in driver.hosts.calls]
    assert [step for step, n in Counter(sent).items() if n > 1] == []  # nothing sent twice
    assert [(h, c) for h, c, v in sent if v == "sql01"] == [
        (ams, "stop"),
        (ams, "prepare"),
        (rtm, "failover"),  # the one the killed daemon never heard answered
        (rtm, "reverse"),  # sent by the new daemon, from what rtm showed
        (rtm, "start"),
    ]
    assert [c for c in driver.hosts.calls if c.refused] == []
    log = [json.loads(line) for line in driver.log.read_text().splitlines() if line[:1] == "{"]
    adopted = [e for e in log if e.get("event") == "action_adopted"]
    assert [(e["vm"], e["operation"]) for e in adopted] == [("sql01", "PlannedFailover")]
    assert driver.converged_at("rtm")


def test_drctl_apply_fails_over_unplanned_to_an_older_recovery_snapshot_with_consent(
    driver: providers.HyperVDriver,
) -> None:
    """web01's spec names an older recovery snapshot: Hyper-V takes it only in the failover
    (`Start-VMFailover -VMRecoverySnapshot`), so drctl names it there, once ams is lost and
    an unplanned failover is consented to, and never proposes ApplyRecoveryPoint after it."""
    rtm = hv_harness.host_of("rtm")

    def snapshots() -> list[list[object]]:
        with driver.hosts.lock:
            driver.hosts.emulator.advance()
            copy = next(
                r for r in driver.hosts.emulator.state.records[rtm].values() if r.name == "web01"
            )
            return list(copy.points)

    driver.wait("three recovery snapshots of web01 on rtm", lambda: len(snapshots()) >= 3, 30)
    driver.site_down("ams")
    older, newest = snapshots()[-3], snapshots()[-1]
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 7200))
    spec = three_tier("rtm").replace(
        "    - name: web01\n", f"    - {{name: web01, recoveryPoint: '{older[0]}'}}\n"
    )
    driver.want(spec)
    done = driver.apply("--timeout", "30")
    assert done.returncode == 1  # nothing consents to losing writes yet
    assert "allowDataLoss: {from: ams, until: <time>}" in done.stderr
    assert [c for c in driver.hosts.calls if c.command.startswith("failover")] == []

    driver.want(
        spec.replace(
            "commitAfterSeconds: 0}",
            f"commitAfterSeconds: 0, allowDataLoss: {{from: ams, until: '{until}'}}}}",
        )
    )
    done = driver.apply("--timeout", driver.seconds(7))
    vms = driver.vms()
    assert {vm["observed"]["activeSite"] for vm in vms.values()} == {"rtm"}, done.stderr
    failovers = {(c.vm, c.command) for c in driver.hosts.calls if c.host == rtm}
    assert ("web01", "failover-point") in failovers  # to the snapshot the spec names
    assert ("web01", "failover") not in failovers
    assert ("sql01", "failover") in failovers  # the others: the latest point
    assert f"-eq '{older[0]}'" in next(
        c.script for c in driver.hosts.calls if c.command == "failover-point"
    )
    assert ("web01", "complete") in failovers  # committed, with no ApplyRecoveryPoint before
    assert [c for c in driver.hosts.calls if c.refused] == []
    with driver.hosts.lock:
        copy = next(
            r for r in driver.hosts.emulator.state.records[rtm].values() if r.name == "web01"
        )
        assert copy.synced == older[1] and older[1] != newest[1]  # it runs the older data
        assert copy.points == []  # Complete-VMFailover removed the others
