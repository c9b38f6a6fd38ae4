"""drctl on the specs volume of a git-sync sidecar (deploy/kubernetes), with real processes.

git-sync (v4) keeps a repository in its --root, checks each new commit out
as a worktree `.worktrees/<sha>` and publishes it by swapping the symlink
--link atomically, then deletes the old worktree. `sync` below does the same
with git; drctl reads `<root>/current/specs` on a read-only mount of the
volume, as the pod mounts it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from e2e.harness import Site, daemon_command, git, probe, three_tier, wait_until

pytestmark = pytest.mark.e2e


def sync(upstream: Path, root: Path, link: str = "current") -> str:
    """One git-sync pass: fetch, a worktree of the new commit, the link swapped, the old removed."""
    if not (root / ".git").exists():
        git(root, "init", "-q")
    git(root, "fetch", "-q", str(upstream), "main")
    sha = git(root, "rev-parse", "FETCH_HEAD")
    worktree = root / ".worktrees" / sha
    if not worktree.exists():
        git(root, "worktree", "add", "-q", "--detach", str(worktree), sha)
    old = str((root / link).readlink()) if (root / link).is_symlink() else None
    (root / f".{link}.new").symlink_to(f".worktrees/{sha}")
    (root / f".{link}.new").replace(root / link)  # rename(2): atomic
    if old is not None and old != f".worktrees/{sha}":
        git(root, "worktree", "remove", "--force", str(root / old))
    return sha


def read_only(path: Path, command: list[str]) -> list[str]:
    """`command` in a mount namespace of its own where `path` is mounted read-only."""
    script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" "$0" && exec "$@"'
    return ["unshare", "--mount", "sh", "-c", script, str(path), *command]


def in_force(site: Site, sha: str) -> None:
    """Wait until /readyz says `sha` is in force: well before the resync (300 s)."""
    wait_until(
        f"revision {sha} in force",
        lambda: probe(site.metrics_port, "/readyz")[1].startswith(f"ready: revision {sha} in"),
        timeout=60,
    )


def test_drctl_follows_each_commit_git_sync_publishes_on_a_read_only_volume(
    site: Site, tmp_path: Path
) -> None:
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("needs unshare(1) as root for the read-only mount of the volume")
    volume = tmp_path / "specs-volume"  # the pod's emptyDir, git-sync's --root
    volume.mkdir()
    first = sync(site.upstream, volume)
    site.specs = volume / "current" / "specs"  # drctl run /specs/current/specs
    with site.log.open("a") as log:
        site.daemon = subprocess.Popen(
            # No resync within the test: only the watch can see a new commit.
            read_only(
                volume,
                daemon_command(site.specs, site.state, site.metrics_port, "--resync", "300"),
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
    said = wait_until(
        "/readyz 200", lambda: (r := probe(site.metrics_port, "/readyz"))[0] == 200 and r
    )
    assert said[1].startswith(f"ready: revision {first} in force"), said

    site.commit("finance to rtm", {"finance.yaml": three_tier("rtm")})
    second = sync(site.upstream, volume)
    assert not (volume / ".worktrees" / first).exists()  # the checkout drctl read is gone
    in_force(site, second)
    wait_until("finance converged at rtm", lambda: site.converged_at("rtm"), timeout=60)
    # Again, now that the worktree drctl first watched is gone.
    site.commit("finance back to ams", {"finance.yaml": three_tier("ams")})
    third = sync(site.upstream, volume)
    in_force(site, third)
    wait_until("finance converged at ams", lambda: site.converged_at("ams"), timeout=60)
    assert '"level": "error"' not in site.log_text()
