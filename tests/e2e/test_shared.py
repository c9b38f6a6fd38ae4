"""End to end on every provider: the scenarios of issue 11, run against the simulator and the
ASR test vault through real drctl processes: a 3-tier plan over (through a failed
job, retried) and back, an outage with scoped consent and the split brain after
it, a split brain made by hand, a daemon SIGKILLed with a failover in flight.

Each test takes a `Driver` (tests/e2e/providers.py) that hides what differs
between fabrics: how a site goes dark, how a job fails, how an operator fails
a VM over by hand, what the fabric counts as started. What is asserted is
what an operator sees (exit codes, the lines printed, `drctl status`) and the
fabric's own record of what drctl started. Where ASR differs by design it
cannot stop VMs and reports no power, so a grouped plan moves whole through
its recovery plan `drctl-finance`, and an old copy it cannot see waits: the
test asserts ASR's documented behaviour there, not the simulator's.
"""

from __future__ import annotations

import dataclasses
import json
import re
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e import providers
from e2e.harness import three_tier
from fabric.hyperv import harness as hv_harness

from reconciler.core.state import Operation
from reconciler.fabric.sim.timing import Timings

pytestmark = pytest.mark.e2e

OP = Operation
PLAN = "drctl-finance"  # the ASR recovery plan of drctl plan finance


def made(kind: str, root: Path, timings: Timings) -> Iterator[providers.Driver]:
    built = providers.DRIVERS[kind](root, timings)
    built.want(three_tier("ams"))
    try:
        yield built
    finally:
        built.close()


@pytest.fixture(params=sorted(providers.DRIVERS))
def driver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[providers.Driver]:
    """The 3-tier application at ams, replicating to rtm, on each provider."""
    yield from made(request.param, tmp_path, providers.TIMINGS)


@pytest.fixture(params=sorted(providers.DRIVERS))
def slow_driver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[providers.Driver]:
    """The same, with failovers long enough for a test to catch one in flight."""
    yield from made(
        request.param, tmp_path, dataclasses.replace(providers.TIMINGS, planned_failover=1.5)
    )


def with_policy(text: str, extra: str) -> str:
    return text.replace("commitAfterSeconds: 0}", f"commitAfterSeconds: 0, {extra}}}")


def moves(driver: providers.Driver, operation: Operation) -> Counter[str]:
    """What drctl started of `operation`, by what it named (a VM, or ASR's recovery plan)."""
    return Counter(target for target, op in driver.started() if op == str(operation))


def test_a_three_tier_plan_fails_over_through_a_failed_job_and_back(
    driver: providers.Driver,
) -> None:
    driver.fail_next("sql01", OP.PLANNED_FAILOVER)  # accepted, then fails: retried
    for site, peer in (("rtm", "ams"), ("ams", "rtm")):
        driver.want(three_tier(site))
        done = driver.apply()
        assert done.returncode == 0, done.stdout + done.stderr
        status = driver.status()
        assert status["converged"] is True
        active = "Running" if driver.reports_power else "Unknown"
        assert {vm["name"]: vm["observed"]["power"] for vm in status["vms"]} == {
            n: {site: active, peer: "Off"} for n in providers.VMS
        }
        if site == "rtm":
            assert "PlannedFailover -> rtm failed" in done.stdout
    twice = Counter(dict.fromkeys(providers.VMS, 2))
    assert moves(driver, OP.UNPLANNED_FAILOVER) == Counter()
    if driver.stops_vms:
        # Dependents stopped first, then each VM failed over by itself, each way; sql01's
        # failed failover once more.
        assert moves(driver, OP.STOP_VM) == twice
        assert moves(driver, OP.PLANNED_FAILOVER) == twice + Counter({"sql01": 1})
        if driver.planned_reverses:
            # Hyper-V: the planned failover reversed replication itself; nothing to commit.
            assert moves(driver, OP.COMMIT) == Counter()
            assert moves(driver, OP.REVERSE_REPLICATE) == Counter()
            assert isinstance(driver, providers.HyperVDriver)
            assert_hyperv_round_trip(driver)
        else:
            assert moves(driver, OP.COMMIT) == twice
            assert moves(driver, OP.REVERSE_REPLICATE) == twice
    else:
        # ASR cannot stop a VM: the plan fails over whole through drctl-finance, each way,
        # and its failed job once more; each way committed and reprotected through it too.
        assert moves(driver, OP.PLANNED_FAILOVER) == Counter({PLAN: 3})
        assert moves(driver, OP.COMMIT) == Counter({PLAN: 2})
        assert moves(driver, OP.REVERSE_REPLICATE) == Counter({PLAN: 2})
        assert moves(driver, OP.STOP_VM) == Counter()


