"""Whether a one-VM commit acts as fast in a 100,000-VM repository as in a one-VM one (issue 17).

Run: `.venv/bin/python bench/scale_reaction.py` (1k, 10k and 100k VMs, 10
trials each), or for a quick look `... --sizes 1000,10000 --trials 3`.
`--before DIR` runs the same measurements, in the same run, with the daemon
imported from another tree of this repository (e.g. `git archive main | tar
-x -C DIR`), so that a change is measured against what it replaces.

For each size N, in a temporary directory: a git repository of N VMs in
N/2,000 RecoveryPlans of 2,000 name-only entries, one file each
(`specs/plan-000.yaml`, ...), every VM at ams replicating ams->rtm; a
simulated fabric (`drctl fabric init`) where they all run so; a clone the
daemon watches; and a real `drctl run` (a subprocess, JSON logs, the e2e
tests' quick polls) on it. Each trial commits upstream a change of one
line that moves one VM of the first plan to the other site, runs `git pull`
in the watched clone, and measures from the start of the pull to the
`ts` of the daemon's first `action_started` log line for that VM (and, on
the way, to its `revision_in_force` line); then waits for the VM's
`vm_converged` before the next trial. After the trials, of the same daemon:
the /metrics scrape (time and size, median of 3), the whole `drctl status
--output json` process (median of 3), the daemon's peak RSS (VmHWM in
/proc/PID/status), and the time prometheus-client's `generate_latest`
takes to render the same series (the scraped text parsed into a collector),
the baseline the issue sets for a scrape.

The baseline, measured in the same run: the same with one plan of one VM.
The table prints each figure and its ratio to the baseline's.

The goals (the issue) at 100k VMs: reaction within 3x of the one-VM figure,
a scrape at least 5x faster than `generate_latest` of the same series,
`drctl status --output json` under 1 s, peak RSS under 400 MB.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

from harness import ENV, TIMINGS, daemon_command, free_port, git  # noqa: E402 (the path above)
from measure import run_process  # noqa: E402

SIZES = (1_000, 10_000, 100_000)
PER_PLAN = 2_000
TARGET_SIZE = 100_000
GOAL_REACTION_RATIO = 3.0
GOAL_SCRAPE_SPEEDUP = 5.0
GOAL_STATUS_SECONDS = 1.0
GOAL_RSS_MB = 400.0


@dataclass
class Figures:
    """What one daemon showed: seconds (medians), bytes and megabytes."""

    vms: int
    plans: int
    tree: str
    reactions: list[float] = field(default_factory=list)
    in_force: list[float] = field(default_factory=list)
    first_pass: float = 0.0
    scrape: float = 0.0
    scrape_bytes: int = 0
    generate_latest: float = 0.0
    status: float = 0.0
    status_bytes: int = 0
    rss_mb: float = 0.0

    @property
    def reaction(self) -> float:
        return statistics.median(self.reactions)


# ---------------------------------------------------------------------------
# The inputs.


def vm_name(i: int) -> str:
    return f"vm{i:06d}"


def plan_text(plan: int, first: int, count: int, moved: dict[str, str]) -> str:
    """Plan `plan` of VMs first..first+count-1; `moved` VMs overridden to that site."""
    lines = [
        "apiVersion: drctl/v1",
        "kind: RecoveryPlan",
        f"metadata: {{name: plan-{plan:03d}}}",
        "spec:",
        "  sites: [ams, rtm]",
        "  defaults: {activeSite: ams, replication: ams->rtm}",
        "  policy: {commitAfterSeconds: 0}",
        "  vms:",
    ]
    for i in range(first, first + count):
        name = vm_name(i)
        site = moved.get(name)
        if site is None:
            lines.append(f"    - name: {name}")
        else:
            other = "rtm" if site == "ams" else "ams"
            lines.append(
                f"    - {{name: {name}, activeSite: {site}, replication: {site}->{other}}}"
            )
    return "\n".join(lines) + "\n"


def layout(count: int) -> list[tuple[int, int]]:
    """(first VM, how many) of each plan: N/2,000 plans of 2,000, or one plan of N."""
    per = min(PER_PLAN, count)
    return [(first, min(per, count - first)) for first in range(0, count, per)]


def drctl(*args: str, python_path: str | None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        env=_env(python_path),
        capture_output=True,
        check=True,
        timeout=600,
    )


def _env(python_path: str | None) -> dict[str, str]:
    env = dict(ENV)
    if python_path is not None:
        env["PYTHONPATH"] = python_path
    return env


class Site:
    """An upstream spec repository of `count` VMs, the clone a daemon watches, a fabric."""

    def __init__(self, root: Path, count: int, python_path: str | None) -> None:
        self.root = root
        self.python_path = python_path
        self.plans = layout(count)
        self.upstream = root / "upstream"
        (self.upstream / "specs").mkdir(parents=True)
        git(self.upstream, "init", "-q", "-b", "main")
        for plan, (first, n) in enumerate(self.plans):
            (self.upstream / "specs" / f"plan-{plan:03d}.yaml").write_text(
                plan_text(plan, first, n, {})
            )
        git(self.upstream, "add", "-A")
        git(self.upstream, "commit", "-qm", f"{count} VMs at ams")
        git(root, "clone", "-q", str(self.upstream), "watched")
        self.specs = root / "watched" / "specs"
        self.state = root / "state"
        inventory = {
            "sites": ["ams", "rtm"],
            "vms": [
                {"name": vm_name(i), "activeSite": "ams", "replication": "ams->rtm"}
                for i in range(count)
            ],
            "timings": TIMINGS,
        }
        (root / "inventory.json").write_text(json.dumps(inventory))
        drctl(
            "fabric",
            "init",
            str(root / "inventory.json"),
            "--state-dir",
            str(self.state),
            python_path=python_path,
        )
        self.port = free_port()
        self.log = root / "daemon.log"
        self.daemon: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        """Start `drctl run`; the seconds until its first revision is in force and converged."""
        began = time.time()
        with self.log.open("ab") as out:
            self.daemon = subprocess.Popen(
                daemon_command(self.specs, self.state, self.port),
                stdout=out,
                stderr=subprocess.STDOUT,
                env=_env(self.python_path),
            )
        tail = LogTail(self.log)
        tail.wait(lambda e: e.get("event") == "revision_in_force", timeout=600)
        tail.wait(lambda e: e.get("event") == "vm_converged", timeout=600)
        return time.time() - began

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.terminate()
            self.daemon.wait(timeout=60)
            self.daemon = None

    def peak_rss_mb(self) -> float:
        assert self.daemon is not None
        for line in Path(f"/proc/{self.daemon.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmHWM")

    def move(self, vm: str, site: str) -> tuple[float, float]:
        """Commit and pull a move of `vm` to `site`: seconds from the pull to its
        revision in force, and to its first operation started; waits for it to converge."""
        first, n = self.plans[0]
        (self.upstream / "specs" / "plan-000.yaml").write_text(plan_text(0, first, n, {vm: site}))
        git(self.upstream, "commit", "-qam", f"move {vm} to {site}")
        tail = LogTail(self.log, from_end=True)
        pulled = time.time()
        git(self.root / "watched", "pull", "-q", "--ff-only")
        forced = tail.wait(lambda e: e.get("event") == "revision_in_force", timeout=600)
        started = tail.wait(
            lambda e: e.get("event") == "action_started" and e.get("vm") == vm, timeout=600
        )
        tail.wait(lambda e: e.get("event") == "vm_converged" and e.get("vm") == vm, timeout=600)
        return _ts(forced) - pulled, _ts(started) - pulled

    def scrape(self) -> bytes:
        """One /metrics scrape; a cut-off answer is said and asked again (at most 3 times)."""
        url = f"http://127.0.0.1:{self.port}/metrics"
        for attempt in range(3):
            try:
                with urllib.request.urlopen(url, timeout=120) as response:
                    return bytes(response.read())
            except http.client.IncompleteRead as cut:
                print(
                    f"/metrics answer cut off ({len(cut.partial):,} bytes), attempt {attempt + 1}"
                )
        raise AssertionError("/metrics cut off three times")


def _ts(entry: dict[str, Any]) -> float:
    return datetime.fromisoformat(entry["ts"]).timestamp()


class LogTail:
    """The daemon's JSON log lines, read on from where this tail started."""

    def __init__(self, path: Path, from_end: bool = False) -> None:
        self.path = path
        self.offset = path.stat().st_size if from_end and path.exists() else 0
        self.partial = b""

    def entries(self) -> Iterator[dict[str, Any]]:
        with self.path.open("rb") as f:
            f.seek(self.offset)
            data = f.read()
        self.offset += len(data)
        *lines, self.partial = (self.partial + data).split(b"\n")
        for line in lines:
            if line.startswith(b"{"):
                yield json.loads(line)

    def wait(self, check: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for entry in self.entries():
                if entry.get("level") == "error" and entry.get("event") == "spec_invalid":
                    raise AssertionError(f"the daemon refused the specs: {entry['msg']}")
                if check(entry):
                    return entry
            time.sleep(0.005)
        raise AssertionError(f"timed out after {timeout}s reading {self.path}")


# ---------------------------------------------------------------------------
# Measuring.


def generate_latest_seconds(text: bytes, runs: int) -> float:
    """prometheus-client rendering the scraped series itself: the issue's baseline."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    families = list(text_string_to_metric_families(text.decode()))

    class Parsed:
        def collect(self) -> Any:
            return families

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Parsed())
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        generate_latest(registry)
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def measure(count: int, trials: int, tree: str, python_path: str | None) -> Figures:
    with tempfile.TemporaryDirectory(prefix="drctl-scale-") as tmp:
        site = Site(Path(tmp), count, python_path)
        figures = Figures(count, len(site.plans), tree)
        figures.first_pass = site.start()
        try:
            vm = vm_name(0)
            for n in range(trials):
                forced, started = site.move(vm, "rtm" if n % 2 == 0 else "ams")
                figures.in_force.append(forced)
                figures.reactions.append(started)
            runs = 3
            scrapes = []
            for _ in range(runs):
                began = time.perf_counter()
                text = site.scrape()
                scrapes.append(time.perf_counter() - began)
            figures.scrape = statistics.median(scrapes)
            figures.scrape_bytes = len(text)
            figures.generate_latest = generate_latest_seconds(text, runs)
            # The other tree's drctl through env(1): run_process spawns an argv as it is.
            argv = [] if python_path is None else ["/usr/bin/env", f"PYTHONPATH={python_path}"]
            argv += [sys.executable, "-m", "reconciler", "status", str(site.specs)]
            argv += ["--output", "json", "--state-dir", str(site.state)]
            out = Path(tmp) / "status.json"
            statuses = [run_process(argv, out)[0] for _ in range(runs)]
            figures.status = statistics.median(statuses)
            figures.status_bytes = out.stat().st_size
            figures.rss_mb = site.peak_rss_mb()
        finally:
            site.stop()
    print(
        f"{tree}: {count:,} VMs in {figures.plans} plans: first pass {figures.first_pass:.1f} s, "
        f"reaction median {figures.reaction * 1000:.0f} ms, RSS {figures.rss_mb:.0f} MB",
        flush=True,
    )
    return figures


# ---------------------------------------------------------------------------
# The report.


def print_table(figures: list[Figures]) -> None:
    print()
    for tree in dict.fromkeys(f.tree for f in figures):
        print_tree(tree, [f for f in figures if f.tree == tree])


def print_tree(tree: str, rows: list[Figures]) -> None:
    """The figures of one tree's daemon: the first row is the baseline."""
    base = rows[0]
    print(f"### {tree}")
    print()
    heads = [f"{f.vms:,} VM{_s(f.vms)} / {f.plans} plan{_s(f.plans)}" for f in rows]
    print("| figure | " + " | ".join(heads) + " |")
    print("|---|" + "---:|" * len(rows))

    def row(label: str, cells: list[str]) -> None:
        print(f"| {label} | {' | '.join(cells)} |")

    def ms(pick: Callable[[Figures], float], ratio: bool = True) -> list[str]:
        return [_ms(pick(f), pick(base) if ratio and f is not base else None) for f in rows]

    row("pull -> revision in force (median)", ms(lambda f: statistics.median(f.in_force)))
    row("**pull -> first operation started (median)**", ms(lambda f: f.reaction))
    row("pull -> first operation started (max)", ms(lambda f: max(f.reactions), ratio=False))
    row("/metrics scrape", ms(lambda f: f.scrape))
    row("/metrics size", [f"{f.scrape_bytes / 1e6:.2f} MB" for f in rows])
    row("prometheus-client generate_latest, same series", ms(lambda f: f.generate_latest))
    row("`drctl status --output json` process", ms(lambda f: f.status))
    row("its output", [f"{f.status_bytes / 1e6:.2f} MB" for f in rows])
    row("daemon peak RSS (VmHWM)", [f"{f.rss_mb:.0f} MB" for f in rows])
    row("daemon start to first pass converged", [f"{f.first_pass:.1f} s" for f in rows])
    print()
    for f in rows:
        if f.vms != TARGET_SIZE:
            continue
        goals = [
            ("reaction", f.reaction / base.reaction, GOAL_REACTION_RATIO, "x the baseline"),
            ("status", f.status, GOAL_STATUS_SECONDS, "s"),
            ("peak RSS", f.rss_mb, GOAL_RSS_MB, "MB"),
        ]
        for what, value, goal, unit in goals:
            print(f"- {what}: {value:.2f} {unit} (goal < {goal}): {_met(value < goal)}")
        speedup = f.generate_latest / f.scrape if f.scrape else 0.0
        print(
            f"- scrape: {speedup:.2f}x generate_latest's speed (goal >= "
            f"{GOAL_SCRAPE_SPEEDUP}x): {_met(speedup >= GOAL_SCRAPE_SPEEDUP)}"
        )
        print()


def _ms(seconds: float, base: float | None) -> str:
    """`seconds` in milliseconds, and its ratio to `base` when one is given."""
    said = f"{seconds * 1000:.0f} ms"
    return f"{said} ({seconds / base:.1f}x)" if base else said


def _s(count: int) -> str:
    return "" if count == 1 else "s"


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        default=",".join(str(n) for n in SIZES),
        help="comma-separated VM counts (default: 1000,10000,100000); the 1-VM baseline runs too",
    )
    parser.add_argument("--trials", type=int, default=10, help="moves per size (default 10)")
    parser.add_argument(
        "--before",
        type=Path,
        help="another tree of this repository: measure its daemon too, in the same run",
    )
    args = parser.parse_args()
    sizes = [1, *(int(n) for n in args.sizes.split(",") if n.strip())]
    trees: list[tuple[str, str | None]] = []
    if args.before is not None:
        trees.append((f"before ({args.before})", str(args.before.resolve())))
    trees.append(("this tree", None))
    figures = [measure(count, args.trials, name, path) for name, path in trees for count in sizes]
    print_table(figures)


if __name__ == "__main__":
    main()
