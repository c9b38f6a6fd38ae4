"""drctl audit: the git history of the specs, each VM's changes, joined with the journal."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from reconciler.cli import main as cli
from reconciler.core import plan
from reconciler.core.state import Operation
from reconciler.engine import journal

PLAN = """\
apiVersion: drctl/v1
kind: RecoveryPlan
metadata: {name: finance}
spec:
  sites: [ams, rtm]
  defaults: {activeSite: ams}
  groups:
    - {name: db, vms: [sql01]}
  vms:
    - name: sql01
    - name: web01
"""
# sql01 moves to rtm: its replication follows (rtm->ams), by default.
MOVED = PLAN.replace("    - name: sql01\n", "    - name: sql01\n      activeSite: rtm\n")
TYPO = MOVED.replace("  defaults:", "  defualts:")

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


class Repo:
    """A real git repository in a tmp dir with a specs/ directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.specs = root / "specs"
        self.specs.mkdir(parents=True)
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str, env: dict[str, str] | None = None) -> str:
        return subprocess.run(
            ["git", *args], cwd=self.root, check=True, capture_output=True, text=True, env=env
        ).stdout.strip()

    def commit(self, message: str, author: str, at: datetime, files: dict[str, str | None]) -> str:
        for name, text in files.items():
            path = self.root / name
            if text is None:
                path.unlink()
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
        self.git("add", "-A")
        env = {
            **os.environ,
            "GIT_AUTHOR_NAME": author,
            "GIT_AUTHOR_EMAIL": f"{author}@example.com",
            "GIT_COMMITTER_NAME": author,
            "GIT_COMMITTER_EMAIL": f"{author}@example.com",
            "GIT_AUTHOR_DATE": at.isoformat(),
            "GIT_COMMITTER_DATE": at.isoformat(),
        }
        self.git("commit", "-q", "-m", message, env=env)
        return self.git("rev-parse", "HEAD")


def record(
    j: journal.Journal,
    revision: str,
    vm: str,
    operation: Operation,
    target: str | None,
    at: datetime,
    result: str = journal.SUCCEEDED,
    error: str | None = None,
    loss: float | None = None,
) -> None:
    entry = j.record_intent(
        plan.Action("finance", vm, operation, target, source_site=other_site(target)), revision, at
    ).id
    j.record_started(entry, f"job-{vm}-{operation}", at + timedelta(seconds=1))
    j.record_outcome(entry, result, at + timedelta(seconds=60), error, loss)


def other_site(site: str | None) -> str | None:
    return None if site is None else {"ams": "rtm", "rtm": "ams"}[site]


