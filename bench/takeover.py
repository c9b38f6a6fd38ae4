"""Takeover times of `drctl run --lock etcd://...` replicas, the fencing window, the journal's size.

Run by hand: `.venv/bin/python bench/takeover.py [--kills 10] [--ttl 2] [--actions 10000]`.

1. Takeover: two real `drctl run` replicas on one real etcd member and one
   simulated fabric (tests/e2e/replicas.py); the leader is killed with
   SIGKILL `--kills` times, mid-failover, and started again to follow; each
   time the seconds from the kill to the other serving `drctl_leader 1`.
   Prints the median and the max, and the count of operations issued twice
   (must be 0).
2. Fencing window: in this process, an executor leading on the etcd lease
   with the shared journal starts `--starts` operations on a simulator; the
   window is from the lease's last local check (`Election.check`) to the
   provider's `start` being entered, the part no fabric can fence. Prints
   its median, p99 and max, and the margin the deadline keeps (TTL/5).
3. Journal size: `--actions` actions recorded as intent, started and
   outcome in etcd (three writes each); etcd's dbSize before and after,
   then after compaction and defragmentation, per 10,000 actions.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import etcdproc
from e2e import replicas
from e2e.harness import Site, three_tier, wait_until

from reconciler.core import plan
from reconciler.core.state import Operation
from reconciler.engine import etcd_gateway, journal, journal_etcd
from reconciler.engine.lease import etcd as election_


def takeovers(root: Path, kills: int) -> tuple[list[float], dict[str, int]]:
    (root / "site").mkdir()
    site = Site(root / "site", timings={"plannedFailover": 1.5, "reverseReplicate": 0.6})
    with etcdproc.running(root / "etcd", 1) as cluster:
        pair = replicas.pair(site, cluster.url())
        times = []
        try:
            for r in pair:
                r.start()
            leader = replicas.leader_of(pair)
            where = "ams"
            for _ in range(kills):
                where = "rtm" if where == "ams" else "ams"
                site.commit(f"finance to {where}", {"finance.yaml": three_tier(where)})
                replicas.pull_all(pair)
                wait_until(
                    "a failover to run",
                    lambda: any(j["state"] == "Running" for j in site.jobs()),
                    timeout=30,
                )
                times.append(replicas.time_takeover(pair, leader, timeout=60))
                survivor = next(r for r in pair if r is not leader)
                wait_until("converged", lambda s=survivor, w=where: s.converged_at(w), 120)
                leader.start()
                leader = survivor
            found = replicas.duplicates(site, cluster.url())
        finally:
            for r in pair:
                if r.daemon is not None:
                    r.daemon.kill()
                    r.daemon.wait()
    return times, found


def fencing_window(root: Path, starts: int, ttl: int) -> list[float]:
    """Seconds from the last lease check to the provider call, for each start."""
    from reconciler.engine import execute, fabrics
    from reconciler.fabric.sim import provider as sim
    from reconciler.kits.clock import WallClock

    (root / "window").mkdir()
    site = Site(root / "window")
    windows: list[float] = []
    with etcdproc.running(root / "etcd-window", 1) as cluster:
        target = etcd_gateway.parse_target(cluster.url())
        gateway = etcd_gateway.Gateway(target.endpoints)
        election = election_.Election(gateway, target.prefix, "bench", ttl)
        election.tick()
        checked = [0.0]

        def check() -> None:
            election.check()
            checked[0] = time.perf_counter()

        class Timed(sim.SimFabric):
            def start(self, request: object) -> str:  # type: ignore[override]
                windows.append(time.perf_counter() - checked[0])
                return super().start(request)  # type: ignore[arg-type]

        wall = WallClock()
        provider = Timed(site.state, wall)
        history = journal_etcd.EtcdJournal(gateway, target, election.fence, election.lost)
        executor = execute.Executor(
            fabrics.Fabrics.of(provider, site.state), history, wall, check_lock=check
        )
        vms = ["sql01", "app01", "app02", "web01", "web02", "hr-web"]
        while len(windows) < starts:
            for vm in vms:
                action = plan.Action("finance", vm, Operation.STOP_VM, "ams")
                executor._start(action, _desired(site), "bench", "embedded", wall.now())
                election.tick()
        gateway.close()
    return windows[:starts]


def _desired(site: Site) -> object:
    from reconciler.gitops import specdir

    return specdir.load_specs(site.specs)


def journal_size(root: Path, actions: int) -> tuple[int, int, int, float]:
    """dbSize before, after the actions, after compaction and defrag; seconds per action."""
    with etcdproc.running(root / "etcd-size", 1) as cluster:
        target = etcd_gateway.parse_target(cluster.url())
        gateway = etcd_gateway.Gateway(target.endpoints)
        election = election_.Election(gateway, target.prefix, "bench", 60)
        election.tick()
        history = journal_etcd.EtcdJournal(gateway, target, election.fence, election.lost)
        before = int(gateway.status()["dbSize"])
        at = datetime.now(UTC)
        began = time.perf_counter()
        for n in range(actions):
            if n % 500 == 0:
                election.tick()
            action = plan.Action("finance", f"vm{n % 1000:04d}", Operation.COMMIT, "rtm")
            entry = history.record_intent(action, "0123456789abcdef0123456789abcdef01234567", at)
            history.record_started(entry.id, f"job-{n:06d}", at)
            history.record_outcome(entry.id, journal.SUCCEEDED, at)
        per_action = (time.perf_counter() - began) / actions
        after = int(gateway.status()["dbSize"])
        history.compact()
        gateway.defragment()
        compacted = int(gateway.status()["dbSize"])
        gateway.close()
    return before, after, compacted, per_action


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--starts", type=int, default=300)
    parser.add_argument("--ttl", type=int, default=replicas.TTL, help="the replicas' --lease-ttl")
    parser.add_argument("--actions", type=int, default=10000)
    args = parser.parse_args()
    replicas.TTL = args.ttl
    with tempfile.TemporaryDirectory(prefix="drctl-takeover-") as root:
        times, found = takeovers(Path(root), args.kills)
        print(
            f"takeover: {len(times)} SIGKILLs of the leader mid-failover, --lease-ttl {args.ttl}: "
            f"median {statistics.median(times):.2f} s, max {max(times):.2f} s "
            f"(all: {', '.join(f'{t:.2f}' for t in times)}); issued twice etc.: {found}"
        )
        windows = sorted(fencing_window(Path(root), args.starts, args.ttl))
        p99 = windows[int(0.99 * (len(windows) - 1))]
        print(
            f"fencing window (last lease check -> provider call), {len(windows)} starts: median "
            f"{statistics.median(windows) * 1e6:.0f} us, p99 {p99 * 1e6:.0f} us, max "
            f"{windows[-1] * 1e6:.0f} us; the deadline keeps a margin of {args.ttl / 5:.1f} s "
            f"(TTL/5) before etcd can expire the lease"
        )
        before, after, compacted, per_action = journal_size(Path(root), args.actions)
        scale = 10000 / args.actions
        print(
            f"journal in etcd: {args.actions} actions (intent, started, outcome), "
            f"{per_action * 1e3:.2f} ms per action; dbSize {before / 1e6:.2f} MB -> "
            f"{after / 1e6:.2f} MB ({(after - before) * scale / 1e6:.2f} MB per 10,000 actions), "
            f"{compacted / 1e6:.2f} MB after compaction and defrag "
            f"({(compacted - before) * scale / 1e6:.2f} MB per 10,000 actions)"
        )
    return 0 if all(v == 0 for v in found.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
