"""The etcd lease and the shared journal against real etcd members on 127.0.0.1: one
replica leads, a deposed one can write nothing, the client fails over between members,
and etcd restarted from its data dir has lost nothing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import etcdproc
import pytest

from reconciler.core import plan
from reconciler.core.state import Operation
from reconciler.engine import etcd_gateway, journal, journal_etcd
from reconciler.engine.lease import etcd as election_
from reconciler.errors import (
    EtcdUnavailableError,
    JournalBusyError,
    LeadershipLostError,
    UsageError,
)

AT = datetime(2025, 1, 1, tzinfo=UTC)


class Ticks:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def gateway_of(cluster: etcdproc.Cluster) -> Iterator[etcd_gateway.Gateway]:
    target = etcd_gateway.parse_target(cluster.url())
    gateway = etcd_gateway.Gateway(target.endpoints)
    yield gateway
    gateway.close()


@pytest.fixture
def gateway(etcd: etcdproc.Cluster) -> Iterator[etcd_gateway.Gateway]:
    yield from gateway_of(etcd)


def election(
    gateway: etcd_gateway.Gateway, name: str, ticks: Ticks | None = None
) -> election_.Election:
    return election_.Election(gateway, "/drctl", name, 3, monotonic=ticks or Ticks())


def failover(vm: str = "sql01") -> plan.Action:
    return plan.Action("finance", vm, Operation.PLANNED_FAILOVER, "rtm", source_site="ams")


def test_the_lock_url_names_members_and_a_prefix_or_says_what_is_wrong() -> None:
    target = etcd_gateway.parse_target("etcd://10.0.0.1:2379,[::1]:2380/dr/finance")
    assert target.endpoints == (("10.0.0.1", 2379), ("::1", 2380))
    assert target.prefix == "/dr/finance"
    assert etcd_gateway.parse_target("etcd://h:1").prefix == "/drctl"
    for bad in ("http://h:1/x", "etcd://h/x", "etcd://h:99999/x", "etcd://:1"):
        with pytest.raises(UsageError, match="--lock"):
            etcd_gateway.parse_target(bad)


def test_of_two_campaigners_exactly_one_leads_and_the_other_names_it(
    gateway: etcd_gateway.Gateway,
) -> None:
    a, b = election(gateway, "ams"), election(gateway, "rtm")
    a.tick()
    b.tick()
    assert (a.leading, b.leading) == (True, False)
    assert b.holder == "ams"
    a.check()
    with pytest.raises(LeadershipLostError, match="does not hold"):
        b.check()


def test_a_leader_past_its_local_deadline_starts_nothing_before_etcd_says_anything(
    gateway: etcd_gateway.Gateway,
) -> None:
    """granted + TTL - margin, on the local monotonic clock: a paused process that
    resumes finds the deadline passed and starts nothing, whatever etcd says."""
    ticks = Ticks()
    a = election(gateway, "ams", ticks)
    a.tick()
    a.check()
    ticks.now += a.ttl - a.margin + 0.01
    with pytest.raises(LeadershipLostError, match="past its local deadline"):
        a.check()


def test_a_deposed_leader_records_no_intent_the_etcd_transaction_compares_the_lease(
    gateway: etcd_gateway.Gateway,
) -> None:
    """Its lease expired in etcd (revoked here) and another replica took the key: its
    local deadline has not passed, yet the intent's transaction fails in etcd."""
    a, b = election(gateway, "ams"), election(gateway, "rtm")
    a.tick()
    leader = journal_etcd.EtcdJournal(
        gateway, etcd_gateway.parse_target("etcd://h:1/drctl"), a.fence, a.lost
    )
    first = leader.record_intent(failover("sql01"), "rev1", AT)
    gateway.revoke(a._lease)
    b.tick()
    assert b.leading
    a.check()  # its own clock still says it leads
    with pytest.raises(LeadershipLostError, match="another replica holds the lease"):
        leader.record_intent(failover("web01"), "rev1", AT)
    assert not a.leading  # stepped down at once
    reader = journal_etcd.EtcdJournal(gateway, etcd_gateway.parse_target("etcd://h:1/drctl"))
    assert [(e.vm, e.fencing_token) for e in reader.entries()] == [("sql01", first.fencing_token)]
    assert first.fencing_token == a.token
    assert b.token > a.token


