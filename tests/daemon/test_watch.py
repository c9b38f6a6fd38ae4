"""The running daemon's watch: a commit where `.git` is a file (worktree, submodule) is acted on.

The daemon runs in process (`Daemon.run` in a thread) on a virtual clock that
never moves, so its resync never comes: only the watch can make it read the
revision again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e import harness

from reconciler.daemon import loop
from reconciler.fabric.sim import inventory
from reconciler.fabric.sim import provider as sim
from reconciler.kits.clock import VirtualClock

PLAN = """\
apiVersion: drctl/v1
kind: RecoveryPlan
metadata: {name: finance}
spec:
  sites: [ams, rtm]
  defaults: {activeSite: ams}
  vms:
    - name: sql01
"""

INVENTORY = """\
sites: [ams, rtm]
vms:
  - {name: sql01, activeSite: ams, replication: ams->rtm}
"""


class Running:
    """`drctl run` on `specs`, in a thread of this process."""

    def __init__(self, tmp_path: Path, specs: Path) -> None:
        clock = VirtualClock()
        state = tmp_path / "state"
        (tmp_path / "inv.yaml").write_text(INVENTORY)
        sim.init_fabric(state, inventory.load_inventory(tmp_path / "inv.yaml"), clock)
        self.fabric = sim.SimFabric(state, clock)
        self.daemon = loop.Daemon(loop.Config(specs, state, resync=3600.0), self.fabric, clock)
        self.thread = threading.Thread(target=self.daemon.run, daemon=True)
        self.thread.start()

    def in_force(self) -> str | None:
        force = self.daemon.in_force
        return force.revision if force is not None else None

    def stop(self) -> None:
        self.daemon.request_stop()
        self.thread.join(timeout=10)
        self.fabric.close()


@pytest.fixture
def running(tmp_path: Path) -> Iterator[list[Running]]:
    started: list[Running] = []
    yield started
    for r in started:
        r.stop()


def commits_are_acted_on(checkout: Path, daemon: Running) -> bool:
    """Commit (no file changes) until the daemon puts the new HEAD in force.

    Again: the watch gives no sign of when inotify is in place.
    """
    harness.wait_until("the first pass", daemon.in_force, timeout=10)
    assert daemon.in_force() == harness.git(checkout, "rev-parse", "HEAD")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        harness.git(checkout, "commit", "-q", "--allow-empty", "-m", "a change of ticket")
        head = harness.git(checkout, "rev-parse", "HEAD")
        patience = time.monotonic() + 1.0
        while time.monotonic() < patience:
            if daemon.in_force() == head:
                return True
            time.sleep(0.02)
    return False


def test_a_commit_in_a_worktree_checkout_is_put_in_force(
    tmp_path: Path, running: list[Running]
) -> None:
    main = harness.spec_repo(tmp_path / "main", {"finance.yaml": PLAN})
    checkout = harness.worktree_checkout(main, tmp_path / "checkout")
    running.append(Running(tmp_path, checkout / "specs"))
    assert commits_are_acted_on(checkout, running[0])


def test_a_commit_in_a_submodule_is_put_in_force(tmp_path: Path, running: list[Running]) -> None:
    upstream = harness.spec_repo(tmp_path / "upstream", {"finance.yaml": PLAN})
    checkout = harness.submodule_checkout(upstream, tmp_path / "super")
    running.append(Running(tmp_path, checkout / "specs"))
    assert commits_are_acted_on(checkout, running[0])
