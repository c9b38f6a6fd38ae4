"""The git history of a spec directory, read with a fixed number of git processes.

`drctl audit` (audit.py) calls it to replay the desired state commit by
commit. One git process per commit costs ~2.7 ms (perf-notes.md), 27 s for
10,000 commits, so the commits and the spec blobs each one changed come from
one `git log --raw`, and the contents of every blob from one
`git cat-file --batch` (`BlobStream`), read back one at a time so that memory
holds a blob, not the history. `git ls-tree` gives the files a `--since`
window starts from.

Only the first-parent chain of HEAD is read: it is the sequence of revisions
a daemon following the branch sees, and diffing each merge against its first
parent means that replaying the changes in order rebuilds every revision's
files exactly.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from types import TracebackType

from reconciler import errors
from reconciler.gitops import specdir

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
        raise errors.UsageError(
            f"{specs_dir} is not in a git work tree: drctl audit reads "
            f"the history of the spec files ({exc})"
        ) from exc
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
    with BlobStream(repo, wanted) as stream:
        return dict(stream.read() for _ in wanted)


class BlobStream:
    """The contents of blobs, in an order fixed up front, from one `git cat-file --batch`.

    A thread writes every sha while the caller reads the contents back one at
    a time: one thread doing both would deadlock once git's output fills the
    pipe. Use as a context manager; leaving it stops git.
    """

    def __init__(self, repo: Repo, shas: list[str]) -> None:
        self.remaining = len(shas)
        try:
            self._git = subprocess.Popen(
                ["git", "cat-file", "--batch"],
                cwd=repo.top,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except OSError as exc:
            raise errors.GitError(f"cannot run git in {repo.top}: {exc}") from exc
        self._feeder = threading.Thread(target=self._feed, args=(shas,), daemon=True)
        self._feeder.start()

    def _feed(self, shas: list[str]) -> None:
        assert self._git.stdin is not None  # noqa: S101 (Popen with stdin=PIPE)
        # A broken pipe means git stopped: read() reports why.
        with contextlib.suppress(OSError):
            for start in range(0, len(shas), 1024):
                self._git.stdin.write(
                    "".join(f"{s}\n" for s in shas[start : start + 1024]).encode()
                )
        with contextlib.suppress(OSError):
            self._git.stdin.close()

    def read(self) -> tuple[str, bytes]:
        """The next blob: (sha, contents)."""
        assert self._git.stdout is not None  # noqa: S101 (Popen with stdout=PIPE)
        line = self._git.stdout.readline()
        header = line.decode(errors="replace").split()
        if len(header) != 3:
            raise errors.GitError(f"git cat-file --batch: {self._why(line)}")
        size = int(header[2])
        contents = self._git.stdout.read(size)
        self._git.stdout.read(1)  # the newline after the contents
        self.remaining -= 1
        return header[0], contents

    def _why(self, line: bytes) -> str:
        if line:  # `<sha> missing`, `<sha> ambiguous`
            return line.decode(errors="replace").strip()
        self._git.wait()  # no more output: git has stopped
        assert self._git.stderr is not None  # noqa: S101 (Popen with stderr=PIPE)
        return self._git.stderr.read().decode(errors="replace").strip() or "git stopped"

    def close(self) -> None:
        if self._git.poll() is None:
            self._git.kill()
        self._git.wait()
        self._feeder.join()
        for pipe in (self._git.stdout, self._git.stderr):
            if pipe is not None:
                pipe.close()

    def __enter__(self) -> BlobStream:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


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
    command = ["git", "--literal-pathspecs", "-c", "log.showSignature=false", *args]
    try:
        done = subprocess.run(command, cwd=cwd, capture_output=True, check=False)
    except OSError as exc:
        raise errors.GitError(f"cannot run git in {cwd}: {exc}") from exc
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip() or f"exit {done.returncode}"
        raise errors.GitError(f"git {args[0]}: {message}")
    return done.stdout
