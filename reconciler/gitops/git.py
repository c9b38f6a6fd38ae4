"""The one runner of git: every git command drctl runs starts here.

revision.py (the revision in force), history.py (drctl audit), notes.py
(--git-notes), watch.py (which git dir the daemon watches) and signature.py
(--require-signed-commits) call it.

One failure semantic. A directory is "not in git" only when git itself says
it is not inside a work tree: `work_tree` returns None. Anything else git
refuses ("dubious ownership" when drctl runs as another user, a corrupt or
too new repository, a worktree whose git dir is gone, a `.git` git skips
because it cannot take it for a repository: HEAD garbage, files it cannot
open), a git that cannot be started (no file descriptor left; not
installed while a `.git` is there), and a git that does not answer within
its timeout are a `GitError` carrying git's stderr, on one line. A
repository git cannot read must never pass for a plain directory: the
revision would silently become a content hash that matches no commit.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from reconciler import errors

# A local git command answers in milliseconds; one that takes this long is
# stuck (a network file system, a held lock) and the caller retries later.
TIMEOUT = 30.0

# git's own words when the directory is in no work tree at all; the other
# "not a git repository: <path>" is a `.git` file pointing at a git dir that
# is gone, which is a broken repository, not a plain directory.
_OUTSIDE = ("not a git repository (or any of the parent directories)", "or any parent up to")
# gpg's lines that say where a signature came from, not why it is refused.
_GPG_NOISE = ("Primary key fingerprint:", "gpg: using ", "gpg: Signature made ")
# Messages are parsed (above) and shown: the same words whatever the locale.
_ENV = {"LC_ALL": "C"}


@dataclass(frozen=True)
class WorkTree:
    """Where git keeps what a directory inside a work tree is made of."""

    top: Path  # the work tree's top level
    prefix: str  # the directory relative to `top`, with a trailing '/'; '' at the top
    # This work tree's own git dir: HEAD. A `.git` file (a `git worktree add`
    # checkout, a submodule) is followed: it is not `top / ".git"` then.
    git_dir: Path
    # Shared by every worktree of the repository: refs/, packed-refs,
    # objects. The same as `git_dir` in a plain clone.
    common_dir: Path


def run(
    cwd: Path,
    *args: str,
    input: bytes | None = None,  # noqa: A002 (subprocess's own name for it)
    env: Mapping[str, str] | None = None,
    timeout: float = TIMEOUT,
) -> bytes:
    """git's stdout for `git <args>` run in `cwd`; `GitError` if it fails in any way."""
    done = _run(cwd, args, input, env, timeout)
    if done.returncode != 0:
        raise errors.GitError(f"{_command(args)} in {cwd}: {_why(done)}")
    return done.stdout


def work_tree(path: Path) -> WorkTree | None:
    """The work tree holding the directory `path`; None only if it is in none.

    None too when `path` is no directory (there is nothing to be in git), or
    when git is not installed and no `.git` is found above `path`.
    """
    if not path.is_dir():
        return None
    args = (
        "rev-parse",
        "--path-format=absolute",
        "--show-toplevel",
        "--show-prefix",
        "--git-dir",
        "--git-common-dir",
    )
    try:
        done = _run(path, args, None, None, TIMEOUT)
    except errors.GitError as exc:
        # No git on this machine (`path` exists): plain files, unless a
        # repository is there that only git could read.
        if isinstance(exc.__cause__, FileNotFoundError):
            dotgit = _dotgit_above(path)
            if dotgit is None:
                return None
            raise errors.GitError(f"{exc}; but {dotgit} needs git to be read") from exc
        raise
    # git skips a `.git` it cannot take for a repository (HEAD garbage, files
    # it cannot open) as if it were not there: a `.git` nearer than the top it
    # names, or one above a directory it calls outside, is a broken repository.
    dotgit = _dotgit_above(path)
    if done.returncode != 0:
        why = _why(done)
        if done.returncode == 128 and any(words in why for words in _OUTSIDE):
            if dotgit is None:
                return None
            raise errors.GitError(
                f"git cannot read the repository holding {path}: {_broken(dotgit, why)}"
            )
        raise errors.GitError(f"git cannot read the repository holding {path}: {why}")
    lines = done.stdout.decode(errors="surrogateescape").split("\n")
    if len(lines) < 4:
        raise errors.GitError(f"{_command(args)} in {path}: unexpected output {lines!r}")
    top, prefix, git_dir, common_dir = lines[:4]
    if dotgit is not None and dotgit.parent != Path(top).resolve():
        why = f"it answers for {top} instead"
        raise errors.GitError(
            f"git cannot read the repository holding {path}: {_broken(dotgit, why)}"
        )
    return WorkTree(Path(top), prefix, Path(git_dir), Path(common_dir))


def _broken(dotgit: Path, why: str) -> str:
    return (
        f"git takes {dotgit} for no repository ({why}): repair it (is its HEAD damaged?), "
        f"or remove it if the specs are not meant to be in git"
    )


def commit_of(cwd: Path, rev: str, timeout: float = TIMEOUT) -> str | None:
    """The commit `rev` names, or None if it names none (HEAD before the first commit)."""
    done = _run(cwd, ("rev-parse", "--verify", "-q", f"{rev}^{{commit}}"), None, None, timeout)
    if done.returncode == 0:
        return done.stdout.decode().strip()
    why = done.stderr.decode(errors="replace").strip()
    if done.returncode == 1 and not why:  # --verify -q: silent when there is no such commit
        return None
    raise errors.GitError(f"git rev-parse {rev} in {cwd}: {why or f'exit {done.returncode}'}")