def audit(capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    code = cli.main(["audit", *args, "--output", "json"])
    out = capsys.readouterr().out
    assert code == 0
    return json.loads(out)


def action(
    operation: str,
    target: str | None,
    at: datetime,
    job: str,
    result: str = "succeeded",
    error: str | None = None,
    loss: float | None = None,
) -> dict[str, Any]:
    moves = {"PlannedFailover", "UnplannedFailover", "ReverseReplicate", "EnableReplication"}
    direction = f"{other_site(target)}->{target}" if target and operation in moves else None
    return {
        "operation": operation,
        "targetSite": target,
        "direction": direction,
        "startedAt": (at + timedelta(seconds=1)).isoformat(),
        "finishedAt": (at + timedelta(seconds=60)).isoformat(),
        "result": result,
        "error": error,
        "dataLossSeconds": loss,
        "jobId": job,
    }


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return Repo(tmp_path / "repo")


def test_each_commit_shows_who_changed_which_vm_what_drctl_did_and_when_it_converged(
    repo: Repo, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = repo.commit("Protect finance at ams", "alice", T0, {"specs/finance.yaml": PLAN})
    moved = repo.commit(
        "Move sql01 to rtm", "bob", T0 + timedelta(days=1), {"specs/finance.yaml": MOVED}
    )
    state = tmp_path / "state"
    j = journal.Journal(state)
    j.record_converged(first, [("finance", "sql01"), ("finance", "web01")], T0)
    t1 = T0 + timedelta(days=1, minutes=1)
    record(j, moved, "sql01", Operation.PLANNED_FAILOVER, "rtm", t1, loss=0.0)
    record(j, moved, "sql01", Operation.COMMIT, None, t1 + timedelta(minutes=2))
    record(j, moved, "sql01", Operation.REVERSE_REPLICATE, "ams", t1 + timedelta(minutes=4))
    converged = t1 + timedelta(minutes=6)
    j.record_converged(moved, [("finance", "sql01"), ("finance", "web01")], converged)
    j.close()

    got = audit(capsys, str(repo.specs), "--state-dir", str(state))

    assert got == [
        {
            "revision": first,
            "author": "alice",
            "date": "2026-11-20T09:00:00+00:00",
            "message": "Protect finance at ams",
            "plan": "finance",
            "vm": "sql01",
            "change": {
                "activeSite": [None, "ams"],
                "replication": [None, "ams->rtm"],
                "allowDataLoss": [None, False],
                "group": [None, "db"],
                "plan": [None, "finance"],
            },
            "actions": [],
            "convergedAt": T0.isoformat(),
            "signature": None,  # it moved no VM
        },
        {
            "revision": first,
            "author": "alice",
            "date": "2026-11-20T09:00:00+00:00",
            "message": "Protect finance at ams",
            "plan": "finance",
            "vm": "web01",
            "change": {
                "activeSite": [None, "ams"],
                "replication": [None, "ams->rtm"],
                "allowDataLoss": [None, False],
                "group": [None, None],
                "plan": [None, "finance"],
            },
            "actions": [],
            "convergedAt": T0.isoformat(),
            "signature": None,  # it moved no VM
        },
        {
            "revision": moved,
            "author": "bob",
            "date": "2026-11-21T09:00:00+00:00",
            "message": "Move sql01 to rtm",
            "plan": "finance",
            "vm": "sql01",
            "change": {"activeSite": ["ams", "rtm"], "replication": ["ams->rtm", "rtm->ams"]},
            "actions": [
                action("PlannedFailover", "rtm", t1, "job-sql01-PlannedFailover", loss=0.0),
                action("Commit", None, t1 + timedelta(minutes=2), "job-sql01-Commit"),
                action(
                    "ReverseReplicate",
                    "ams",
                    t1 + timedelta(minutes=4),
                    "job-sql01-ReverseReplicate",
                ),
            ],
            "convergedAt": converged.isoformat(),
            "signature": {"status": "N", "meaning": "none", "signer": None, "key": None},
        },
    ]


def test_an_invalid_commit_is_reported_and_the_next_change_is_measured_from_the_last_valid(
    repo: Repo, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    repo.commit("Protect finance", "alice", T0, {"specs/finance.yaml": PLAN})
    broken = repo.commit(
        "Move sql01 (typo)", "bob", T0 + timedelta(hours=1), {"specs/finance.yaml": TYPO}
    )
    fixed = repo.commit(
        "Fix the typo", "bob", T0 + timedelta(hours=2), {"specs/finance.yaml": MOVED}
    )

    got = audit(capsys, str(repo.specs), "--state-dir", str(tmp_path / "none"))

    invalid = got[2]
    assert invalid == {
        "revision": broken,
        "author": "bob",
        "date": "2026-11-20T10:00:00+00:00",
        "message": "Move sql01 (typo)",
        "plan": None,
        "vm": None,
        "change": {},
        "actions": [],
        "convergedAt": None,
        "signature": None,
        "invalid": [
            f"{repo.specs}/finance.yaml:6: unknown key 'defualts' in spec: remove it or fix its spelling"
        ],
    }
    # The typo commit also moved sql01; it takes effect when the specs are valid again.
    assert [(e["revision"], e["vm"], e["change"]) for e in got[3:]] == [
        (fixed, "sql01", {"activeSite": ["ams", "rtm"], "replication": ["ams->rtm", "rtm->ams"]}),
    ]


def test_vm_keeps_only_that_vms_entries(
    repo: Repo, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    repo.commit("Protect finance", "alice", T0, {"specs/finance.yaml": PLAN})
    moved = repo.commit("Move sql01", "bob", T0 + timedelta(days=1), {"specs/finance.yaml": MOVED})

    got = audit(capsys, str(repo.specs), "--vm", "web01", "--state-dir", str(tmp_path))
    assert [(e["vm"], e["change"]["activeSite"]) for e in got] == [("web01", [None, "ams"])]

    got = audit(capsys, str(repo.specs), "--vm", "sql01", "--state-dir", str(tmp_path))
    assert [(e["revision"], e["vm"]) for e in got][-1] == (moved, "sql01")
    assert {e["vm"] for e in got} == {"sql01"}


def test_the_consents_and_approvals_an_operator_commits_are_in_the_audit(
    repo: Repo, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Who allowed data loss for which event, approved which commit, discarded which writes."""
    repo.commit("Protect finance", "alice", T0, {"specs/finance.yaml": PLAN})
    scoped = MOVED.replace(
        "      activeSite: rtm\n",
        "      activeSite: rtm\n"
        '      policy: {allowDataLoss: {from: ams, until: "2026-11-21T12:00:00Z"}}\n',
    )
    repo.commit(
        "ams is down: fail sql01 over",
        "bob",
        T0 + timedelta(days=1),
        {"specs/finance.yaml": scoped},
    )
    salvaged = scoped.replace(
        "      activeSite: rtm\n", "      activeSite: rtm\n      discardLostWrites: job-000021\n"
    )
    repo.commit(
        "Salvaged sql01's lost writes",
        "carol",
        T0 + timedelta(days=2),
        {"specs/finance.yaml": salvaged},
    )
    got = audit(capsys, str(repo.specs), "--vm", "sql01", "--state-dir", str(tmp_path))
    assert [(e["author"], e["change"]) for e in got[1:]] == [
        (
            "bob",
            {
                "activeSite": ["ams", "rtm"],
                "replication": ["ams->rtm", "rtm->ams"],
                "dataLossConsent": [None, "from ams until 2026-11-21T12:00:00+00:00"],
            },
        ),
        ("carol", {"discardLostWrites": [None, "job-000021"]}),
    ]
    # A VM that appears says nothing of the keys nobody set.
    assert set(got[0]["change"]) == {"activeSite", "replication", "allowDataLoss", "group", "plan"}


def test_since_keeps_later_commits_and_measures_the_first_from_the_state_before_it(
    repo: Repo, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    repo.commit("Protect finance", "alice", T0, {"specs/finance.yaml": PLAN})
    moved = repo.commit("Move sql01", "bob", T0 + timedelta(days=1), {"specs/finance.yaml": MOVED})
    back = repo.commit(
        "Fail sql01 back", "carol", T0 + timedelta(days=2), {"specs/finance.yaml": PLAN}
    )

    got = audit(capsys, str(repo.specs), "--since", "2026-11-21", "--state-dir", str(tmp_path))
    assert [(e["revision"], e["vm"], e["change"]["activeSite"]) for e in got] == [
        (moved, "sql01", ["ams", "rtm"]),
        (back, "sql01", ["rtm", "ams"]),
    ]

    got = audit(
        capsys,
        str(repo.specs),
        "--since",
        "2026-11-22T09:00:00+00:00",
        "--state-dir",
        str(tmp_path),
    )
    assert [(e["revision"], e["change"]["activeSite"]) for e in got] == [(back, ["rtm", "ams"])]


def test_since_opening_on_an_invalid_commit_measures_from_the_last_valid_one(
    repo: Repo, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    repo.commit("Protect finance", "alice", T0, {"specs/finance.yaml": PLAN})
    repo.commit("Move sql01 (typo)", "bob", T0 + timedelta(days=1), {"specs/finance.yaml": TYPO})
    fixed = repo.commit(
        "Fix the typo", "bob", T0 + timedelta(days=2), {"specs/finance.yaml": MOVED}
    )

    got = audit(capsys, str(repo.specs), "--since", "2026-11-22", "--state-dir", str(tmp_path))
    assert [(e["revision"], e["vm"], e["change"]) for e in got] == [
        (fixed, "sql01", {"activeSite": ["ams", "rtm"], "replication": ["ams->rtm", "rtm->ams"]})
    ]


def test_vms_that_appear_disappear_or_move_between_plans_and_files(
    repo: Repo, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    repo.commit("Protect finance", "alice", T0, {"specs/finance.yaml": PLAN})
    hr = (
        PLAN.replace("finance", "hr")
        .replace("sql01", "hr01")
        .replace("    - name: web01\n", "    - name: web01\n      activeSite: rtm\n")
    )
    moved = repo.commit(
        "web01 belongs to hr now",
        "bob",
        T0 + timedelta(hours=1),
        {"specs/finance.yaml": PLAN.replace("    - name: web01\n", ""), "specs/hr/hr.yaml": hr},
    )
    gone = repo.commit("Retire hr", "bob", T0 + timedelta(hours=2), {"specs/hr/hr.yaml": None})

    got = audit(capsys, str(repo.specs), "--state-dir", str(tmp_path))
    assert [(e["revision"], e["plan"], e["vm"], e["change"]) for e in got[2:]] == [
        (
            moved,
            "hr",
            "hr01",
            {
                "activeSite": [None, "ams"],
                "replication": [None, "ams->rtm"],
                "allowDataLoss": [None, False],
                "group": [None, "db"],
                "plan": [None, "hr"],
            },
        ),
        (
            moved,
            "hr",
            "web01",
            {
                "activeSite": ["ams", "rtm"],
                "replication": ["ams->rtm", "rtm->ams"],
                "plan": ["finance", "hr"],
            },
        ),
        (
            gone,
            "hr",
            "hr01",
            {
                "activeSite": ["ams", None],
                "replication": ["ams->rtm", None],
                "allowDataLoss": [False, None],
                "group": ["db", None],
                "plan": ["hr", None],
            },
        ),
        (
            gone,
            "hr",
            "web01",
            {
                "activeSite": ["rtm", None],
                "replication": ["rtm->ams", None],
                "allowDataLoss": [False, None],
                "group": [None, None],
                "plan": ["hr", None],
            },
        ),
    ]


def test_actions_under_a_later_commit_outside_the_specs_belong_to_the_spec_commit(
    repo: Repo, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The daemon records HEAD's sha; a README commit carries the specs of the commit before."""
    repo.commit("Protect finance", "alice", T0, {"specs/finance.yaml": PLAN})
    moved = repo.commit("Move sql01", "bob", T0 + timedelta(hours=1), {"specs/finance.yaml": MOVED})
    readme = repo.commit("Docs", "carol", T0 + timedelta(hours=2), {"README": "hello\n"})
    state = tmp_path / "state"
    j = journal.Journal(state)
    t1 = T0 + timedelta(hours=1, minutes=1)
    record(j, moved, "sql01", Operation.PLANNED_FAILOVER, "rtm", t1)
    record(j, readme, "sql01", Operation.COMMIT, None, t1 + timedelta(hours=1))
    # An uncommitted edit is not the commit: its actions are not shown.
    record(j, f"{readme}+dirty.0123456789abcdef", "sql01", Operation.STOP_VM, None, t1)
    j.record_converged(readme, [("finance", "sql01")], t1 + timedelta(hours=2))
    j.close()

    got = audit(capsys, str(repo.specs), "--vm", "sql01", "--state-dir", str(state))

    assert [e["revision"] for e in got] == [got[0]["revision"], moved]
    assert [a["operation"] for a in got[1]["actions"]] == ["PlannedFailover", "Commit"]
    assert got[1]["convergedAt"] == (t1 + timedelta(hours=2)).isoformat()


def test_a_convergence_under_a_later_revision_that_left_the_vm_alone_counts(
    repo: Repo, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    repo.commit("Protect finance", "alice", T0, {"specs/finance.yaml": PLAN})
    moved = repo.commit("Move sql01", "bob", T0 + timedelta(hours=1), {"specs/finance.yaml": MOVED})
    policy = MOVED.replace("  defaults:", "  policy: {maxParallel: 2}\n  defaults:")
    web = MOVED.replace("    - name: web01\n", "    - name: web01\n      activeSite: rtm\n")
    repo.commit("Limit parallelism", "bob", T0 + timedelta(hours=2), {"specs/finance.yaml": policy})
    web_moved = repo.commit(
        "Move web01", "bob", T0 + timedelta(hours=3), {"specs/finance.yaml": web}
    )
    state = tmp_path / "state"
    j = journal.Journal(state)
    # sql01's failover ran under `moved` but the daemon first saw it converged
    # after web01's move had become the revision in force.
    record(j, moved, "sql01", Operation.PLANNED_FAILOVER, "rtm", T0 + timedelta(hours=1))
    at = T0 + timedelta(hours=4)
    j.record_converged(web_moved, [("finance", "sql01"), ("finance", "web01")], at)
    j.close()

    got = audit(
        capsys, str(repo.specs), "--since", "2026-11-20T10:00:00Z", "--state-dir", str(state)
    )

    assert [(e["revision"], e["vm"], e["convergedAt"]) for e in got] == [
        (moved, "sql01", at.isoformat()),
        (web_moved, "web01", at.isoformat()),
    ]


def test_without_a_journal_there_are_no_actions_and_none_is_created(
    repo: Repo, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    repo.commit("Protect finance", "alice", T0, {"specs/finance.yaml": PLAN})
    state = tmp_path / "no-state"
    got = audit(capsys, str(repo.specs), "--state-dir", str(state))
    assert [(e["vm"], e["actions"], e["convergedAt"]) for e in got] == [
        ("sql01", [], None),
        ("web01", [], None),
    ]
    assert not state.exists()


def test_a_commit_that_changes_no_vm_has_no_entry(
    repo: Repo, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    repo.commit("Protect finance", "alice", T0, {"specs/finance.yaml": PLAN})
    repo.commit(
        "Comment",
        "bob",
        T0 + timedelta(hours=1),
        {
            "specs/finance.yaml": "# owned by the finance team\n" + PLAN,
            "specs/README.md": "not a spec\n",
        },
    )
    assert len(audit(capsys, str(repo.specs), "--state-dir", str(tmp_path))) == 2


def test_text_output_shows_the_commit_and_each_change(
    repo: Repo, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    repo.commit("Protect finance", "alice", T0, {"specs/finance.yaml": PLAN})
    moved = repo.commit("Move sql01", "bob", T0 + timedelta(days=1), {"specs/finance.yaml": MOVED})
    state = tmp_path / "state"
    j = journal.Journal(state)
    record(j, moved, "sql01", Operation.UNPLANNED_FAILOVER, "rtm", T0, loss=42.0)
    j.close()

    assert (
        cli.main(
            [
                "audit",
                str(repo.specs),
                "--vm",
                "sql01",
                "--since",
                "2026-11-21",
                "--state-dir",
                str(state),
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.splitlines() == [
        f"{moved[:12]}  2026-11-21T09:00:00+00:00  bob: Move sql01",
        "  signature: none",
        "  finance/sql01",
        '    activeSite: "ams" -> "rtm"',
        '    replication: "ams->rtm" -> "rtm->ams"',
        "    UnplannedFailover to rtm: succeeded, 2026-11-20T09:00:01+00:00 .. 2026-11-20T09:01:00+00:00, job job-sql01-UnplannedFailover, data loss 42 s",
        "    not seen converged",
    ]


def test_outside_a_git_work_tree_or_with_a_bad_date_the_exit_code_is_2(
    tmp_path: Path, repo: Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    assert cli.main(["audit", str(plain)]) == 2
    assert "is not in a git work tree" in capsys.readouterr().err
    assert cli.main(["audit", str(repo.specs), "--since", "last tuesday"]) == 2
    assert "--since must be an ISO date" in capsys.readouterr().err


def test_a_repository_without_commits_has_an_empty_audit(
    repo: Repo, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert audit(capsys, str(repo.specs), "--state-dir", str(tmp_path)) == []


def test_a_merged_branch_is_one_revision_with_its_net_change(
    repo: Repo, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The daemon following main sees the merge, not the branch's commits."""
    repo.commit("Protect finance", "alice", T0, {"specs/finance.yaml": PLAN})
    repo.git("checkout", "-q", "-b", "dr-test")
    repo.commit("Move sql01", "bob", T0 + timedelta(hours=1), {"specs/finance.yaml": MOVED})
    repo.commit(
        "Move web01 too",
        "bob",
        T0 + timedelta(hours=2),
        {
            "specs/finance.yaml": MOVED.replace(
                "    - name: web01\n", "    - name: web01\n      activeSite: rtm\n"
            )
        },
    )
    repo.git("checkout", "-q", "main")
    repo.commit("Unrelated", "carol", T0 + timedelta(hours=3), {"README": "hello\n"})
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "carol",
        "GIT_AUTHOR_EMAIL": "c@example.com",
        "GIT_COMMITTER_NAME": "carol",
        "GIT_COMMITTER_EMAIL": "c@example.com",
        "GIT_AUTHOR_DATE": (T0 + timedelta(hours=4)).isoformat(),
        "GIT_COMMITTER_DATE": (T0 + timedelta(hours=4)).isoformat(),
    }
    repo.git("merge", "-q", "--no-ff", "-m", "Merge the DR test", "dr-test", env=env)
    merge = repo.git("rev-parse", "HEAD")

    got = audit(capsys, str(repo.specs), "--state-dir", str(tmp_path))

    assert [(e["revision"], e["message"], e["vm"], e["change"]["activeSite"]) for e in got[2:]] == [
        (merge, "Merge the DR test", "sql01", ["ams", "rtm"]),
        (merge, "Merge the DR test", "web01", ["ams", "rtm"]),
    ]


def test_spec_files_with_spaces_in_their_names_are_read(
    repo: Repo, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    repo.commit("Protect finance", "alice", T0, {"specs/finance plan.yaml": PLAN})
    repo.commit("Move sql01", "bob", T0 + timedelta(hours=1), {"specs/finance plan.yaml": MOVED})
    got = audit(capsys, str(repo.specs), "--vm", "sql01", "--state-dir", str(tmp_path))
    assert [e["change"]["activeSite"] for e in got] == [[None, "ams"], ["ams", "rtm"]]


def test_the_audit_and_the_plan_describe_a_move_the_same_way(
    repo: Repo, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A commit moves sql01; before it runs, `drctl plan` shows the same change per field."""
    repo.commit("Protect finance", "alice", T0, {"specs/finance.yaml": PLAN})
    repo.commit("Move sql01", "bob", T0 + timedelta(days=1), {"specs/finance.yaml": MOVED})
    state = tmp_path / "state"
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(
        "sites: [ams, rtm]\nvms:\n"
        "  - {name: sql01, activeSite: ams, replication: ams->rtm}\n"
        "  - {name: web01, activeSite: ams, replication: ams->rtm}\n"
    )
    assert cli.main(["fabric", "init", str(inventory), "--state-dir", str(state)]) == 0
    capsys.readouterr()

    audited = audit(capsys, str(repo.specs), "--vm", "sql01", "--state-dir", str(state))[-1]
    assert cli.main(["plan", str(repo.specs), "--output", "json", "--state-dir", str(state)]) == 0
    planned = {vm["name"]: vm for vm in json.loads(capsys.readouterr().out)["vms"]}

    move = {"activeSite": ["ams", "rtm"], "replication": ["ams->rtm", "rtm->ams"]}
    assert audited["change"] == move
    assert planned["sql01"]["changes"] == move
    assert planned["web01"]["changes"] == {}
