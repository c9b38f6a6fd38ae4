"""Git notes under refs/notes/drctl: what drctl did for a revision, beside the commit."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from reconciler import errors
from reconciler.core import plan
from reconciler.core.state import Operation
from reconciler.engine import journal
from reconciler.gitops import notes

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repository whose user has no identity configured anywhere."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for name in (
        "GIT_AUTHOR_NAME",
        "GIT_AUTHOR_EMAIL",
        "GIT_COMMITTER_NAME",
        "GIT_COMMITTER_EMAIL",
        "EMAIL",
    ):
        monkeypatch.delenv(name, raising=False)
    root = tmp_path / "repo"
    (root / "specs").mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    # Without this git would make an identity up from the host name.
    git(root, "config", "user.useConfigOnly", "true")
    (root / "specs" / "finance.yaml").write_text("# a spec\n")
    git(root, "add", "-A")
    git(
        root,
        "-c",
        "user.name=Ops",
        "-c",
        "user.email=ops@example.com",
        "commit",
        "-q",
        "-m",
        "Move sql01 to rtm",
    )
    return root


def entries(state_dir: Path, revision: str) -> list[journal.Entry]:
    j = journal.Journal(state_dir)
    failover = j.record_intent(
        plan.Action("finance", "sql01", Operation.UNPLANNED_FAILOVER, "rtm"), revision, T0
    ).id
    j.record_started(failover, "job-1", T0 + timedelta(seconds=1))
    j.record_outcome(
        failover, journal.SUCCEEDED, T0 + timedelta(seconds=90), data_loss_seconds=42.0
    )
    commit = j.record_intent(
        plan.Action("finance", "sql01", Operation.COMMIT, None), revision, T0 + timedelta(minutes=2)
    ).id
    j.record_started(commit, "job-2", T0 + timedelta(minutes=2))
    j.record_outcome(commit, journal.FAILED, T0 + timedelta(minutes=3), "host busy")
    other = j.record_intent(
        plan.Action("finance", "web01", Operation.PLANNED_FAILOVER, "rtm"), "another-revision", T0
    ).id
    j.record_outcome(other, journal.SUCCEEDED, T0)
    found = j.entries()
    j.close()
    return found


def test_the_summary_lists_each_vms_operations_and_the_blocked_vms(tmp_path: Path) -> None:
    text = notes.summarise(
        "rev1",
        entries(tmp_path, "rev1"),
        "blocked",
        {"web01": "needs allowDataLoss: true\nsite ams is unreachable"},
    )
    assert text == (
        "drctl: blocked\n"
        "\n"
        "finance/sql01\n"
        "  UnplannedFailover to rtm: succeeded, 2026-11-20T09:00:01+00:00 .. "
        "2026-11-20T09:01:30+00:00, job job-1, data loss 42 s\n"
        "  Commit: failed, 2026-11-20T09:02:00+00:00 .. 2026-11-20T09:03:00+00:00, job job-2, "
        "error: host busy\n"
        "\n"
        "blocked:\n"
        "  web01: needs allowDataLoss: true\n"
        "    site ams is unreachable\n"
    )


def test_a_revision_that_needed_nothing_says_so(tmp_path: Path) -> None:
    assert notes.summarise("rev2", entries(tmp_path, "rev1"), "converged", {}) == (
        "drctl: converged\n\ndrctl ran no operation for this revision\n"
    )


def test_attach_shows_the_note_in_git_log_and_touches_nothing_else(
    repo: Path, tmp_path: Path
) -> None:
    head = git(repo, "rev-parse", "HEAD")
    (repo / "specs" / "finance.yaml").write_text("# an edit in progress\n")
    status = git(repo, "status", "--porcelain")
    text = notes.summarise(head, entries(tmp_path / "state", head), "converged", {})

    notes.attach(repo / "specs", head, text)

    assert git(repo, "notes", "--ref=drctl", "show", head) == text.rstrip("\n")
    assert "Notes (drctl):\n    drctl: converged" in git(
        repo, "log", "--notes=drctl", "--", "specs/"
    )
    assert git(repo, "rev-parse", "HEAD") == head
    assert git(repo, "symbolic-ref", "HEAD") == "refs/heads/main"
    assert git(repo, "status", "--porcelain") == status
    assert (repo / "specs" / "finance.yaml").read_text() == "# an edit in progress\n"
    assert git(repo, "log", "-1", "--format=%an <%ae>", "refs/notes/drctl") == (
        "drctl <drctl@localhost>"
    )


def test_attaching_again_replaces_the_note(repo: Path) -> None:
    head = git(repo, "rev-parse", "HEAD")
    notes.attach(repo, head, "drctl: blocked\n")
    notes.attach(repo, head, "drctl: converged\n")
    assert git(repo, "notes", "--ref=drctl", "show", head) == "drctl: converged"
    assert git(repo, "notes", "--ref=drctl", "list").count("\n") == 0  # one note


def test_a_git_failure_is_a_drctl_error_with_gits_message(repo: Path) -> None:
    with pytest.raises(errors.GitError) as caught:
        notes.attach(repo, "0" * 40, "drctl: converged\n")
    assert "cannot attach the drctl note to 0000000000000000000000000000000000000000" in str(
        caught.value
    )
    assert "fatal:" in str(caught.value)
    assert not git(repo, "for-each-ref", "refs/notes/")