def test_every_replica_reads_the_journal_the_leader_wrote_as_sqlite_reads_its_own(
    gateway: etcd_gateway.Gateway, tmp_path: object
) -> None:
    """Attempts, drctl's own jobs, open entries and convergences read the same from etcd."""
    a = election(gateway, "ams")
    a.tick()
    target = etcd_gateway.parse_target("etcd://h:1/drctl")
    shared = journal_etcd.EtcdJournal(gateway, target, a.fence, a.lost)
    sqlite = journal.Journal(tmp_path)  # type: ignore[arg-type]
    for history in (shared, sqlite):
        one = history.record_intent(failover("sql01"), "rev1", AT)
        history.record_started(one.id, "job-1", AT)
        history.record_outcome(one.id, journal.FAILED, AT, "boom")
        two = history.record_intent(failover("sql01"), "rev1", AT)
        history.record_started(two.id, "job-2", AT)
        three = history.record_intent(failover("web01"), "rev1", AT)
        history.record_deferred(three.id, AT, "timeout", 7.0)
        history.record_converged("rev1", [("finance", "app01")], AT)
    reader = journal_etcd.EtcdJournal(gateway, target)

    def seen(history: journal_etcd.EtcdJournal | journal.Journal) -> object:
        return (
            history.attempts("rev1", lambda n: 2.0 * n),
            history.own_jobs(),
            [(e.vm, e.job_id, e.result) for e in history.open_entries()],
            [(e.vm, e.result) for e in history.deferred_tails()],
            history.convergences(),
            [(e.vm, e.operation, e.result, e.error) for e in history.entries()],
        )

    assert seen(reader) == seen(sqlite)
    assert {e.fencing_token for e in reader.entries()} == {a.token}


def test_the_client_fails_over_to_the_next_member_when_the_one_it_talks_to_is_killed(
    etcd3: etcdproc.Cluster,
) -> None:
    for gateway in gateway_of(etcd3):
        a = election(gateway, "ams")
        a.tick()
        assert a.leading
        talked_to = gateway.current
        next(m for m in etcd3.members if m.endpoint == talked_to).kill()
        a.tick()  # the renewal goes to another member
        a.check()
        assert gateway.current != talked_to


def test_a_renewal_no_member_answers_stops_starts_at_once_and_counts(
    etcd: etcdproc.Cluster, gateway: etcd_gateway.Gateway
) -> None:
    failures = []
    ticks = Ticks()
    a = election_.Election(
        gateway, "/drctl", "ams", 3, monotonic=ticks, on_renew_failure=lambda: failures.append(1)
    )
    a.tick()
    etcd.members[0].kill()
    a.tick()
    assert failures == [1]
    with pytest.raises(LeadershipLostError, match="could not renew"):
        a.check()
    assert a.leading  # until its deadline: a renewal may still succeed
    ticks.now += a.ttl
    a.tick()
    assert not a.leading
    with pytest.raises(JournalBusyError, match="cannot be reached"):
        journal_etcd.EtcdJournal(gateway, etcd_gateway.parse_target("etcd://h:1/drctl"))
    with pytest.raises(EtcdUnavailableError, match="no etcd member answered"):
        gateway.status()


def test_etcd_restarted_from_its_data_dir_has_lost_nothing(
    etcd: etcdproc.Cluster, gateway: etcd_gateway.Gateway
) -> None:
    a = election(gateway, "ams")
    a.tick()
    target = etcd_gateway.parse_target("etcd://h:1/drctl")
    shared = journal_etcd.EtcdJournal(gateway, target, a.fence, a.lost)
    for vm in ("sql01", "app01", "web01"):
        entry = shared.record_intent(failover(vm), "rev1", AT)
        shared.record_started(entry.id, f"job-{vm}", AT)
    before = shared.entries()
    etcd.members[0].kill()
    etcd.members[0].start()
    etcd.wait_healthy()
    assert journal_etcd.EtcdJournal(gateway, target).entries() == before
