"""What scrapers of /metrics cost a running daemon: pass time, a move, and scrape latency.

Run: `.venv/bin/python bench/scrape_load.py [--vms 2000] [--scrapers 16]
[--baseline-tree DIR]`.

A real `drctl run` (a subprocess, on the simulated fabric) acts on a spec of
two plans: `bulk`, VMS VMs that stay where they are and make each scrape
heavy (about 400 bytes of exposition per VM), and `move`, 20 VMs that each
trial fails over to the other site and back. With no scraper, then with
SCRAPERS threads scraping /metrics back to back, it measures in the same run:

- the daemon's own pass time (`drctl_reconcile_duration_seconds`, sum over
  count) while nothing moves, and the CPU the daemon process uses meanwhile;
- the time a move takes, from the pull of its commit to the plan converged
  (`drctl_convergence_duration_seconds`), median of the trials;
- the latency of a probe scrape made every second beside the scrapers.

`--baseline-tree DIR` runs the same against the daemon of another checkout
of drctl (say one before the bounded endpoint), in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

from harness import TIMINGS, free_port, git, wait_until  # noqa: E402 (the path above first)

MOVING = 20
TRIALS = 3
STEADY_SECONDS = 10.0

PLAN = """\
apiVersion: drctl/v1
kind: RecoveryPlan
metadata: {{name: {name}}}
spec:
  sites: [ams, rtm]
  defaults: {{activeSite: {site}, replication: {site}->{other}}}
  policy: {{maxParallel: {parallel}, commitAfterSeconds: 0}}
  vms:
{vms}
"""


def plan_text(name: str, vms: list[str], site: str, parallel: int) -> str:
    other = "rtm" if site == "ams" else "ams"
    lines = "\n".join(f"    - name: {vm}" for vm in vms)
    return PLAN.format(name=name, site=site, other=other, parallel=parallel, vms=lines)


class Daemon:
    """A spec repository, a watched clone, a simulated fabric and `drctl run` on them."""

    def __init__(self, root: Path, vms: int, tree: Path) -> None:
        self.root, self.tree = root, tree
        self.bulk = [f"bulk{i:06d}" for i in range(vms)]
        self.moving = [f"move{i:03d}" for i in range(MOVING)]
        upstream = root / "upstream"
        (upstream / "specs").mkdir(parents=True)
        git(upstream, "init", "-q", "-b", "main")
        (upstream / "specs" / "bulk.yaml").write_text(plan_text("bulk", self.bulk, "ams", 10))
        self.upstream = upstream
        self.write_move("ams")
        git(upstream, "add", "-A")
        git(upstream, "commit", "-qm", "bulk and move at ams")
        git(root, "clone", "-q", str(upstream), "watched")
        self.watched = root / "watched"
        self.state = root / "state"
        inventory = {
            "sites": ["ams", "rtm"],
            "vms": [
                {"name": n, "activeSite": "ams", "replication": "ams->rtm"}
                for n in self.bulk + self.moving
            ],
            "timings": TIMINGS,
        }
        (root / "inventory.json").write_text(json.dumps(inventory))
        self.drctl("fabric", "init", str(root / "inventory.json"))
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(self.tree)}

    def drctl(self, *args: str) -> None:
        subprocess.run(
            [sys.executable, "-m", "reconciler", *args, "--state-dir", str(self.state)],
            env=self.env(),
            cwd=self.tree,  # `-m reconciler` looks in the working directory first
            check=True,
            capture_output=True,
        )

    def write_move(self, site: str) -> None:
        text = plan_text("move", self.moving, site, MOVING)
        (self.upstream / "specs" / "move.yaml").write_text(text)

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        with (self.root / "daemon.log").open("ab") as log:
            self.process = subprocess.Popen(
                [
                    *(sys.executable, "-m", "reconciler", "run", str(self.watched / "specs")),
                    *("--state-dir", str(self.state), "--metrics-addr", f"127.0.0.1:{self.port}"),
                    *("--poll-interval", "0.05", "--resync", "1", "--log-format", "json"),
                ],
                env=self.env(),
                cwd=self.tree,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_until("the first pass", lambda: self.sample("drctl_plan_converged", "move") == 1)
            yield
        finally:
            self.process.terminate()
            self.process.wait(timeout=30)

    def scrape(self, timeout: float = 60.0) -> bytes:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request("GET", "/metrics")
            return connection.getresponse().read()
        finally:
            connection.close()

    def sample(self, name: str, plan: str | None = None) -> float | None:
        try:
            text = self.scrape().decode()
        except OSError:
            return None
        key = f'{name}{{plan="{plan}"}} ' if plan else f"{name} "
        for line in text.splitlines():
            if line.startswith(key):
                return float(line.split()[-1])
        return None

    def move(self, site: str) -> float:
        """Commit and pull a move of plan `move` to `site`; seconds until it converged."""
        before = self.sample("drctl_convergence_duration_seconds_count", "move") or 0.0
        total = self.sample("drctl_convergence_duration_seconds_sum", "move") or 0.0
        self.write_move(site)
        git(self.upstream, "commit", "-qam", f"move to {site}")
        git(self.watched, "pull", "-q", "--ff-only")
        wait_until(
            "the move to converge",
            lambda: (self.sample("drctl_convergence_duration_seconds_count", "move") or 0) > before,
            timeout=300,
        )
        after = self.sample("drctl_convergence_duration_seconds_sum", "move") or 0.0
        return after - total


class Scrapers:
    """COUNT threads scraping back to back, and a probe every second timing its scrape."""

    def __init__(self, daemon: Daemon, count: int) -> None:
        self.daemon, self.stop = daemon, threading.Event()
        self.threads = [threading.Thread(target=self._scrape, daemon=True) for _ in range(count)]
        self.probe = threading.Thread(target=self._probe, daemon=True)
        self.latencies: list[float] = []
        self.scrapes = 0

    def _scrape(self) -> None:
        while not self.stop.is_set():
            with contextlib.suppress(OSError, http.client.HTTPException):
                self.daemon.scrape()
                self.scrapes += 1

    def _probe(self) -> None:
        while not self.stop.wait(1.0):
            began = time.perf_counter()
            with contextlib.suppress(OSError, http.client.HTTPException):
                self.daemon.scrape()
                self.latencies.append(time.perf_counter() - began)

    def __enter__(self) -> Scrapers:
        for t in [*self.threads, self.probe]:
            t.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        for t in [*self.threads, self.probe]:
            t.join(timeout=60)


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of process `pid` so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def steady(daemon: Daemon, seconds: float) -> tuple[float, float]:
    """The daemon's mean pass time over `seconds` of it, and the share of a core it used."""
    assert daemon.process is not None
    name = "drctl_reconcile_duration_seconds"
    total0, count0 = daemon.sample(f"{name}_sum") or 0.0, daemon.sample(f"{name}_count") or 0.0
    cpu0, began = cpu_seconds(daemon.process.pid), time.monotonic()
    time.sleep(seconds)
    cpu1, ended = cpu_seconds(daemon.process.pid), time.monotonic()
    total1, count1 = daemon.sample(f"{name}_sum") or 0.0, daemon.sample(f"{name}_count") or 0.0
    return (total1 - total0) / max(1.0, count1 - count0), (cpu1 - cpu0) / (ended - began)


