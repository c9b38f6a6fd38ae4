"""Which revision of the desired state is in force: the git commit of the specs.

The executor counts attempts per revision and the journal records it with
every action. Inside a git work tree the revision is HEAD's commit, marked
dirty (with a hash of the spec files) when they differ from it; outside git it
is a hash of the spec files. Called by the CLI and the daemon.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from reconciler.gitops import git, specdir


@dataclass(frozen=True)
class Revision:
    id: str  # what the journal records: sha, sha+dirty.<hash>, or sha256:<hash>
    commit: str | None  # HEAD's sha when the specs are in a git work tree
    dirty: bool
    # When it was made: the commit's committer date; for files that differ from
    # any commit, when the newest spec file last changed. Only a revision made
    # after a VM was moved outside drctl may move it back.
    made_at: datetime | None = None

    def __str__(self) -> str:
        return self.id


def is_commit(revision_id: str) -> bool:
    """Whether a revision id names a commit (not dirty files, not a content hash)."""
    return len(revision_id) == 40 and all(c in "0123456789abcdef" for c in revision_id)


def spec_revision(specs_dir: Path) -> Revision:
    """The revision of the specs under `specs_dir` as it is on disk now.

    `GitError` when `specs_dir` is in a repository git refuses to read (see
    git.py): that must not pass for "not in git".
    """
    if git.work_tree(specs_dir) is None:
        return Revision(
            f"sha256:{_content_hash(specs_dir)}", None, dirty=False, made_at=_changed_at(specs_dir)
        )
    # One git process for HEAD and the state of the spec files. Only spec
    # files make the revision dirty, not an editor's swap file.
    # --no-optional-locks: a status that refreshed the index would hold
    # index.lock, and a `git pull` landing at that moment would fail.
    out = git.run(
        specs_dir,
        "--no-optional-locks",
        "status",
        "--porcelain=v2",
        "--branch",
        "--untracked-files=all",
        "--",
        "*.yaml",
        "*.yml",
    )
    commit: str | None = None
    dirty = False
    for line in out.decode(errors="surrogateescape").splitlines():
        if line.startswith("# branch.oid "):
            oid = line.removeprefix("# branch.oid ")
            commit = None if oid == "(initial)" else oid  # "(initial)": no commit yet
        elif line and not line.startswith("#"):
            dirty = True
    if commit is None:
        return Revision(
            f"sha256:{_content_hash(specs_dir)}", None, dirty=False, made_at=_changed_at(specs_dir)
        )
    if dirty:
        return Revision(
            f"{commit}+dirty.{_content_hash(specs_dir)}",
            commit,
            dirty=True,
            made_at=_changed_at(specs_dir),
        )
    return Revision(commit, commit, dirty=False, made_at=_committed_at(specs_dir, commit))


def _committed_at(specs_dir: Path, commit: str) -> datetime:
    out = git.run(specs_dir, "show", "-s", "--format=%cI", commit)
    return datetime.fromisoformat(out.decode().strip())


def _changed_at(specs_dir: Path) -> datetime | None:
    """When the newest spec file under `specs_dir` last changed."""
    times = [f.stat().st_mtime for f in specdir.spec_files(specs_dir)]
    return datetime.fromtimestamp(max(times), tz=UTC) if times else None


def _content_hash(specs_dir: Path) -> str:
    digest = hashlib.sha256()
    for file in specdir.spec_files(specs_dir):
        # The name's own bytes: a name that is not UTF-8 is still a name.
        digest.update(os.fsencode(file.relative_to(specs_dir)) + b"\0")
        digest.update(file.read_bytes() + b"\0")
    return digest.hexdigest()[:16]
