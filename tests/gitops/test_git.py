"""The one runner of git: not in git only when git says so, every refusal a GitError."""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
from pathlib import Path

import pytest
from e2e import harness

from reconciler.errors import GitError
from reconciler.gitops import git, revision


def make_worktree(tmp_path: Path) -> Path:
    """A `git worktree add` checkout on a branch of its own, one commit ahead of main."""
    main = harness.spec_repo(tmp_path / "main", {"p.yaml": "a: 1\n"})
    checkout = harness.worktree_checkout(main, tmp_path / "checkout")
    (checkout / "specs" / "p.yaml").write_text("a: 2\n")
    harness.git(checkout, "commit", "-qam", "in the worktree")
    return checkout


def make_submodule(tmp_path: Path) -> Path:
    """A superproject whose specs are a submodule's files; returns the submodule checkout."""
    upstream = harness.spec_repo(tmp_path / "upstream", {"p.yaml": "a: 3\n"})
    return harness.submodule_checkout(upstream, tmp_path / "super")


def test_a_plain_directory_is_not_in_git(tmp_path: Path) -> None:
    assert git.work_tree(tmp_path) is None
    assert git.work_tree(tmp_path / "missing") is None


def test_a_clone_has_its_git_dir_under_the_top(tmp_path: Path) -> None:
    root = harness.spec_repo(tmp_path / "repo", {"p.yaml": "a: 1\n"})
    tree = git.work_tree(root / "specs")
    assert tree is not None
    assert tree.top == root
    assert tree.prefix == "specs/"
    assert tree.git_dir == tree.common_dir == root / ".git"


def test_a_worktree_checkout_follows_its_dot_git_file(tmp_path: Path) -> None:
    checkout = make_worktree(tmp_path)
    assert (checkout / ".git").is_file()
    tree = git.work_tree(checkout / "specs")
    assert tree is not None
    assert tree.top == checkout
    assert tree.git_dir == tmp_path / "main" / ".git" / "worktrees" / "checkout"
    assert tree.common_dir == tmp_path / "main" / ".git"  # where the branch's ref lives
    got = revision.spec_revision(checkout / "specs")
    assert got.id == harness.git(checkout, "rev-parse", "HEAD")
    assert got.id != harness.git(tmp_path / "main", "rev-parse", "HEAD")
    assert not got.dirty


def test_a_submodule_checkout_reads_the_submodules_own_head(tmp_path: Path) -> None:
    checkout = make_submodule(tmp_path)
    tree = git.work_tree(checkout)
    assert tree is not None
    assert tree.top == checkout
    assert tree.git_dir == tree.common_dir == tmp_path / "super" / ".git" / "modules" / "dr"
    got = revision.spec_revision(checkout / "specs")
    assert got.id == harness.git(tmp_path / "upstream", "rev-parse", "HEAD")
    assert not got.dirty


def test_a_worktree_whose_git_dir_is_gone_is_an_error_not_a_plain_directory(
    tmp_path: Path,
) -> None:
    checkout = make_worktree(tmp_path)
    shutil.rmtree(tmp_path / "main" / ".git" / "worktrees")
    with pytest.raises(GitError, match="not a git repository: "):
        git.work_tree(checkout)
    with pytest.raises(GitError, match="git cannot read the repository holding"):
        revision.spec_revision(checkout / "specs")


def test_a_failing_command_is_a_git_error_with_gits_stderr(tmp_path: Path) -> None:
    root = harness.spec_repo(tmp_path / "repo", {"p.yaml": "a: 1\n"})
    with pytest.raises(GitError) as caught:
        git.run(root, "rev-parse", "--verify", "no-such-branch")
    assert f"git rev-parse in {root}: fatal: Needed a single revision" in str(caught.value)


def test_a_git_that_does_not_answer_in_time_is_a_git_error(tmp_path: Path) -> None:
    with pytest.raises(GitError, match=r"git hang in .*: timed out after 0\.2 s"):
        git.run(tmp_path, "-c", "alias.hang=!sleep 2", "hang", timeout=0.2)


def test_commit_of_a_rev_that_names_no_commit_is_none(tmp_path: Path) -> None:
    harness.git(tmp_path, "init", "-q", "-b", "main")
    assert git.commit_of(tmp_path, "HEAD") is None  # no commit yet
    root = harness.spec_repo(tmp_path / "repo", {"p.yaml": "a: 1\n"})
    head = harness.git(root, "rev-parse", "HEAD")
    assert git.commit_of(root, "HEAD") == head
    assert git.commit_of(root, f"{head}^1") is None  # a root commit


def test_without_git_installed_only_a_directory_with_no_repository_is_plain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = harness.spec_repo(tmp_path / "repo", {"p.yaml": "a: 1\n"})
    plain = tmp_path / "plain"
    plain.mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    assert git.work_tree(plain) is None
    with pytest.raises(GitError, match=r"needs git to be read"):
        git.work_tree(root / "specs")


def test_a_blob_stream_returns_contents_in_the_order_asked(tmp_path: Path) -> None:
    root = harness.spec_repo(tmp_path / "repo", {"p.yaml": "a: 1\n"})
    (root / "b.txt").write_text("bee\n")
    harness.git(root, "add", "-A")
    harness.git(root, "commit", "-qm", "b")
    a = harness.git(root, "rev-parse", "HEAD:specs/p.yaml")
    b = harness.git(root, "rev-parse", "HEAD:b.txt")
    with git.BlobStream(root, [b, a]) as stream:
        assert stream.read() == (b, b"bee\n")
        assert stream.read() == (a, b"a: 1\n")
    with git.BlobStream(root, ["0" * 40]) as stream, pytest.raises(GitError, match="missing"):
        stream.read()


# --- a broken repository never passes for "not in git" ------------------------------


def test_a_repository_whose_head_is_garbage_is_an_error_not_a_plain_directory(
    tmp_path: Path,
) -> None:
    root = harness.spec_repo(tmp_path / "repo", {"p.yaml": "a: 1\n"})
    (root / ".git" / "HEAD").write_text("garbage\n")  # git no longer takes .git for a repository
    with pytest.raises(GitError, match=r"git takes .*\.git for no repository"):
        git.work_tree(root / "specs")
    with pytest.raises(GitError, match="git cannot read the repository holding"):
        revision.spec_revision(root / "specs")


def test_a_broken_repository_inside_another_is_an_error_never_the_outer_ones_commit(
    tmp_path: Path,
) -> None:
    outer = harness.spec_repo(tmp_path / "outer", {"o.yaml": "a: 1\n"})
    inner = harness.spec_repo(outer / "inner", {"p.yaml": "a: 2\n"})
    (inner / ".git" / "HEAD").write_text("garbage\n")
    # git itself skips the broken .git and answers with the outer repository.
    assert harness.git(inner / "specs", "rev-parse", "--show-toplevel") == str(outer)
    with pytest.raises(GitError, match=rf"{inner}/\.git"):
        revision.spec_revision(inner / "specs")


def test_no_file_descriptor_left_to_run_git_is_an_error(tmp_path: Path) -> None:
    root = harness.spec_repo(tmp_path / "repo", {"p.yaml": "a: 1\n"})
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    held: list[int] = []
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    try:
        with contextlib.suppress(OSError):
            while True:
                held.append(os.open(os.devnull, os.O_RDONLY))
        with pytest.raises(GitError, match="Too many open files"):
            revision.spec_revision(root / "specs")
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert revision.spec_revision(root / "specs").commit is not None
