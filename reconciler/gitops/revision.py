"""Which revision of the desired state is in force: the git commit of the specs.

The executor counts attempts per revision and the journal records it with
every action. Inside a git work tree the revision is HEAD's commit, marked
dirty (with a hash of the spec files) when they differ from it; outside git it
is a hash of the spec files. Called by the CLI and the daemon.
"""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

from reconciler.errors import GitError
from reconciler.gitops import specdir


@dataclass(frozen=True)
class Revision:
    id: str  # what the journal records: sha, sha+dirty.<hash>, or sha256:<hash>
    commit: str | None  # HEAD's sha when the specs are in a git work tree
    dirty: bool

    def __str__(self) -> str:
        return self.id


def is_commit(revision_id: str) -> bool:
    """Whether a revision id names a commit (not dirty files, not a content hash)."""
    return len(revision_id) == 40 and all(c in "0123456789abcdef" for c in revision_id)


def spec_revision(specs_dir: Path) -> Revision:
    """The revision of the specs under `specs_dir` as it is on disk now."""
    commit = _git(specs_dir, "rev-parse", "--verify", "-q", "HEAD")
    if commit is None:
        return Revision(f"sha256:{_content_hash(specs_dir)}", None, dirty=False)
    # Only spec files make the revision dirty, not an editor's swap file.
    status = _git(
        specs_dir, "status", "--porcelain", "--untracked-files=all", "--", "*.yaml", "*.yml"
    )
    if status:
        return Revision(f"{commit}+dirty.{_content_hash(specs_dir)}", commit, dirty=True)
    return Revision(commit, commit, dirty=False)


def _git(cwd: Path, *args: str) -> str | None:
    """git's answer; None outside a work tree or without a commit; GitError otherwise.

    A repository git refuses to read (for instance "dubious ownership" when
    drctl runs as another user) must not pass for "not in git": the revision
    would silently become a content hash and match no commit.
    """
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None  # no git on this machine: the specs are read as plain files
    if done.returncode == 0:
        return done.stdout.strip()
    why = done.stderr.strip()
    if not why or "not a git repository" in why:
        return None
    raise GitError(f"git cannot read the repository holding {cwd}: {why}")


def _content_hash(specs_dir: Path) -> str:
    digest = hashlib.sha256()
    for file in specdir.spec_files(specs_dir):
        digest.update(str(file.relative_to(specs_dir)).encode() + b"\0")
        digest.update(file.read_bytes() + b"\0")
    return digest.hexdigest()[:16]
