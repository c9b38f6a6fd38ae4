"""Real processes for end-to-end tests: a git repository of specs, a watched clone,
`drctl run` as a subprocess on the simulated fabric, and the ways an operator looks
at it (`drctl status`, `drctl fabric show`, /metrics)."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import resource
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# No commit gate (commitAfterSeconds: 0): the end-to-end tests time moves against
# their critical path; the gate is tested in tests/core/plan/test_commit_gate.py.
THREE_TIER = """\
apiVersion: drctl/v1
kind: RecoveryPlan
metadata: {name: finance}
spec:
  sites: [ams, rtm]
  defaults: {activeSite: SITE, replication: SITE->OTHER}
  policy: {maxParallel: 10, commitAfterSeconds: 0}
  groups:
    - {name: db, vms: [sql01]}
    - {name: app, after: [db], vms: [app01, app02]}
    - {name: web, after: [app], vms: [web01, web02]}
  vms:
    - name: sql01
    - name: app01
    - name: app02
    - name: web01
    - name: web02
"""

OTHER_PLAN = """\
apiVersion: drctl/v1
kind: RecoveryPlan
metadata: {name: hr}
spec:
  sites: [ams, rtm]
  defaults: {activeSite: ams, replication: ams->rtm}
  policy: {commitAfterSeconds: 0}
  vms:
    - name: hr-web
"""

# The hr plan moved to rtm: one VM (hr-web) fails over.
HR_AT_RTM = OTHER_PLAN.replace(
    "{activeSite: ams, replication: ams->rtm}", "{activeSite: rtm, replication: rtm->ams}"
)

TIMINGS = {
    "plannedFailover": 0.5,
    "unplannedFailover": 0.4,
    "commit": 0.2,
    "reverseReplicate": 0.3,
    "initialReplication": 0.6,
    "stopVM": 0.2,
    "testFailover": 0.2,
    "testFailoverCleanup": 0.1,
    "replicationInterval": 1,
}

ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "Ops",
    "GIT_AUTHOR_EMAIL": "ops@example.com",
    "GIT_COMMITTER_NAME": "Ops",
    "GIT_COMMITTER_EMAIL": "ops@example.com",
}


def three_tier(site: str) -> str:
    other = "rtm" if site == "ams" else "ams"
    return THREE_TIER.replace("SITE->OTHER", f"{site}->{other}").replace("SITE", site)


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=ENV, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)}: {done.stderr}")
    return done.stdout.strip()


def spec_repo(root: Path, files: dict[str, str]) -> Path:
    """A git repository at `root` with `files` committed under specs/; returns `root`."""
    (root / "specs").mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    for name, text in files.items():
        (root / "specs" / name).write_text(text)
    git(root, "add", "-A")
    git(root, "commit", "-q", "--allow-empty", "-m", "first specs")
    return root


def worktree_checkout(repo: Path, checkout: Path, branch: str = "dr") -> Path:
    """A `git worktree add` checkout of `repo` on a new branch: `.git` is a file there."""
    git(repo, "worktree", "add", "-q", "-b", branch, str(checkout))
    return checkout


def submodule_checkout(upstream: Path, superproject: Path, name: str = "dr") -> Path:
    """`upstream` added to a new superproject as a submodule; returns the submodule's checkout."""
    spec_repo(superproject, {})
    git(
        superproject,
        "-c",
        "protocol.file.allow=always",
        "submodule",
        "add",
        "-q",
        str(upstream),
        name,
    )
    git(superproject, "commit", "-qm", f"add the {name} submodule")
    return superproject / name


_HOLDER = """
import sys
from pathlib import Path
from reconciler.engine.lease import flock
with flock.hold(Path(sys.argv[1]), "apply"):
    print("held", flush=True)
    sys.stdin.read()
"""


@contextlib.contextmanager
def lock_held(state: Path) -> Iterator[subprocess.Popen[str]]:
    """The fabric lock of `state`, held by another real process (as an apply) in the block."""
    with subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(state)],
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    ) as held:
        assert held.stdout is not None
        assert held.stdout.readline().strip() == "held"
        try:
            yield held
        finally:
            held.communicate("")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def daemon_command(specs: Path, state: Path, metrics_port: int, *extra: str) -> list[str]:
    """`drctl run` as the end-to-end tests start it: quick polls and backoffs, JSON logs."""
    return [
        sys.executable,
        "-m",
        "reconciler",
        "run",
        str(specs),
        "--state-dir",
        str(state),
        "--metrics-addr",
        f"127.0.0.1:{metrics_port}",
        "--poll-interval",
        "0.05",
        "--retry-backoff",
        "0.2",
        "--log-format",
        "json",
        *extra,
    ]


def metrics_text(port: int) -> str:
    """What a daemon's /metrics on 127.0.0.1:`port` serves now; "" while it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            return str(response.read().decode())
    except OSError:
        return ""


def probe(port: int, path: str) -> tuple[int, str]:
    """GET http://127.0.0.1:`port``path`: (status, body); (0, "") while nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return int(response.status), str(response.read().decode())
    except urllib.error.HTTPError as answered:
        return int(answered.code), str(answered.read().decode())
    except OSError:
        return 0, ""