def measure(tree: Path, vms: int, scrapers: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        daemon = Daemon(Path(tmp), vms, tree)
        with daemon.running(), Scrapers(daemon, scrapers) as load:
            size = len(daemon.scrape())
            pass_time, cpu = steady(daemon, STEADY_SECONDS)
            moves = [daemon.move("rtm" if n % 2 == 0 else "ams") for n in range(TRIALS)]
        ordered = sorted(load.latencies) or [float("nan")]
        return {
            "exposition MB": size / 1e6,
            "pass s": pass_time,
            "daemon CPU (cores)": cpu,
            "move s": statistics.median(moves),
            "probe p50 s": statistics.median(ordered),
            "probe p90 s": ordered[max(0, round(0.9 * len(ordered)) - 1)],
            "scrapes/s": load.scrapes / (STEADY_SECONDS + sum(moves)),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vms", type=int, default=2000)
    parser.add_argument("--scrapers", type=int, default=16)
    parser.add_argument("--baseline-tree", type=Path)
    args = parser.parse_args()
    trees = [("this tree", ROOT)]
    if args.baseline_tree is not None:
        trees.append((f"baseline {args.baseline_tree}", args.baseline_tree.resolve()))
    rows = []
    for name, tree in trees:
        for scrapers in (0, args.scrapers):
            figures = measure(tree, args.vms, scrapers)
            rows.append((f"{name}, {scrapers} scrapers", figures))
            print(rows[-1], file=sys.stderr, flush=True)
    keys = list(rows[0][1])
    print(f"{args.vms} bulk VMs + {MOVING} moving, {TRIALS} moves per row")
    print("| daemon | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for name, figures in rows:
        print(f"| {name} | " + " | ".join(f"{figures[k]:.3g}" for k in keys) + " |")


if __name__ == "__main__":
    main()
