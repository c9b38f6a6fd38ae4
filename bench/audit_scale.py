"""How `drctl audit` scales with the length of the history, against a naive baseline run alongside.

Run: `.venv/bin/python bench/audit_scale.py` (10,000 commits), or for a quick
look `.venv/bin/python bench/audit_scale.py --commits 2000 --baseline-commits 200`.

Setup (timed apart): `git fast-import` builds a repository whose
specs/finance.yaml is one RecoveryPlan of 20 VMs (defaults activeSite ams;
three groups); each of N commits flips one VM's activeSite between ams and
rtm (a VM drawn at random, seeded) and notes its change ticket in a comment,
so that every commit is a distinct blob (the worst case for the audit's blob
cache) and changes exactly one VM. A journal gets, per commit, a
PlannedFailover of that VM under that revision and its convergence, written
straight into journal.db in one transaction.

Measured (medians of --runs):
- in process: `audit.audit_history` over the whole history, with the journal,
  and its parts: the `git log --raw` (`history.spec_commits`) and the one
  `git cat-file --batch` of every blob (`history.read_blobs`);
- the whole `drctl audit SPECS --output json --state-dir DIR` process: wall
  time and peak RSS of that child alone (`os.wait4`), stdout to a file;
- for the record, DeepDiff run on the one changed VM of each commit, where
  the audit (`difference.compare_fields`) runs it once per distinct pair of
  states: the output gives both, and how many pairs that was.

The baseline, in the same run: `git log --format=%H` once, then one
`git show <sha>:specs/finance.yaml` per commit per blob (the obvious script),
each revision validated with the same `spec.load_text` and compared with
DeepDiff of the whole {vm: state} dict of the previous one. It runs on the
first --baseline-commits commits only and is extrapolated linearly to N
(both the git and the diff cost grow linearly with the commits); the output
says so.

The target (the issue): 10,000 commits in a few seconds.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from measure import median_seconds, run_process

from reconciler.core import spec
from reconciler.engine import journal
from reconciler.engine import state_dir as layout
from reconciler.gitops import audit, history
from reconciler.kits import difference

VMS = 20
EPOCH = 1_790_000_000  # 2026-09-21, one commit a minute from there
HEADER = """\
apiVersion: drctl/v1
kind: RecoveryPlan
metadata: {name: finance}
spec:
  sites: [ams, rtm]
  defaults: {activeSite: ams}
  groups:
    - {name: db, vms: [vm00, vm01, vm02]}
    - {name: app, after: [db], vms: [vm03, vm04, vm05, vm06]}
    - {name: web, after: [app], vms: [vm07, vm08, vm09]}
  vms:
