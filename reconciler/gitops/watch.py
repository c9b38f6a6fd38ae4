"""Change detection for `drctl run`: the one module that uses watchfiles (inotify).

The daemon (daemon/loop.py) iterates `spec_changes` in a thread of its own
and reads the revision again after each batch. What counts as a change: a
spec file under the spec directory, or whatever moves its HEAD: the HEAD of
its work tree's git dir, and refs/ and packed-refs in the repository's common
dir (where a branch's ref lives for a `git worktree add` checkout; a
submodule's git dir is under the superproject's .git/modules). git.py says
where those are, following a `.git` file.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import watchfiles

from reconciler import errors
from reconciler.gitops import git, specdir

log = logging.getLogger("drctl")

# A `git pull` writes files and refs within a few ms: one batch, one re-read.
DEBOUNCE_MS = 100


@dataclass(frozen=True)
class Targets:
    """What the daemon watches for one spec directory."""

    specs_dir: Path
    git_dir: Path | None = None  # the work tree's own: HEAD, per-worktree refs
    common_dir: Path | None = None  # the repository's: refs/, packed-refs

    def roots(self) -> list[Path]:
        """The directories to watch, recursively."""
        roots = [self.specs_dir]
        if self.common_dir is not None:
            roots.append(self.common_dir)
        # A worktree's git dir is inside the common dir: watched already.
        if self.git_dir is not None and (
            self.common_dir is None or not self.git_dir.is_relative_to(self.common_dir)
        ):
            roots.append(self.git_dir)
        return roots

    def wants(self, path: str) -> bool:
        """Whether a change of `path` may change the revision of the specs."""
        # The work tree's own git dir first: it may lie inside the common dir.
        rest = _under(self.git_dir, path)
        if rest is not None:
            if rest == "HEAD" or _is_ref(rest):
                return True
            if self.git_dir != self.common_dir:
                return False  # the rest of a worktree's git dir: its index, logs
        rest = _under(self.common_dir, path)
        if rest is not None:
            # Not the main work tree's HEAD when this is another worktree.
            return rest == "packed-refs" or _is_ref(rest)
        # The change kind plays no part in watchfiles' default filter.
        # Any case: a file renamed to `.YAML` is refused, and that is news too.
        return path.lower().endswith(specdir.SUFFIXES) and _DEFAULT(
            watchfiles.Change.modified, path
        )


def targets_of(specs_dir: Path) -> Targets:
    """The spec directory and the git dirs that hold its HEAD and refs, if it is in git.

    A repository git refuses leaves the spec files watched alone: the
    daemon's next read of the revision reports git's reason.
    """
    try:
        tree = git.work_tree(specs_dir)
    except errors.GitError as exc:
        log.warning("watching the spec files of %s only: %s", specs_dir, exc)
        return Targets(specs_dir)
    if tree is None:
        return Targets(specs_dir)
    return Targets(specs_dir, tree.git_dir, tree.common_dir)


def spec_changes(targets: Targets, stop: threading.Event) -> Iterator[None]:
    """One item per batch of changes that may change the revision, until `stop` is set.

    A spec directory reached through a symlink that is swapped (git-sync
    publishes each commit as a new worktree and flips its link, then deletes
    the old one) is watched again where it leads now, after the batch that
    the swap or the deletion made. `WatchError` when the watch cannot go on
    (a directory gone, no inotify watches left).
    """
    while not stop.is_set():
        leads_to = os.path.realpath(targets.specs_dir)
        for _batch in _batches(targets, stop):
            yield
            if os.path.realpath(targets.specs_dir) != leads_to:
                break
        else:
            return
        targets = targets_of(targets.specs_dir)


def _batches(targets: Targets, stop: threading.Event) -> Iterator[None]:
    try:
        for _changes in watchfiles.watch(
            *targets.roots(),
            watch_filter=_Filter(targets),
            debounce=DEBOUNCE_MS,
            step=5,
            stop_event=stop,
            rust_timeout=500,
            yield_on_timeout=False,
            raise_interrupt=False,
        ):
            yield
    except (OSError, RuntimeError) as exc:
        raise errors.WatchError(f"cannot watch {targets.specs_dir}: {exc}") from exc


class _Filter(watchfiles.BaseFilter):
    def __init__(self, targets: Targets) -> None:
        super().__init__()
        self.targets = targets

    def __call__(self, change: watchfiles.Change, path: str) -> bool:
        return self.targets.wants(path)


# Editor swap files, backups, VCS and cache directories (watchfiles' own list).
_DEFAULT = watchfiles.DefaultFilter()


def _under(root: Path | None, path: str) -> str | None:
    if root is None:
        return None
    prefix = str(root) + os.sep
    return path[len(prefix) :] if path.startswith(prefix) else None


def _is_ref(rest: str) -> bool:
    return rest.startswith("refs" + os.sep) and not rest.endswith(".lock")
