"""The revision in force: git HEAD of the specs, dirty when they differ, a hash outside git."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from reconciler.errors import GitError
from reconciler.gitops import revision


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def make_repo(tmp_path: Path) -> Path:
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "config", "user.email", "ops@example.com")
    git(tmp_path, "config", "user.name", "Ops")
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "p.yaml").write_text("a: 1\n")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "first")
    return specs


def test_outside_git_the_revision_is_a_hash_of_the_spec_files(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("a: 1\n")
    first = revision.spec_revision(tmp_path)
    assert first.id.startswith("sha256:")
    assert first.commit is None
    assert revision.spec_revision(tmp_path) == first
    (tmp_path / "p.yaml").write_text("a: 2\n")
    assert revision.spec_revision(tmp_path).id != first.id


def test_in_git_the_revision_is_head(tmp_path: Path) -> None:
    specs = make_repo(tmp_path)
    got = revision.spec_revision(specs)
    assert got.id == git(tmp_path, "rev-parse", "HEAD")
    assert not got.dirty


def test_uncommitted_spec_changes_mark_the_revision_dirty(tmp_path: Path) -> None:
    specs = make_repo(tmp_path)
    head = git(tmp_path, "rev-parse", "HEAD")
    (specs / "p.yaml").write_text("a: 2\n")
    dirty = revision.spec_revision(specs)
    assert dirty.dirty
    assert dirty.commit == head
    assert dirty.id.startswith(f"{head}+dirty.")
    (specs / "p.yaml").write_text("a: 3\n")
    assert revision.spec_revision(specs).id != dirty.id


def test_changes_outside_the_specs_dir_do_not_dirty_it(tmp_path: Path) -> None:
    specs = make_repo(tmp_path)
    (tmp_path / "README").write_text("notes\n")
    assert not revision.spec_revision(specs).dirty


def test_an_editor_swap_file_does_not_dirty_the_revision(tmp_path: Path) -> None:
    specs = make_repo(tmp_path)
    (specs / ".p.yaml.swp").write_text("x")
    (specs / "notes.txt").write_text("x")
    assert not revision.spec_revision(specs).dirty


def test_a_repository_git_refuses_to_read_is_an_error_not_a_plain_directory(
    tmp_path: Path,
) -> None:
    specs = make_repo(tmp_path)
    # As with "dubious ownership" when drctl runs as another user: git refuses.
    git(tmp_path, "config", "core.repositoryformatversion", "99")
    with pytest.raises(GitError) as caught:
        revision.spec_revision(specs)
    assert "git cannot read the repository holding" in str(caught.value)
    assert "Expected git repo version <= 1, found 99" in str(caught.value)