def verify_commit(cwd: Path, sha: str, config: Sequence[str] = ()) -> tuple[bool, str]:
    """Whether `git verify-commit` accepts the signature of commit `sha`, and what it said.

    `config` is `-c` options (`gpg.ssh.allowedSignersFile`). What it said is
    its last line ("No principal matched.", gpg's "Can't check signature: No
    public key"), "" when the commit has no signature at all. Whatever makes
    it exit non-zero (no signature, an untrusted key, a gpg that cannot be
    run) is a refusal, never an error: only a git that cannot be started or
    does not answer is a `GitError`.
    """
    done = _run(cwd, (*config, "verify-commit", sha), None, None, TIMEOUT)
    lines = [" ".join(line.split()) for line in done.stderr.decode(errors="replace").splitlines()]
    said = next((line for line in reversed(lines) if line and not line.startswith(_GPG_NOISE)), "")
    return done.returncode == 0, said


class BlobStream:
    """The contents of blobs, in an order fixed up front, from one `git cat-file --batch`.

    A thread writes every sha while the caller reads the contents back one at
    a time: one thread doing both would deadlock once git's output fills the
    pipe. Use as a context manager; leaving it stops git. A git still running
    after `timeout` seconds is stopped, and the next `read` says so.
    """

    def __init__(self, cwd: Path, shas: list[str], timeout: float = TIMEOUT) -> None:
        self.remaining = len(shas)
        self._cwd = cwd
        self._timeout = timeout
        self._timed_out = threading.Event()
        try:
            self._git = subprocess.Popen(
                ["git", "cat-file", "--batch"],
                cwd=cwd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env={**os.environ, **_ENV},
            )
        except OSError as exc:
            raise errors.GitError(f"cannot run git in {cwd}: {exc}") from exc
        self._watchdog = threading.Timer(timeout, self._expire)
        self._watchdog.daemon = True
        self._watchdog.start()
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

    def _expire(self) -> None:
        self._timed_out.set()
        with contextlib.suppress(OSError):
            self._git.kill()

    def read(self) -> tuple[str, bytes]:
        """The next blob: (sha, contents)."""
        assert self._git.stdout is not None  # noqa: S101 (Popen with stdout=PIPE)
        line = self._git.stdout.readline()
        header = line.decode(errors="replace").split()
        if len(header) != 3:
            raise errors.GitError(f"git cat-file --batch in {self._cwd}: {self._why(line)}")
        size = int(header[2])
        contents = self._git.stdout.read(size)
        self._git.stdout.read(1)  # the newline after the contents
        if len(contents) != size:  # git stopped half-way through the blob
            raise errors.GitError(f"git cat-file --batch in {self._cwd}: {self._why(b'')}")
        self.remaining -= 1
        return header[0], contents

    def _why(self, line: bytes) -> str:
        if line:  # `<sha> missing`, `<sha> ambiguous`
            return line.decode(errors="replace").strip()
        self._git.wait()  # no more output: git has stopped
        if self._timed_out.is_set():
            return f"timed out after {self._timeout:g} s"
        assert self._git.stderr is not None  # noqa: S101 (Popen with stderr=PIPE)
        return self._git.stderr.read().decode(errors="replace").strip() or "git stopped"

    def close(self) -> None:
        self._watchdog.cancel()
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


def _run(
    cwd: Path,
    args: Sequence[str],
    input: bytes | None,  # noqa: A002 (subprocess's own name for it)
    env: Mapping[str, str] | None,
    timeout: float,
) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(
            ["git", *args],
            cwd=cwd,
            input=input,
            capture_output=True,
            env={**os.environ, **(env or {}), **_ENV},
            check=False,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        raise errors.GitError(f"{_command(args)} in {cwd}: timed out after {timeout:g} s") from exc
    except OSError as exc:
        raise errors.GitError(f"cannot run git in {cwd}: {exc}") from exc


def _command(args: Sequence[str]) -> str:
    """`git <subcommand>` for messages: the first word that is not an option or its value."""
    words = iter(args)
    for word in words:
        if word in {"-c", "-C"}:
            next(words, None)
        elif not word.startswith("-"):
            return f"git {word}"
    return "git"


def _why(done: subprocess.CompletedProcess[bytes]) -> str:
    """git's stderr on one line (the CLI prints a GitError as one), or its exit status."""
    lines = done.stderr.decode(errors="replace").splitlines()
    return "; ".join(line.strip() for line in lines if line.strip()) or f"exit {done.returncode}"


def _dotgit_above(path: Path) -> Path | None:
    """The nearest `.git` at or above the directory `path`, as git looks for one: on
    the file system `path` is on (git stops at a boundary; so does this)."""
    start = path.resolve()
    try:
        device = start.stat().st_dev
    except OSError:
        return None
    for parent in [start, *start.parents]:
        try:
            if parent.stat().st_dev != device:
                return None
            candidate = parent / ".git"
            if candidate.exists() or candidate.is_symlink():
                return candidate
        except OSError:
            return None  # a parent drctl cannot look into: nor can git
    return None
