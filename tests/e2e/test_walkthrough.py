"""The README's "Running the daemon" walk-through, run line by line as a newcomer types it:
a bare upstream, the watched clone, the state dir, `drctl run`, a person's commit pulled
into the watched clone, status, audit, git notes, /metrics and /readyz.

Each command of its `sh` blocks runs in a fresh directory, in order, with the comment's
promise checked (`tests/e2e/test_guide.py` reads them: "until ...", quoted text). What a
rehearsal cannot type is substituted: `~/drctl` is this checkout, the inventory gets quick
timings, a free port replaces 9464, and the daemon polls quickly.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e.harness import ENV, TIMINGS, free_port
from e2e.test_guide import ROOT, Step, guide_steps, keep_promise

pytestmark = pytest.mark.e2e

HEADING = "## Running the daemon: a walk-through"


class Newcomer:
    """A shell in an empty directory, with drctl on its PATH."""

    def __init__(self, root: Path) -> None:
        self.root = root
        quick = (ROOT / "examples" / "inventory.yaml").read_text().split("timings:", 1)[0]
        quick += "timings: {" + ", ".join(f"{k}: {v}" for k, v in TIMINGS.items()) + "}\n"
        self.inventory = root / "quick-inventory.yaml"
        self.inventory.write_text(quick)
        self.port = free_port()
        self.env = {**ENV, "PATH": str(Path(sys.executable).parent) + os.pathsep + ENV["PATH"]}
        self.env.pop("DRCTL_STATE_DIR", None)
        self.daemon: subprocess.Popen[str] | None = None
        self.log = (root.parent / "walkthrough-daemon.log").open("w")

    def typed(self, command: str) -> str:
        command = command.replace("~/drctl/examples/inventory.yaml", str(self.inventory))
        command = command.replace("~/drctl", str(ROOT)).replace("9464", str(self.port))
        # `export` lasts for the session: every later command runs with it.
        exported = re.fullmatch(r"export (\w+)=\$PWD/(\S+)\s*", command)
        if exported:
            self.env[exported.group(1)] = str(self.root / exported.group(2))
            return "true"
        return command

    def run(self, step: Step) -> None:
        command = self.typed(step.command)
        if command.endswith("&"):
            daemon = command.removesuffix("&").strip()
            self.daemon = subprocess.Popen(
                ["bash", "-c", f"exec {daemon} --resync 0.5 --poll-interval 0.05"],
                cwd=self.root,
                env=self.env,
                stdout=self.log,
                stderr=subprocess.STDOUT,
                text=True,
            )
            return
        if command.startswith("kill %1"):
            assert self.daemon is not None
            self.daemon.terminate()
            assert self.daemon.wait(timeout=20) == 0
            return
        keep_promise(
            step,
            lambda: subprocess.run(
                ["bash", "-c", command],
                cwd=self.root,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            ),
        )


@pytest.fixture
def newcomer(tmp_path: Path) -> Iterator[Newcomer]:
    where = tmp_path / "work"
    where.mkdir()
    person = Newcomer(where)
    try:
        yield person
    finally:
        if person.daemon is not None and person.daemon.poll() is None:
            person.daemon.kill()
            person.daemon.wait()
        person.log.close()


def test_the_walkthrough_reads_a_daemon_a_commit_and_its_audit() -> None:
    steps = guide_steps((ROOT / "README.md").read_text(), HEADING)
    commands = [s.command for s in steps]
    assert any(c.startswith("drctl run watched/specs") and c.endswith("&") for c in commands)
    assert any(c.startswith("git -C mine push") or "git -C mine push" in c for c in commands)
    assert any(c.startswith("drctl audit") for c in commands)


def test_the_walkthrough_runs_as_written(newcomer: Newcomer) -> None:
    for step in guide_steps((ROOT / "README.md").read_text(), HEADING):
        newcomer.run(step)