def assert_hyperv_round_trip(driver: providers.HyperVDriver) -> None:
    """Each VM's cmdlets, each way, as Microsoft documents a planned failover; sql01's first
    Start-VMFailover on the replica failed, and drctl reverted its own -Prepare."""
    ams, rtm = (hv_harness.host_of(s) for s in ("ams", "rtm"))

    def planned(src: str, dst: str) -> list[tuple[str, str]]:
        return [
            (src, "stop"),
            (src, "prepare"),
            (dst, "failover"),
            (dst, "reverse"),
            (dst, "start"),
        ]

    for vm in providers.VMS:
        sent = [(c.host, c.command) for c in driver.hosts.calls if c.vm == vm]
        over = planned(ams, rtm)
        if vm == "sql01":
            over = [*over[:3], (ams, "stop-failover"), *over[1:]]
        assert sent == over + planned(rtm, ams), vm
    failed = [c for c in driver.hosts.calls if c.refused is not None]
    assert [(c.host, c.command, c.vm, c.refused) for c in failed] == [
        (rtm, "failover", "sql01", "OperationFailed")
    ]


def test_an_outage_fails_over_with_scoped_consent_and_the_split_brain_is_never_guessed(
    driver: providers.Driver,
) -> None:
    driver.site_down("ams")
    driver.want(three_tier("rtm"))
    done = driver.apply("--timeout", "30")
    # At once: a planned failover is impossible and nothing consents to losing writes.
    assert done.returncode == 1
    assert "allowDataLoss: {from: ams, until: <time>}" in done.stderr
    assert driver.started() == []

    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 7200))
    consent = f"allowDataLoss: {{from: ams, until: '{until}'}}"
    driver.want(with_policy(three_tier("rtm"), consent))
    done = driver.apply("--timeout", driver.seconds(4))
    assert done.returncode == 1, done.stdout + done.stderr  # the old copies may still run
    vms = driver.vms()
    assert {vm["observed"]["activeSite"] for vm in vms.values()} == {"rtm"}
    assert {vm["phase"] for vm in vms.values()} == {"WaitingForSite"}
    assert all("ams" in vm["reason"] for vm in vms.values())
    if driver.stops_vms:
        assert moves(driver, OP.UNPLANNED_FAILOVER) == Counter(dict.fromkeys(providers.VMS, 1))
        assert moves(driver, OP.COMMIT) == Counter(dict.fromkeys(providers.VMS, 1))
    else:  # failed over and committed through the recovery plan
        assert moves(driver, OP.UNPLANNED_FAILOVER) == Counter({PLAN: 1})
        assert moves(driver, OP.COMMIT) == Counter({PLAN: 1})
    assert moves(driver, OP.PLANNED_FAILOVER) == Counter()

    # ams returns: both copies may run, and the ams copies may hold writes rtm lacks.
    driver.site_up("ams")
    done = driver.apply("--timeout", driver.seconds(2))
    assert done.returncode == 1, done.stdout + done.stderr
    vms = driver.vms()
    assert moves(driver, OP.REVERSE_REPLICATE) == Counter()  # nothing overwrote ams
    if driver.stops_vms:
        # drctl's own unplanned failovers made rtm authoritative: the stale copies are
        # stopped, then each VM waits for a person to let reverse replication overwrite them.
        assert moves(driver, OP.STOP_VM) == Counter(dict.fromkeys(providers.VMS, 1))
        assert {vm["phase"] for vm in vms.values()} == {"Held"}
        assert all("discardLostWrites" in vm["reason"] for vm in vms.values())
        if isinstance(driver, providers.HyperVDriver):  # turned off, at the host holding it
            ams = hv_harness.host_of("ams")
            assert {(c.host, c.script) for c in driver.hosts.calls if c.command == "stop"} == {
                (ams, f"$ErrorActionPreference = 'Stop'\nStop-VM -Name '{n}' -TurnOff -Force")
                for n in providers.VMS
            }
    else:
        # ASR can neither stop the old copies nor tell whether they run: each VM is Held
        # for a person to answer for the copy at ams, and nothing reverses replication
        # over what ams may hold until one does.
        assert moves(driver, OP.STOP_VM) == Counter()
        assert {vm["phase"] for vm in vms.values()} == {"Held"}
        assert {vm["observed"]["power"]["ams"] for vm in vms.values()} == {"Unknown"}
        assert all(
            "cannot tell whether the old copy at ams still runs" in vm["reason"]
            and "discardLostWrites" in vm["reason"]
            for vm in vms.values()
        )
        # The person makes sure the old copies are off (as the reason says); ASR, which
        # refuses to reprotect over a running copy, then lets replication reverse.
        assert isinstance(driver, providers.AsrDriver)
        for name in providers.VMS:
            driver.turn_off_by_hand(name, "ams")
    # A person lets it, for the whole plan: reverse replication, converged.
    driver.want(with_policy(three_tier("rtm"), f"{consent}, reprotectAfterUnplanned: auto"))
    done = driver.apply()
    assert done.returncode == 0, done.stdout + done.stderr
    assert driver.converged_at("rtm")


