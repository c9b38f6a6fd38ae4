"""The git history of a spec directory, read with a fixed number of git processes.

`drctl audit` (audit.py) calls it to replay the desired state commit by
commit. One git process per commit costs ~2.7 ms (perf-notes.md), 27 s for
10,000 commits, so the commits and the spec blobs each one changed come from
one `git log --raw`, and the contents of every blob from one
`git cat-file --batch`. `git ls-tree` gives the files a `--since` window
starts from.

Only the first-parent chain of HEAD is read: it is the sequence of revisions
a daemon following the branch sees, and diffing each merge against its first
parent means that replaying the changes in order rebuilds every revision's
files exactly.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath

from reconciler import errors, spec

# Regular files only: a symlink's blob is its target path, a gitlink a submodule.
_FILE_MODES = frozenset({"100644", "100755"})
_NO_BLOB = "0" * 40
_HEADER = "\x01"  # starts each commit in the log; never a hex digit or ':'
_FIELDS = 4  # sha, author, author date, subject


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
    """The work tree holding `specs_dir`; `UsageError` (exit 2) if there is none."""
    if not specs_dir.is_dir():
        raise errors.UsageError(f"{specs_dir} is not a directory of spec files")
    try:
        out = _git(specs_dir, "rev-parse", "--show-toplevel", "--show-prefix")
    except errors.GitError as exc:
        raise errors.UsageError(f"{specs_dir} is not in a git work tree: drctl audit reads "
                                f"the history of the spec files ({exc})") from exc
    top, _, prefix = out.decode().partition("\n")
    return Repo(Path(top), prefix.strip("\n"))


def head(repo: Repo) -> str | None:
    """HEAD's commit, or None in a repository without commits."""
    try:
        return _git(repo.top, "rev-parse", "--verify", "-q", "HEAD^{commit}").decode().strip()
    except errors.GitError:
        return None


def parent(repo: Repo, sha: str) -> str | None:
    """The first parent of `sha`, None for a root commit."""
    try:
        return _git(repo.top, "rev-parse", "--verify", "-q", f"{sha}^1").decode().strip()
    except errors.GitError:
        return None


def spec_commits(repo: Repo, rev: str, since: datetime | None = None) -> list[Commit]:
    """The commits on `rev`'s first-parent chain that change spec files, oldest first."""
    out = _git(
        repo.top, "log", "--first-parent", "--diff-merges=first-parent", "--root", "--reverse",
        "-z", "--raw", "--no-abbrev", "--no-renames", "--no-color", "--encoding=UTF-8",
        f"--format={_HEADER}%H%x00%an%x00%aI%x00%s", *_since(since), rev,
        "--", repo.pathspec,
    )
    return _parse_log(out, repo.prefix)


def first_parent_shas(repo: Repo, rev: str, since: datetime | None = None) -> list[str]:
    """Every commit on `rev`'s first-parent chain, whatever it touched, oldest first."""
    out = _git(repo.top, "log", "--first-parent", "--reverse", "--format=%H",
               *_since(since), rev)
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
    """The contents of `shas`, all through one `git cat-file --batch`."""
    wanted = list(dict.fromkeys(shas))
    if not wanted:
        return {}
    out = _git(repo.top, "cat-file", "--batch", stdin="\n".join(wanted) + "\n")
    blobs: dict[str, bytes] = {}
    pos = 0
    for _ in wanted:
        eol = out.index(b"\n", pos)
        header = out[pos:eol].decode().split(" ")
        if len(header) != 3:
            raise errors.GitError(f"git cat-file: cannot read {header[0]}: {' '.join(header)}")
        size = int(header[2])
        blobs[header[0]] = out[eol + 1 : eol + 1 + size]
        pos = eol + 1 + size + 1  # content, then a newline
    return blobs


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
            path = _spec_path(tokens[i + 1], prefix)
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
    return relative if spec.is_spec_path(PurePosixPath(relative)) else None


def _git(cwd: Path, *args: str, stdin: str | None = None) -> bytes:
    command = ["git", "--literal-pathspecs", "-c", "log.showSignature=false", *args]
    try:
        done = subprocess.run(command, cwd=cwd, input=None if stdin is None else stdin.encode(),
                              capture_output=True, check=False)
    except OSError as exc:
        raise errors.GitError(f"cannot run git in {cwd}: {exc}") from exc
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip() or f"exit {done.returncode}"
        raise errors.GitError(f"git {args[0]}: {message}")
    return done.stdout
