"""One replica per site on real etcd: `drctl run --lock etcd://...` processes on one
simulated fabric. A killed leader is replaced within TTL + 2 s and nothing is issued
twice; the etcd member the leader talks to may die; a paused leader starts nothing
when it resumes; etcd restarted from its data dir has lost nothing."""

from __future__ import annotations

import functools
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import etcdproc
import pytest
from e2e import replicas
from e2e.harness import OTHER_PLAN, Site, three_tier, wait_until

pytestmark = pytest.mark.e2e

CLEAN = {"duplicated": 0, "repeated": 0, "unjournaled": 0, "cancels": 0}


@pytest.fixture
def fabric(tmp_path: Path) -> Iterator[Site]:
    site = Site(tmp_path, timings={"plannedFailover": 1.5, "reverseReplicate": 0.6})
    yield site


def stop_all(pair: list[replicas.Replica]) -> None:
    for r in pair:
        if r.daemon is not None:
            r.daemon.send_signal(signal.SIGCONT)
            r.daemon.kill()
            r.daemon.wait()
            r.daemon = None


def move(site: Site, pair: list[replicas.Replica], to: str) -> None:
    site.commit(f"finance to {to}", {"finance.yaml": three_tier(to)})
    for r in pair:
        if r.daemon is not None:
            r.pull()


def following(replica: replicas.Replica) -> bool:
    return replica.metric("drctl_leader") == 0


def failing_over(site: Site) -> None:
    wait_until(
        "a failover job to run",
        lambda: any(
            j["operation"] == "PlannedFailover" and j["state"] == "Running" for j in site.jobs()
        ),
        timeout=30,
    )


def test_a_killed_leader_is_replaced_within_ttl_plus_2s_and_nothing_is_issued_twice(
    fabric: Site, etcd: etcdproc.Cluster
) -> None:
    """Two daemons on one etcd, killed with SIGKILL mid-failover twice (there and back):
    the other takes over within TTL + 2 s, follows the jobs, and converges."""
    pair = replicas.pair(fabric, etcd.url())
    try:
        for r in pair:
            r.start()
        leader = replicas.leader_of(pair)
        follower = next(r for r in pair if r is not leader)
        # Every replica serves metrics and plan series from its start, naming the holder.
        wait_until(
            "the follower's plan series",
            lambda: follower.metric('drctl_plan_converged{plan="finance"}') == 1,
        )
        assert follower.metric("drctl_leader") == 0
        assert follower.metric(f'drctl_leader_info{{identity="{leader.name}"}}') == 1
        assert not (follower.state / "drctl.lock").exists()  # followers take no local lock
        for to in ("rtm", "ams"):
            move(fabric, pair, to)
            failing_over(fabric)
            took = replicas.time_takeover(pair, leader, timeout=replicas.TTL + 8)
            assert took <= replicas.TTL + 2, took
            survivor = next(r for r in pair if r is not leader)
            wait_until("the move to converge", functools.partial(survivor.converged_at, to), 60)
            assert survivor.metric(f'drctl_leader_info{{identity="{survivor.name}"}}') == 1
            assert survivor.metric("drctl_leader_transitions_total") == 1
            leader.start()  # the lost site comes back: it follows
            wait_until("it to follow", functools.partial(following, leader))
            leader = survivor
        assert replicas.duplicates(fabric, etcd.url()) == CLEAN
    finally:
        stop_all(pair)


def test_the_leader_survives_the_loss_of_the_etcd_member_it_talks_to(
    fabric: Site, etcd3: etcdproc.Cluster
) -> None:
    """Three members; the replicas list them all and talk to the first: it is killed
    mid-move, the leader fails over to another member, keeps the lease and converges."""
    pair = replicas.pair(fabric, etcd3.url())
    try:
        for r in pair:
            r.start()
        leader = replicas.leader_of(pair)
        move(fabric, pair, "rtm")
        failing_over(fabric)
        etcd3.members[0].kill()
        wait_until("the move to converge", lambda: leader.converged_at("rtm"), 60)
        assert leader.leading()
        assert leader.metric("drctl_leader_transitions_total") == 0
        assert replicas.duplicates(fabric, etcd3.url(members=etcd3.members[1:])) == CLEAN
        # A commit only the leader's clone has: it acts on it, and says the follower's.
        follower = next(r for r in pair if r is not leader)
        behind = follower.status()["revision"]
        fabric.commit("hr: a comment", {"hr.yaml": OTHER_PLAN + "# owner: hr\n"})
        leader.pull()

        def says_follower_revision() -> bool:
            said = leader.drctl("status", str(leader.specs)).stdout
            return f"replica {follower.name} has revision {behind} in force" in said

        wait_until("the leader's status to name the follower's revision", says_follower_revision)
    finally:
        stop_all(pair)


def test_a_paused_leader_starts_nothing_when_it_resumes_past_its_ttl(
    fabric: Site, etcd: etcdproc.Cluster
) -> None:
    """SIGSTOP past the TTL (a partition, a frozen VM), SIGCONT: the other replica leads,
    and every action the paused one journaled was intended before it was paused.
    Then etcd is killed and started again from its data dir: the journal is whole."""
    pair = replicas.pair(fabric, etcd.url())
    try:
        for r in pair:
            r.start()
        leader = replicas.leader_of(pair)
        other = next(r for r in pair if r is not leader)
        move(fabric, pair, "rtm")
        failing_over(fabric)
        assert leader.daemon is not None
        leader.daemon.send_signal(signal.SIGSTOP)
        paused_at = time.time()
        wait_until("the other to lead", other.leading, timeout=replicas.TTL + 8)
        time.sleep(0.5)  # past the TTL, with the new leader acting
        leader.daemon.send_signal(signal.SIGCONT)
        wait_until("the paused one to step down", lambda: "lease_lost" in leader.log_text(), 10)
        wait_until("the move to converge", lambda: other.converged_at("rtm"), 60)
        entries = replicas.shared_entries(etcd.url())
        first_token = min(e.fencing_token or 0 for e in entries)
        late = [
            e
            for e in entries
            if e.fencing_token == first_token and e.intended_at.timestamp() >= paused_at
        ]
        assert late == []
        assert len({e.fencing_token for e in entries}) == 2  # one token per leader
        assert leader.metric("drctl_leader") == 0
        assert replicas.duplicates(fabric, etcd.url()) == CLEAN
        etcd.members[0].kill()
        etcd.members[0].start()
        etcd.wait_healthy()
        assert replicas.shared_entries(etcd.url()) == entries
    finally:
        stop_all(pair)