def test_a_split_brain_made_by_hand_is_held_and_never_guessed(driver: providers.Driver) -> None:
    """An operator's unplanned failover in the portal leaves the old copy as it was."""
    driver.failover_by_hand("web01", "rtm")
    done = driver.apply("--timeout", "10")
    assert done.returncode == 1, done.stdout + done.stderr
    web = driver.vms()["web01"]
    assert (web["phase"], web["observed"]["activeSite"]) == ("Held", "rtm")
    assert "failed over to rtm outside drctl" in web["reason"]
    assert "commit `activeSite: rtm` to accept it" in web["reason"]
    # The fabric's name for that failover: the simulator's job; on Hyper-V, which keeps no
    # jobs, the failed-over copy it reads (a failover none of drctl's jobs explains).
    by_hand = re.search(r" by job (\S+);", web["reason"])
    assert by_hand is not None, web["reason"]
    assert driver.started() == []  # nothing committed, nothing turned off
    # Both copies run (the simulator sees them); ASR sees neither, so both may.
    power = "Running" if driver.reports_power else "Unknown"
    assert web["observed"]["power"] == {"ams": power, "rtm": power}

    # Accepting the move does not settle which copy took the last writes.
    driver.want(
        three_tier("ams").replace(
            "    - name: web01\n",
            "    - name: web01\n      activeSite: rtm\n      replication: rtm->ams\n",
        )
    )
    done = driver.apply("--timeout", "2")
    assert done.returncode == 1, done.stdout + done.stderr
    vms = driver.vms()
    web = vms.pop("web01")
    assert {vm["phase"] for vm in vms.values()} == {"Converged"}
    if driver.reports_power:
        assert web["phase"] == "Held"
        assert web["reason"].startswith(
            f"copies run at rtm and ams, and the failover to rtm (job {by_hand.group(1)}) was "
            "made outside drctl, which cannot tell which copy took writes last"
        )
        assert driver.started() == []  # drctl started nothing, on any VM
    else:
        # ASR sees no copy run: the accepted failover is committed (the old copy stays as
        # it is), and reverse replication, which would overwrite it, waits for a person.
        assert driver.started() == [("web01", "Commit")]
        assert web["phase"] == "Held"
        assert web["reason"].startswith(
            "the fabric reports no power, so drctl cannot tell whether the old copy at ams "
            "still runs"
        )


def test_a_daemon_sigkilled_with_a_job_in_flight_follows_it_and_starts_nothing_twice(
    slow_driver: providers.Driver,
) -> None:
    driver = slow_driver
    driver.start_daemon()
    driver.wait("the daemon to converge at ams", lambda: driver.daemon_converged_at("ams"))
    driver.want(three_tier("rtm"))
    started = driver.wait(
        "a failover in flight",
        lambda: [s for s in driver.started() if s[1] == str(OP.PLANNED_FAILOVER)],
    )
    assert driver.stop_daemon(signal.SIGKILL) == -signal.SIGKILL
    assert not driver.converged_at("rtm")
    driver.start_daemon()
    driver.wait("the daemon to converge at rtm", lambda: driver.daemon_converged_at("rtm"), 60)
    assert driver.stop_daemon() == 0
    counted = Counter(driver.started())
    assert [step for step, n in counted.items() if n > 1] == []  # nothing started twice
    # The restarted daemon followed the failover it found in flight to its end.
    log = [json.loads(line) for line in driver.log.read_text().splitlines() if line[:1] == "{"]
    adopted = [e for e in log if e.get("event") == "action_adopted"]
    assert str(OP.PLANNED_FAILOVER) in {e["operation"] for e in adopted}, started
