"""What the daemon watches: the spec files and what moves HEAD, in the git dirs git names."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from e2e import harness

from reconciler.gitops import watch

CLONE = watch.Targets(Path("/r/specs"), Path("/r/.git"), Path("/r/.git"))
WORKTREE = watch.Targets(
    Path("/w/specs"), Path("/r/.git/worktrees/w"), Path("/r/.git")
)  # a `git worktree add` checkout of /r


def test_spec_files_count_and_editor_files_do_not() -> None:
    assert CLONE.wants("/r/specs/finance.yaml")
    assert CLONE.wants("/r/specs/sub/hr.yml")
    assert not CLONE.wants("/r/specs/notes.txt")
    assert not CLONE.wants("/r/specs/.finance.yaml.swp")
    assert not CLONE.wants("/r/specs/finance.yaml~")


def test_in_a_clone_head_and_refs_count_and_the_rest_of_dot_git_does_not() -> None:
    assert CLONE.wants("/r/.git/HEAD")
    assert CLONE.wants("/r/.git/packed-refs")
    assert CLONE.wants("/r/.git/refs/heads/main")
    assert not CLONE.wants("/r/.git/refs/heads/main.lock")
    assert not CLONE.wants("/r/.git/index")
    assert not CLONE.wants("/r/.git/objects/ab/cdef")
    assert CLONE.roots() == [Path("/r/specs"), Path("/r/.git")]


def test_in_a_worktree_its_own_head_and_the_shared_refs_count() -> None:
    assert WORKTREE.wants("/r/.git/worktrees/w/HEAD")
    assert WORKTREE.wants("/r/.git/refs/heads/dr")
    assert WORKTREE.wants("/r/.git/packed-refs")
    assert not WORKTREE.wants("/r/.git/HEAD")  # the main work tree's
    assert not WORKTREE.wants("/r/.git/worktrees/w/index")
    assert not WORKTREE.wants("/r/.git/worktrees/other/HEAD")
    assert WORKTREE.roots() == [Path("/w/specs"), Path("/r/.git")]  # one watch holds both


def test_outside_git_only_the_spec_files_are_watched(tmp_path: Path) -> None:
    targets = watch.targets_of(tmp_path)
    assert targets == watch.Targets(tmp_path)
    assert targets.roots() == [tmp_path]


def seen_after(targets: watch.Targets, act: Callable[[int], None], timeout: float = 10) -> bool:
    """Whether the watch reports a change while `act(n)` is done, again and again.

    Again: the watch gives no sign of when inotify is in place, so the first
    act may come before it.
    """
    stop = threading.Event()
    seen = threading.Event()

    def follow() -> None:
        for _ in watch.spec_changes(targets, stop):
            seen.set()

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    try:
        deadline = time.monotonic() + timeout
        n = 0
        while time.monotonic() < deadline:
            act(n)
            n += 1
            if seen.wait(0.5):
                return True
        return False
    finally:
        stop.set()
        follower.join(timeout=5)


def empty_commits(checkout: Path) -> Callable[[int], None]:
    def commit(n: int) -> None:
        harness.git(checkout, "commit", "-q", "--allow-empty", "-m", f"empty {n}")

    return commit


def test_a_commit_in_a_worktree_checkout_is_seen(tmp_path: Path) -> None:
    main = harness.spec_repo(tmp_path / "main", {"p.yaml": "a: 1\n"})
    checkout = harness.worktree_checkout(main, tmp_path / "checkout")
    targets = watch.targets_of(checkout / "specs")
    assert targets.git_dir == main / ".git" / "worktrees" / "checkout"
    assert targets.common_dir == main / ".git"
    # No spec file changes: only the branch's ref, in the common dir, moves.
    assert seen_after(targets, empty_commits(checkout))


def test_a_commit_in_a_submodule_is_seen(tmp_path: Path) -> None:
    upstream = harness.spec_repo(tmp_path / "upstream", {"p.yaml": "a: 1\n"})
    checkout = harness.submodule_checkout(upstream, tmp_path / "super")
    targets = watch.targets_of(checkout / "specs")
    assert targets.git_dir == tmp_path / "super" / ".git" / "modules" / "dr"
    assert seen_after(targets, empty_commits(checkout))


def test_changes_to_other_files_are_not_reported(tmp_path: Path) -> None:
    root = harness.spec_repo(tmp_path / "repo", {"p.yaml": "a: 1\n"})
    targets = watch.targets_of(root / "specs")

    def scribble(n: int) -> None:
        (root / "specs" / "notes.txt").write_text(f"{n}\n")
        (root / "README").write_text(f"{n}\n")

    assert not seen_after(targets, scribble, timeout=1.5)
