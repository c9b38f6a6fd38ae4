"""Git notes of what drctl did for each revision, under `refs/notes/drctl`.

With `drctl run --git-notes`, the daemon calls `summarise` when a revision
has converged or is blocked, then `attach`, so that
`git log --notes=drctl -- specs/` shows the DR outcome beside each change
and `git push origin refs/notes/drctl` publishes it.

A note lives in its own ref: attaching one never touches the work tree, the
index, HEAD or the branch, and replaces the note drctl attached to that
commit before.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from reconciler import errors
from reconciler.core.plan import DrillRecord
from reconciler.engine import drill, journal
from reconciler.gitops import git

NOTES_REF = "drctl"  # refs/notes/drctl

# The notes ref gets a commit of its own, which needs an author and a
# committer. drctl wrote the note, and a daemon's account often has no
# user.email configured: name drctl, whatever the user's configuration says.
_IDENTITY = {
    "GIT_AUTHOR_NAME": "drctl",
    "GIT_AUTHOR_EMAIL": "drctl@localhost",
    "GIT_COMMITTER_NAME": "drctl",
    "GIT_COMMITTER_EMAIL": "drctl@localhost",
}


def summarise(
    revision: str,
    entries: list[journal.Entry],
    outcome: str,
    blocked: dict[str, str],
    drills: Iterable[DrillRecord] = (),
) -> str:
    """The note for `revision`: `drctl: <outcome>`, each VM's operations, the blocked VMs.

    `entries` may hold the whole journal: entries of other revisions are left
    out. `blocked` maps a VM's name to the reason it is blocked. `drills` are
    the drills the revision requested, each said in a line with its result.
    """
    lines = [f"drctl: {outcome}"]
    lines += (_drill(r) for r in drills if r.revision == revision and r.ended_at is not None)
    mine = [e for e in entries if e.revision == revision]
    if not mine:
        lines += ["", "drctl ran no operation for this revision"]
    by_vm: dict[tuple[str, str], list[journal.Entry]] = {}
    for entry in sorted(mine, key=lambda e: e.id):
        by_vm.setdefault((entry.plan, entry.vm), []).append(entry)
    for (plan, vm), done in sorted(by_vm.items()):
        lines += ["", f"{plan}/{vm}"]
        lines += (f"  {_operation(entry)}" for entry in done)
    if blocked:
        lines += ["", "blocked:"]
        for vm, reason in sorted(blocked.items()):
            first, *rest = reason.splitlines() or [""]
            lines.append(f"  {vm}: {first}")
            lines += (f"    {line}" for line in rest)
    return "\n".join(lines) + "\n"


def attach(repo_dir: Path, commit: str, text: str) -> None:
    """Attach `text` to `commit` as its drctl note, replacing any earlier one.

    `repo_dir` is any directory of the work tree (the spec directory will
    do). Raises `GitError` with git's own message when git refuses.
    """
    # `^{commit}`: git would attach a note to any well-formed sha, even one
    # of no object in the repository.
    try:
        git.run(
            repo_dir,
            "notes",
            f"--ref={NOTES_REF}",
            "add",
            "-f",
            "-F",
            "-",
            f"{commit}^{{commit}}",
            input=text.encode(),
            env=_IDENTITY,
            timeout=60,
        )
    except errors.GitError as exc:
        raise errors.GitError(f"cannot attach the drctl note to {commit}: {exc}") from exc


def _operation(entry: journal.Entry) -> str:
    if entry.direction:
        target = f" {entry.direction}"
    else:
        target = f" to {entry.target_site}" if entry.target_site else ""
    parts = [f"{entry.operation}{target}: {entry.result}"]
    parts.append(f"{_time(entry.started_at)} .. {_time(entry.finished_at)}")
    if entry.job_id:
        parts.append(f"job {entry.job_id}")
    if entry.data_loss_seconds is not None:
        parts.append(f"data loss {entry.data_loss_seconds:g} s")
    if entry.error:
        parts.append(f"error: {' '.join(entry.error.split())}")
    return ", ".join(parts)


def _drill(record: DrillRecord) -> str:
    rto = drill.test_rto_seconds(record)
    parts = [f"drill {record.plan}/{record.id}: {record.result}"]
    if rto is not None:
        parts.append(f"test RTO {rto:g} s")
    if record.checks:
        parts.append(f"checks {sum(c.passed for c in record.checks)}/{len(record.checks)} passed")
    if record.failed:
        parts.append(record.failed)
    return ", ".join(parts)


def _time(at: datetime | None) -> str:
    return at.isoformat() if at is not None else "-"
