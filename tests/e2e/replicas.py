"""Two or more `drctl run --lock etcd://...` replicas on one simulated fabric, as at two sites.

The fabric is the `harness.Site`'s (its state dir holds the simulator and no
daemon runs there); each replica has a clone of its own of the specs
repository and a state dir of its own, whose `fabric.db` is a symbolic link
to the site's (SQLite follows it, WAL and all): both replicas drive the same
fabric, as two sites drive one ASR vault. Used by tests/e2e/test_replicas.py
and bench/takeover.py.
"""

from __future__ import annotations

import signal
import time
from collections import Counter

from e2e.harness import Site, free_port, git, wait_until

from reconciler.core.state import JobState, Operation
from reconciler.engine import etcd_gateway, journal, journal_etcd
from reconciler.fabric.sim import provider as sim
from reconciler.kits.clock import WallClock

TTL = 2  # seconds: short, so that a takeover test takes a few seconds


class Replica(Site):
    """One `drctl run` replica: its own clone and state dir, the site's fabric."""

    def __init__(self, site: Site, name: str, lock: str) -> None:
        self.root = site.root / name
        self.root.mkdir()
        self.name = name
        self.lock = lock
        self.upstream = site.upstream
        git(self.root, "clone", "-q", str(site.upstream), "watched")
        self.watched = self.root / "watched"
        self.specs = self.watched / "specs"
        self.state = self.root / "state"
        self.state.mkdir()
        (self.state / "fabric.db").symlink_to(site.state / "fabric.db")
        self.metrics_port = free_port()
        self.daemon = None
        self.log = self.root / "daemon.log"

    def start(self, *extra: str, nofile: int | None = None) -> None:
        super().start("--lock", self.lock, "--lease-ttl", str(TTL), "--identity", self.name, *extra)

    def leading(self) -> bool:
        return self.metric("drctl_leader") == 1

    def kill(self) -> None:
        """kill -9: the site is lost."""
        self.stop(signal.SIGKILL)


def pair(
    site: Site, lock: str, names: tuple[str, ...] = ("ams-drctl", "rtm-drctl")
) -> list[Replica]:
    return [Replica(site, name, lock) for name in names]


def leader_of(replicas: list[Replica], timeout: float = 15.0) -> Replica:
    """The one replica that leads, once exactly one does."""

    def one() -> Replica | None:
        leading = [r for r in replicas if r.daemon is not None and r.leading()]
        return leading[0] if len(leading) == 1 else None

    found: Replica = wait_until("exactly one replica to lead", one, timeout=timeout)
    return found


def pull_all(replicas: list[Replica]) -> None:
    for replica in replicas:
        replica.pull()


def shared_entries(lock: str) -> list[journal.Entry]:
    target = etcd_gateway.parse_target(lock)
    gateway = etcd_gateway.Gateway(target.endpoints)
    try:
        return journal_etcd.EtcdJournal(gateway, target).entries()
    finally:
        gateway.close()


def duplicates(site: Site, lock: str) -> dict[str, int]:
    """What no takeover may do, counted from the fabric's jobs and the shared journal."""
    jobs = sim.SimFabric(site.state, WallClock()).list_jobs()
    entries = shared_entries(lock)
    carried = Counter(job.intent_id for job in jobs)
    steps = Counter((e.revision, e.vm, e.operation, e.target_site) for e in entries if e.job_id)
    journaled = {e.intent_id for e in entries}
    return {
        # the same intent issued twice, or a job drctl never journaled
        "duplicated": carried[None] + sum(n - 1 for i, n in carried.items() if i is not None),
        # a step issued twice under new intents
        "repeated": sum(n - 1 for n in steps.values()),
        "unjournaled": sum(1 for intent in carried if intent not in journaled),
        "cancels": sum(
            1
            for job in jobs
            if job.operation is Operation.CANCEL_FAILOVER or job.state is JobState.CANCELLED
        ),
    }


def time_takeover(replicas: list[Replica], killed: Replica, timeout: float) -> float:
    """Kill `killed` (the leader) with SIGKILL; seconds until another replica leads."""
    began = time.monotonic()
    killed.kill()
    others = [r for r in replicas if r is not killed]
    wait_until("another replica to lead", lambda: any(r.leading() for r in others), timeout)
    return time.monotonic() - began
