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
