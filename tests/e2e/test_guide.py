"""The README's disaster-day guide, run line by line: every command of its `sh` blocks,
in order, in a real clone watched by a real `drctl run` on the simulator, each checked
against what its comment says the operator will see.

The comments are the contract the guide states in words: "until ..." (run it again
until it shows that), a quoted text (printed on stdout or stderr), "exit N" (the exit
status; none named means 0). The test adds only what a rehearsal cannot type: a free
metrics port for 9464, a quick `--resync` and poll for the daemon, and the git server
at ams, taken away with the site and brought back before the guide pushes."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from e2e.harness import ENV, TIMINGS, free_port, git

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
HEADING = "## The disaster-day guide"
UNTIL_SECONDS = 30.0


@dataclass(frozen=True)
class Step:
    """One command of the guide with what its comment promises."""

    command: str
    comment: str

    @property
    def until(self) -> bool:
        return self.comment.lstrip().startswith("until")

    @property
    def exit_code(self) -> int:
        named = re.search(r"\bexit (\d)\b", self.comment)
        return int(named.group(1)) if named else 0

    @property
    def shows(self) -> list[str]:
        quoted = re.findall(r'"((?:[^"\\]|\\.)*)"', self.comment)
        return [q.replace('\\"', '"') for q in quoted]


def guide_steps(readme: str, heading: str = HEADING) -> list[Step]:
    """The commands of the `sh` blocks under `heading`, with their comments (a line
    holding only a comment goes on with the comment of the command above it)."""
    section = readme.split(heading + "\n", 1)[1].split("\n## ", 1)[0]
    steps: list[Step] = []
    for block in re.findall(r"^```sh\n(.*?)^```$", section, flags=re.MULTILINE | re.DOTALL):
        for line in block.splitlines():
            if line.lstrip().startswith("#"):
                last = steps.pop()
                steps.append(Step(last.command, last.comment + " " + line.lstrip()[1:].strip()))
                continue
            steps.append(Step(*split_comment(line)))
    return steps


def split_comment(line: str) -> tuple[str, str]:
    parts = re.split(r"\s{2,}# ?", line, maxsplit=1)
    return parts[0].strip(), parts[1].strip() if len(parts) > 1 else ""


def keep_promise(step: Step, run: Callable[[], subprocess.CompletedProcess[str]]) -> None:
    """Run a step's command (again, for "until ...") until it exits and shows what its
    comment says; an AssertionError with what it showed instead."""
    deadline = time.monotonic() + (UNTIL_SECONDS if step.until else 0)
    while True:
        done = run()
        seen = done.stdout + done.stderr
        missing = [s for s in step.shows if s not in seen]
        if done.returncode == step.exit_code and not missing:
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{step.command}\n  expected exit {step.exit_code} showing {missing}\n"
                f"  got exit {done.returncode}:\n{seen}"
            )
        time.sleep(0.2)


class Rehearsal:
    """rtm's clone of a specs repository whose server sits at ams, and the simulator."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.server = root / "ams-git" / "specs.git"
        self.server.parent.mkdir()
        git(root, "init", "-q", "--bare", "-b", "main", str(self.server))
        git(root, "clone", "-q", str(self.server), "rtm-clone")
        self.clone = root / "rtm-clone"
        (self.clone / "specs").mkdir()
        shutil.copy(ROOT / "specs" / "finance.yaml", self.clone / "specs" / "finance.yaml")
        git(self.clone, "add", "-A")
        git(self.clone, "commit", "-qm", "finance at ams")
        git(self.clone, "push", "-q", "origin", "HEAD:main")
        vms = ["sql01", "app01", "app02", "web01", "web02"]
        inventory = {
            "sites": ["ams", "rtm"],
            "vms": [{"name": n, "activeSite": "ams", "replication": "ams->rtm"} for n in vms],
            "timings": TIMINGS,
        }
        (root / "inventory.yaml").write_text(json.dumps(inventory))
        bindir = str(Path(sys.executable).parent)
        self.env = {
            **ENV,
            "PATH": bindir + os.pathsep + ENV.get("PATH", ""),
            "DRCTL_STATE_DIR": str(root / "state"),
        }
        self.port = free_port()
        self.daemon: subprocess.Popen[str] | None = None
        self.log = (root / "daemon.log").open("w")
        self.shell(f"drctl fabric init {root / 'inventory.yaml'}")

    def shell(self, command: str) -> subprocess.CompletedProcess[str]:
        command = command.replace("9464", str(self.port))
        return subprocess.run(
            ["bash", "-c", command],
            cwd=self.clone,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def start_daemon(self, command: str) -> None:
        command = command.replace("9464", str(self.port))
        self.daemon = subprocess.Popen(
            ["bash", "-c", f"exec {command} --resync 0.5 --poll-interval 0.05"],
            cwd=self.clone,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def git_server(self, *, up: bool) -> None:
        away = self.root / "ams-git-lost"
        if up:
            away.rename(self.server.parent)
        else:
            self.server.parent.rename(away)

    def run(self, step: Step) -> None:
        if step.command.endswith("&"):
            self.start_daemon(step.command.removesuffix("&").strip())
            return
        if step.command.startswith("drctl fabric site-down ams"):
            self.git_server(up=False)
        if step.command.startswith("git push"):
            self.git_server(up=True)
        keep_promise(step, lambda: self.shell(step.command))


@pytest.fixture
def rehearsal(tmp_path: Path) -> Iterator[Rehearsal]:
    r = Rehearsal(tmp_path)
    try:
        yield r
    finally:
        if r.daemon is not None:
            r.daemon.terminate()
            r.daemon.wait(timeout=10)
        r.log.close()


def test_the_guide_reads_its_commands_and_promises() -> None:
    steps = guide_steps((ROOT / "README.md").read_text())
    commands = [s.command for s in steps]
    assert commands[0].startswith("drctl run specs/")
    assert "drctl fabric site-down ams" in commands
    assert commands[-2].startswith("git push")
    held = next(s for s in steps if "Held" in s.shows)
    assert held.until
    assert "salvage them, then commit `discardLostWrites: job-000001`" in held.shows
    assert any(s.exit_code == 1 for s in steps)


def test_the_disaster_day_guide_runs_as_written(rehearsal: Rehearsal) -> None:
    steps = guide_steps((ROOT / "README.md").read_text())
    for step in steps:
        rehearsal.run(step)
    jobs = json.loads(rehearsal.shell("drctl fabric show --output json").stdout)["jobs"]
    operations = {j["operation"] for j in jobs}
    assert "UnplannedFailover" in operations
    assert "PlannedFailover" in operations
    assert "CancelFailover" not in operations
    log = git(rehearsal.server, "log", "--format=%s", "main")
    assert "finance: accept losing the writes ams did not ship, for two hours" in log
