"""The git history of a spec directory, read with a fixed number of git processes.

`drctl audit` (audit.py) calls it to replay the desired state commit by
commit. One git process per commit costs ~2.7 ms (perf-notes.md), 27 s for
10,000 commits, so the commits and the spec blobs each one changed come from
one `git log --raw`, and the contents of every blob from one
`git cat-file --batch` (`stream_blobs`), read back one at a time so that memory
holds a blob, not the history. `git ls-tree` gives the files a `--since`
window starts from.

Only the first-parent chain of HEAD is read: it is the sequence of revisions
a daemon following the branch sees, and diffing each merge against its first
parent means that replaying the changes in order rebuilds every revision's
files exactly.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath

from reconciler import errors
from reconciler.gitops import git, specdir

# Regular files only: a symlink's blob is its target path, a gitlink a submodule.
_FILE_MODES = frozenset({"100644", "100755"})
_NO_BLOB = "0" * 40
_HEADER = "\x01"  # starts each commit in the log; never a hex digit or ':'
_FIELDS = 4  # sha, author, author date, subject
# An audit reads the whole history, in a few processes that each take longer
# the longer it is (0.2 s for 10,000 commits): far more than a daemon's git.
TIMEOUT = 600.0


@dataclass(frozen=True)
class Repo:
    """A spec directory inside a git work tree."""

    top: Path  # the work tree's top level
    prefix: str  # the spec directory relative to `top`, with a trailing '/'; '' at the top

    @property
    def pathspec(self) -> str:
        return self.prefix or "."


@dataclass(frozen=True, slots=True)
class Commit:
    """A commit that changed spec files, with the blobs it set."""

    sha: str
    author: str
    date: str  # author date, strict ISO 8601
    subject: str
    # (path relative to the spec directory, new blob sha or None when removed)
    changes: tuple[tuple[str, str | None], ...]


def open_repo(specs_dir: Path) -> Repo:
    """The work tree holding `specs_dir`; `UsageError` (exit 2) if there is none.

    `GitError` (exit 3) when git refuses the repository that holds it.
    """
    if not specs_dir.is_dir():
        raise errors.UsageError(f"{specs_dir} is not a directory of spec files")
    tree = git.work_tree(specs_dir)
    if tree is None:
        raise errors.UsageError(
            f"{specs_dir} is not in a git work tree: "
            "drctl audit reads the history of the spec files"
        )
    return Repo(tree.top, tree.prefix)


def head(repo: Repo) -> str | None:
    """HEAD's commit, or None in a repository without commits."""
    return git.commit_of(repo.top, "HEAD", timeout=TIMEOUT)


def parent(repo: Repo, sha: str) -> str | None:
    """The first parent of `sha`, None for a root commit."""
    return git.commit_of(repo.top, f"{sha}^1", timeout=TIMEOUT)


def spec_commits(repo: Repo, rev: str, since: datetime | None = None) -> list[Commit]:
    """The commits on `rev`'s first-parent chain that change spec files, oldest first."""
    out = _git(
        repo.top,
        "log",
        "--first-parent",
        "--diff-merges=first-parent",
        "--root",
        "--reverse",
        "-z",
        "--raw",
        "--no-abbrev",
        "--no-renames",
        "--no-color",
        "--encoding=UTF-8",
        f"--format={_HEADER}%H%x00%an%x00%aI%x00%s",
        *_since(since),
        rev,
        "--",
        repo.pathspec,
    )
    return _parse_log(out, repo.prefix)


def first_parent_shas(repo: Repo, rev: str, since: datetime | None = None) -> list[str]:
    """Every commit on `rev`'s first-parent chain, whatever it touched, oldest first."""
    out = _git(repo.top, "log", "--first-parent", "--reverse", "--format=%H", *_since(since), rev)
    return out.decode().split()


def spec_tree(repo: Repo, rev: str) -> dict[str, str]:
    """The spec files at `rev`: path relative to the spec directory -> blob sha."""
    out = _git(repo.top, "ls-tree", "-r", "-z", rev, "--", repo.pathspec)
    tree: dict[str, str] = {}
    for record in out.split(b"\0"):
        if not record:
            continue
        meta, _, raw_path = record.partition(b"\t")
        mode, _kind, sha = meta.decode().split(" ")
        path = _spec_path(raw_path, repo.prefix)
        if path is not None and mode in _FILE_MODES:
            tree[path] = sha
    return tree


def read_blobs(repo: Repo, shas: Iterable[str]) -> dict[str, bytes]:
    """The contents of `shas`, all at once, through one `git cat-file --batch`."""
    wanted = list(dict.fromkeys(shas))
    if not wanted:
        return {}
    with stream_blobs(repo, wanted) as stream:
        return dict(stream.read() for _ in wanted)


def stream_blobs(repo: Repo, shas: list[str]) -> git.BlobStream:
    """The contents of `shas`, in that order, one at a time (a context manager)."""
    return git.BlobStream(repo.top, shas, timeout=TIMEOUT)


def _since(since: datetime | None) -> list[str]:
    # An explicit offset: git would read a zone-less time as local time and
    # fill a missing time of day with the current one.
    return [] if since is None else [f"--since={since.isoformat(timespec='seconds')}"]


def _parse_log(out: bytes, prefix: str) -> list[Commit]:
    """Parse `git log -z --raw`: NUL-separated header fields, then `:meta` / path pairs."""
    tokens = out.split(b"\0")
    commits: list[Commit] = []
    header: list[str] | None = None
    changes: list[tuple[str, str | None]] = []
    paths: dict[bytes, str | None] = {}  # the same few paths recur in every commit
    i = 0
    while i < len(tokens):
        token = tokens[i].lstrip(b"\n")
        if token.startswith(_HEADER.encode()):
            if header is not None:
                commits.append(_commit(header, changes))
            fields = [token[1:], *tokens[i + 1 : i + _FIELDS]]
            header = [f.decode("utf-8", errors="replace") for f in fields]
            changes = []
            i += _FIELDS
        elif token.startswith(b":"):
            # :old_mode new_mode old_sha new_sha status, then the path
            _old_mode, new_mode, _old, new, _status = token[1:].decode().split(" ")
            raw = tokens[i + 1]
            if raw not in paths:
                paths[raw] = _spec_path(raw, prefix)
            path = paths[raw]
            if path is not None:
                blob = new if new_mode in _FILE_MODES and new != _NO_BLOB else None
                changes.append((path, blob))
            i += 2
        else:
            i += 1
    if header is not None:
        commits.append(_commit(header, changes))
    return commits


def _commit(header: list[str], changes: list[tuple[str, str | None]]) -> Commit:
    sha, author, date, subject = header
    return Commit(sha, author, date, subject, tuple(changes))


def _spec_path(raw: bytes, prefix: str) -> str | None:
    """`raw` relative to the spec directory, or None if it is not a spec file there."""
    path = raw.decode("utf-8", errors="surrogateescape")
    if not path.startswith(prefix):
        return None
    relative = path[len(prefix) :]
    return relative if specdir.is_spec_path(PurePosixPath(relative)) else None


def _git(cwd: Path, *args: str) -> bytes:
    return git.run(
        cwd, "--literal-pathspecs", "-c", "log.showSignature=false", *args, timeout=TIMEOUT
    )