def wait_until(what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Poll a real process's observable state until `check` returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


class Site:
    """A git repository of specs, a clone the daemon watches, and a simulated fabric."""

    def __init__(self, root: Path, timings: dict[str, float] | None = None) -> None:
        self.root = root
        self.upstream = root / "upstream"
        self.upstream.mkdir()
        git(self.upstream, "init", "-q", "-b", "main")
        (self.upstream / "specs").mkdir()
        (self.upstream / "specs" / "finance.yaml").write_text(three_tier("ams"))
        (self.upstream / "specs" / "hr.yaml").write_text(OTHER_PLAN)
        git(self.upstream, "add", "-A")
        git(self.upstream, "commit", "-qm", "finance and hr at ams")
        git(root, "clone", "-q", str(self.upstream), "watched")
        self.watched = root / "watched"
        self.specs = self.watched / "specs"
        self.state = root / "state"
        vms = ["sql01", "app01", "app02", "web01", "web02", "hr-web"]
        inventory = {
            "sites": ["ams", "rtm"],
            "vms": [{"name": n, "activeSite": "ams", "replication": "ams->rtm"} for n in vms],
            "timings": {**TIMINGS, **(timings or {})},
        }
        (root / "inventory.yaml").write_text(json.dumps(inventory))
        self.drctl("fabric", "init", str(root / "inventory.yaml"))
        self.metrics_port = free_port()
        self.daemon: subprocess.Popen[str] | None = None
        self.log = root / "daemon.log"

    def commit(self, message: str, files: dict[str, str]) -> str:
        for name, text in files.items():
            (self.upstream / "specs" / name).write_text(text)
        git(self.upstream, "commit", "-qam", message)
        return git(self.upstream, "rev-parse", "HEAD")

    def pull(self) -> float:
        """`git pull` in the watched clone, as cron or a git-sync sidecar would; its start time."""
        started = time.time()
        git(self.watched, "pull", "-q", "--ff-only")
        return started

    def drctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "reconciler", *args, "--state-dir", str(self.state)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"drctl {' '.join(args)} exited {done.returncode}: {done.stdout}{done.stderr}"
            )
        return done

    def start(self, *extra: str, nofile: int | None = None) -> None:
        """`drctl run` on the site; `nofile` lowers its limit of open files (RLIMIT_NOFILE)."""
        with self.log.open("a") as log:
            self.daemon = subprocess.Popen(
                daemon_command(self.specs, self.state, self.metrics_port, *extra),
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )
        if nofile is not None:
            # Before the daemon opens more than its first few files.
            resource.prlimit(self.daemon.pid, resource.RLIMIT_NOFILE, (nofile, nofile))
        wait_until("the daemon to serve /metrics", self.metrics_text)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
        assert self.daemon is not None
        self.daemon.send_signal(sig)
        code = self.daemon.wait(timeout=timeout)
        self.daemon = None
        return code

    def metrics_text(self) -> str:
        return metrics_text(self.metrics_port)

    def metric(self, name_and_labels: str) -> float | None:
        for line in self.metrics_text().splitlines():
            if line.startswith(name_and_labels + " "):
                return float(line.split()[-1])
        return None

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = json.loads(
            self.drctl("status", str(self.specs), "--output", "json").stdout
        )
        return status

    def jobs(self) -> list[dict[str, Any]]:
        jobs: list[dict[str, Any]] = json.loads(
            self.drctl("fabric", "show", "--output", "json").stdout
        )["jobs"]
        return jobs

    def converged_at(self, site: str, plan: str = "finance") -> bool:
        status = self.status()
        vms = [vm for vm in status["vms"] if vm["plan"] == plan]
        return all(vm["converged"] and vm["observed"]["activeSite"] == site for vm in vms)

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""


def git_note(site: Site, sha: str) -> str:
    """The drctl note on commit `sha` (refs/notes/drctl), or "" when it has none."""
    done = subprocess.run(
        ["git", "notes", "--ref=drctl", "show", sha],
        cwd=site.watched,
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout if done.returncode == 0 else ""


# A step of `on_a_terminal`: once the screen so far satisfies the test, the act, given the
# child's pid and the terminal's fd (to type at it).
TerminalStep = tuple[Callable[[str], bool], Callable[[int, int], object]]


def on_a_terminal(
    args: list[str], steps: list[TerminalStep], timeout: float = 60
) -> tuple[int, str]:
    """`drctl ARGS` on a real pseudo-terminal (200 columns), doing each step in turn; the
    exit code and everything the terminal received. Killed at `timeout`."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: drctl on the terminal
        os.environ["COLUMNS"] = "200"
        os.execv(sys.executable, [sys.executable, "-m", "reconciler", *args])  # noqa: S606
    seen = b""
    pending = list(steps)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break  # the child left: its end of the terminal closed
            if not chunk:
                break
            seen += chunk
        if pending and pending[0][0](seen.decode(errors="replace")):
            pending.pop(0)[1](pid, fd)
    else:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), seen.decode(errors="replace")