"""


def plan_text(sites: list[str], ticket: int) -> str:
    lines = [f"# last change: CHG-{ticket:05d}\n", HEADER]
    for i, site in enumerate(sites):
        lines.append(f"    - name: vm{i:02d}\n")
        if site != "ams":
            lines.append(f"      activeSite: {site}\n")
    return "".join(lines)


def build_repo(root: Path, commits: int) -> Path:
    """A git repository with `commits` commits, each moving one VM; returns specs/."""
    subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True)
    sites = ["ams"] * VMS
    chunks: list[bytes] = []
    draw = random.Random(7)  # noqa: S311 (test data, not security)
    for n in range(commits):
        vm = draw.randrange(VMS) if n else 0
        sites[vm] = "rtm" if sites[vm] == "ams" else "ams"
        content = plan_text(sites, n).encode()
        message = f"Move vm{vm:02d} to {sites[vm]}\n".encode()
        who = f"ops{n % 7} <ops{n % 7}@example.com> {EPOCH + 60 * n} +0000"
        chunks += [
            b"commit refs/heads/main\n",
            f"mark :{n + 1}\nauthor {who}\ncommitter {who}\n".encode(),
            f"data {len(message)}\n".encode(),
            message,
            f"from :{n}\n".encode() if n else b"",
            b"M 100644 inline specs/finance.yaml\n",
            f"data {len(content)}\n".encode(),
            content,
            b"\n",
        ]
    subprocess.run(["git", "fast-import", "--quiet"], cwd=root, input=b"".join(chunks), check=True)
    subprocess.run(["git", "reset", "-q", "--hard", "main"], cwd=root, check=True)
    return root / "specs"


def build_journal(state_dir: Path, repo: Path) -> None:
    """Per commit: a PlannedFailover of the VM it moved, and its convergence."""
    journal.Journal(state_dir).close()  # the schema, as drctl writes it
    log = subprocess.run(
        ["git", "log", "--reverse", "--format=%H %s"],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    actions, converged = [], []
    for n, line in enumerate(log):
        sha, subject = line.split(" ", 1)
        vm = subject.split()[1]  # "Move vmNN to SITE"
        at = EPOCH + 60 * n
        started, finished = iso(at + 5), iso(at + 50)
        actions.append(
            (
                "finance",
                vm,
                "PlannedFailover",
                "rtm",
                sha,
                iso(at + 1),
                started,
                finished,
                f"job-{n}",
                journal.SUCCEEDED,
                0.0,
            )
        )
        converged.append((sha, "finance", vm, iso(at + 55)))
    db = sqlite3.connect(layout.journal_path(state_dir))
    with db:
        db.executemany(
            "INSERT INTO actions (plan, vm, operation, target_site, revision, intended_at, "
            "started_at, finished_at, job_id, result, data_loss_seconds) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            actions,
        )
        db.executemany("INSERT INTO convergences VALUES (?, ?, ?, ?)", converged)
    db.close()


def iso(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(epoch))


def drctl_command() -> list[str]:
    script = shutil.which("drctl", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "reconciler"]


def deepdiff_changed(entries: list[audit.AuditEntry]) -> float:
    """Seconds DeepDiff takes on the changed VM of each entry, one call per entry."""
    from deepdiff import DeepDiff

    pairs = []
    for entry in entries:
        same = {"allowDataLoss": False, "group": "g", "plan": entry.plan}
        old = {**same, **{f: pair[0] for f, pair in entry.change.items()}}
        new = {**same, **{f: pair[1] for f, pair in entry.change.items()}}
        pairs.append((old, new))
    began = time.perf_counter()
    for old, new in pairs:
        assert DeepDiff(old, new, view="tree", threshold_to_diff_deeper=0)
    return time.perf_counter() - began


def baseline(repo: Path, limit: int) -> float:
    """Seconds for the first `limit` commits the naive way (see the module docstring)."""
    from deepdiff import DeepDiff

    began = time.perf_counter()
    shas = subprocess.run(
        ["git", "log", "--reverse", "--format=%H", "--", "specs"],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()[:limit]
    previous: dict[str, dict[str, object]] = {}
    changed = 0
    for sha in shas:
        text = subprocess.run(
            ["git", "show", f"{sha}:specs/finance.yaml"],
            cwd=repo,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        state = {
            vm.name: {
                "activeSite": vm.active_site,
                "replication": vm.replication_text,
                "allowDataLoss": vm.allow_data_loss,
                "group": vm.group,
                "plan": vm.plan,
            }
            for p in spec.load_text("specs/finance.yaml", text)
            for vm in p.vms
        }
        diff = DeepDiff(previous, state)
        changed += bool(diff)
        previous = state
    assert changed == len(shas)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commits", type=int, default=10_000)
    parser.add_argument("--baseline-commits", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    n = args.commits

    with tempfile.TemporaryDirectory(prefix="drctl-audit-bench-") as tmp:
        root = Path(tmp)
        began = time.perf_counter()
        specs = build_repo(root / "repo", n)
        built = time.perf_counter() - began
        state_dir = root / "state"
        build_journal(state_dir, root / "repo")
        print(
            f"setup: {n} commits with git fast-import in {built:.2f} s, journal of "
            f"{n} actions and {n} convergences"
        )

        entries = audit.audit_history(specs, state_dir)
        # The first commit adds 20 VMs and moves one of them; each later commit moves one.
        assert len(entries) == VMS + n - 1, len(entries)
        last = entries[-1].to_json()
        assert last["actions"] and last["convergedAt"], last
        deepdiff_s = deepdiff_changed(entries[VMS:])
        pairs = difference._compare.cache_info().currsize

        repo = history.open_repo(specs)
        log_s = median_seconds(args.runs, lambda: history.spec_commits(repo, "HEAD"))
        commits = history.spec_commits(repo, "HEAD")
        blobs = [b for c in commits for _, b in c.changes if b]
        cat_s = median_seconds(args.runs, lambda: history.read_blobs(repo, blobs))
        total_s = median_seconds(args.runs, lambda: audit.audit_history(specs, state_dir))

        argv = [
            *drctl_command(),
            "audit",
            str(specs),
            "--output",
            "json",
            "--state-dir",
            str(state_dir),
        ]
        output = root / "audit.json"
        results = [run_process(argv, output) for _ in range(args.runs)]
        process_s = statistics.median(s for s, _ in results)
        process_mb = max(mb for _, mb in results)
        printed = json.loads(output.read_text())
        assert len(printed) == len(entries)

        limit = min(args.baseline_commits, n)
        naive_s = baseline(root / "repo", limit)
        naive_n = naive_s * n / limit

    print(
        f"drctl audit over {n} commits ({VMS}-VM plan, one VM changed per commit), "
        f"medians of {args.runs}:"
    )
    print(f"  git log --raw (history.spec_commits)      {log_s:7.3f} s")
    print(f"  git cat-file --batch of {len(blobs)} blobs  {cat_s:7.3f} s")
    print(f"  audit_history in process (all of it)      {total_s:7.3f} s")
    print(
        f"  drctl audit --output json (process)       {process_s:7.3f} s, "
        f"peak RSS {process_mb:.0f} MB, {len(printed)} entries"
    )
    print(
        f"  DeepDiff on the changed VM of each commit {deepdiff_s:7.3f} s "
        f"(the audit runs it once per distinct pair of states: {pairs} pairs)"
    )
    print(
        f"baseline (git show per commit, DeepDiff of whole states): {naive_s:.2f} s for "
        f"{limit} commits, extrapolated linearly to {n}: {naive_n:.1f} s "
        f"({naive_n / total_s:.0f}x the in-process audit)"
    )


if __name__ == "__main__":
    main()
