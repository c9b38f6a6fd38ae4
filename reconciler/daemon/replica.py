"""One replica of several on an etcd lease (`drctl run --lock etcd://...`): lead or follow.

`loop.Daemon` makes a `Replica` instead of waiting for the state dir's
flock (daemon/leader.py). It takes no local lock: every replica serves
/metrics and status from its start. A thread of its own campaigns and
renews the lease (engine/lease/etcd.py) and wakes the loop when the
leadership changes; the loop then opens an executor on the shared journal
(engine/journal_etcd.py, every write fenced) when this replica leads, and
drops it when it does not (jobs run on: the new leader follows them).
While following, each pass observes and plans read-only from the shared
journal, so dashboards work from any replica.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator

from reconciler.daemon.logs import log
from reconciler.engine import etcd_gateway, journal_etcd
from reconciler.engine import metrics as metrics_
from reconciler.engine.lease import etcd as election_
from reconciler.errors import EtcdUnavailableError


class Replica:
    """The etcd lease of this replica, its keeper thread, and its journals."""

    def __init__(
        self,
        target: etcd_gateway.Target,
        ttl: float,
        identity: str,
        metrics: metrics_.Metrics,
        wake: threading.Event,
    ) -> None:
        self.target = target
        self.identity = identity
        self._metrics = metrics
        self._wake = wake
        self.gateway = etcd_gateway.Gateway(target.endpoints)
        self.election = election_.Election(
            self.gateway,
            target.prefix,
            identity,
            ttl,
            on_change=self._changed,
            on_renew_failure=self._renew_failed,
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self.election.keep, args=(self._stop,), name="drctl-lease", daemon=True
        )
        self._reader: journal_etcd.EtcdJournal | None = None
        self._published: dict[str, object] | None = None

    @property
    def leading(self) -> bool:
        return self.election.leading

    def check(self) -> None:
        """The executor's `check_lock`: LeadershipLostError unless this replica may start now."""
        self.election.check()

    @contextlib.contextmanager
    def campaigning(self) -> Iterator[None]:
        """Campaign and renew on a thread until the block ends; then give the lease up."""
        self._metrics.set_leader(False)
        log.info(
            "campaigning for the lease %s as %s",
            self.election.key,
            self.identity,
            extra={"event": "lease_campaign", "identity": self.identity},
        )
        self._thread.start()
        try:
            yield
        finally:
            self._stop.set()
            self._thread.join(timeout=5)
            self.gateway.close()

    def leader_journal(self) -> journal_etcd.EtcdJournal:
        """The shared journal, every write fenced by this replica's lease."""
        return journal_etcd.EtcdJournal(
            self.gateway, self.target, fence=self.election.fence, on_lost=self.election.lost
        )

    def reader(self) -> journal_etcd.EtcdJournal:
        """The shared journal as a follower reads it, loaded again (what the leader wrote)."""
        if self._reader is None:
            self._reader = journal_etcd.EtcdJournal(self.gateway, self.target)
        else:
            self._reader.refresh()
        return self._reader

    def publish(self, revision: str | None) -> dict[str, object]:
        """Say this replica's revision in force under `PREFIX/replicas/`; what all replicas say.

        For `drctl status`: the leader acts on its own revision, and shows a
        follower's when they differ (each watches a clone of its own).
        """
        said: dict[str, object] = {"revisionInForce": revision, "leading": self.leading}
        peers: dict[str, object] = {}
        with contextlib.suppress(EtcdUnavailableError):
            if said != self._published:
                self.gateway.put(f"{self.target.prefix}/replicas/{self.identity}", json.dumps(said))
                self._published = said
            for kv in self.gateway.range_prefix(f"{self.target.prefix}/replicas/"):
                name = etcd_gateway.key_of(kv).rpartition("/")[2]
                peers[name] = json.loads(etcd_gateway.value_of(kv)).get("revisionInForce")
        return {
            "identity": self.identity,
            "lock": str(self.target),
            "leading": self.leading,
            "leader": self.election.holder,
            "revisionsInForce": peers,
        }

    def _changed(self, leading: bool, holder: str | None, transition: bool) -> None:
        self._metrics.set_leader(leading)
        self._metrics.set_leader_seen(holder, transition=transition)
        if leading:
            log.info(
                "leading: holding the lease %s (fencing token %d)",
                self.election.key,
                self.election.token,
                extra={"event": "lease_acquired", "token": self.election.token},
            )
        elif holder is not None:
            log.info(
                "following %s, which holds the lease %s",
                holder,
                self.election.key,
                extra={"event": "lease_following", "holder": holder},
            )
        else:
            why = self.election.why_down or "it was given up"
            log.warning(
                "stepped down from the lease %s: %s; jobs running in the fabric run on",
                self.election.key,
                why,
                extra={"event": "lease_lost", "error": why},
            )
        self._wake.set()

    def _renew_failed(self) -> None:
        self._metrics.count_renew_failure()
        self._wake.set()
