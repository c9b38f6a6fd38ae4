"""`drctl run --require-signed-commits` on a virtual clock: a revision whose commits git does
not verify moves nothing, says why on the VMs it would move, and the next signed one acts."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from daemon.test_loop import PLAN, Setup, daemon_status
from signing import Keys, Signer, commit, git

from reconciler.cli import main as cli
from reconciler.daemon import loop
from reconciler.engine import execute, metrics
from reconciler.gitops import signature


class Signed(Setup):
    """test_loop's site, its specs in git, the daemon requiring signed commits."""

    def __init__(self, tmp_path: Path, keys: Keys, *, trust_merges: bool = False) -> None:
        self.policy = signature.Policy(keys.allowed, trust_merges)
        self.bob = keys.ssh("bob", "bob@example.com")
        keys.trust(self.bob)
        super().__init__(tmp_path)
        self.top = tmp_path
        git(self.top, "init", "-q", "-b", "main")
        self.accepted = self.commit("finance at ams", "ams", self.bob)

    def new_daemon(self) -> loop.Daemon:
        d = loop.Daemon(
            loop.Config(
                self.specs,
                self.state,
                resync=30.0,
                settings=execute.Settings(backoff_base=1.0),
                signed=self.policy,
            ),
            self.fabric,
            self.clock,
            metrics.Metrics(),
        )
        d.prepare()
        return d

    def commit(self, message: str, site: str, signer: Signer | None) -> str:
        """finance wanted at `site`, committed (signed by `signer`, or not); the daemon told."""
        self.want(site)
        sha = commit(self.top, message, None, signer, ("Mallory", "mallory@example.com"))
        self.daemon.notice_change()
        return sha

    def sites(self) -> set[str]:
        return {vm.active_site for vm in self.fabric.observe().vms.values()}

    def untrusted(self) -> dict[str, Any]:
        said = daemon_status(self)["revisionUntrusted"]
        assert isinstance(said, dict)
        return said

    def reason(self) -> str:
        """The one reason the newest revision is kept out, as daemon.json says it."""
        (why,) = self.untrusted()["reasons"]
        assert isinstance(why, str)
        return why


def status_text(s: Setup, capsys: pytest.CaptureFixture[str]) -> str:
    """What `drctl status` prints on the daemon's state dir (the daemon is this process)."""
    capsys.readouterr()
    assert cli.main(["status", str(s.specs), "--state-dir", str(s.state)]) == 0
    return capsys.readouterr().out


def test_an_unsigned_move_moves_nothing_and_says_why_then_the_signed_one_acts(
    tmp_path: Path, keys: Keys, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    s = Signed(tmp_path, keys)
    s.passes(1)
    assert s.daemon.in_force is not None
    assert s.daemon.in_force.revision == s.accepted
    assert s.sample("drctl_spec_revision_trusted") == 1
    unsigned = s.commit("finance to rtm", "rtm", None)
    s.passes(10)
    assert s.jobs() == []
    assert s.sites() == {"ams"}
    assert s.daemon.in_force.revision == s.accepted
    assert s.sample("drctl_spec_revision_trusted") == 0
    assert s.sample("drctl_spec_valid") == 1  # valid, and not signed
    said = s.untrusted()
    assert said["revision"] == unsigned
    assert said["vms"] == [{"plan": "finance", "vm": "sql01"}, {"plan": "finance", "vm": "web01"}]
    why = s.reason()
    assert why.startswith(
        f"commit {unsigned[:12]} ('finance to rtm', committed by Mallory <mallory@example.com>) "
        "has no signature"
    )
    logged = [r.getMessage() for r in caplog.records if "not applied" in r.getMessage()]
    assert logged == [f"revision {unsigned} not applied: {why}"]  # once, not every look
    shown = status_text(s, capsys)
    assert f"newest revision {unsigned} not signed as required, kept out: {why}" in shown
    rows = [line for line in shown.splitlines() if line.startswith("finance")]
    assert len(rows) == 2
    for row in rows:
        assert " Blocked " in row
        assert f"not applied, revision {s.accepted} stays in force: {why}" in row
    capsys.readouterr()
    assert cli.main(["status", str(s.specs), "--state-dir", str(s.state), "--output", "json"]) == 0
    vms = json.loads(capsys.readouterr().out)["vms"]
    assert {(vm["phase"], vm["reason"].startswith("not applied")) for vm in vms} == {
        ("Blocked", True)
    }
    # Signed in its place (amended, pushed, pulled): it acts.
    git(s.top, *s.bob.options, "commit", "-q", "--amend", "--no-edit", "-S")
    s.daemon.notice_change()
    s.passes(40)
    assert s.sites() == {"rtm"}
    assert s.sample("drctl_spec_revision_trusted") == 1
    assert daemon_status(s)["revisionUntrusted"] is None


def test_a_signed_commit_on_top_of_an_unsigned_one_is_still_refused(
    tmp_path: Path, keys: Keys
) -> None:
    s = Signed(tmp_path, keys)
    s.passes(1)
    unsigned = s.commit("finance to rtm", "rtm", None)
    with (s.specs / "finance.yaml").open("a") as spec:
        spec.write("# reviewed\n")
    commit(s.top, "finance to rtm, reviewed and signed", None, s.bob)
    s.daemon.notice_change()
    s.passes(5)
    why = s.reason()
    assert why.startswith(f"commit {unsigned[:12]} ")
    assert s.jobs() == []


def test_a_key_trusted_later_lets_the_revision_in_at_the_next_look(
    tmp_path: Path, keys: Keys
) -> None:
    s = Signed(tmp_path, keys)
    s.passes(1)
    eve = keys.ssh("eve", "eve@example.com")
    s.commit("finance to rtm", "rtm", eve)
    s.passes(5)
    assert s.jobs() == []
    why = s.reason()
    assert f"is signed with key {eve.key}, a key git does not trust" in why
    keys.trust(eve)
    s.daemon.notice_change()  # as the next resync does
    s.passes(40)
    assert s.sites() == {"rtm"}
    assert s.sample("drctl_spec_revision_trusted") == 1


def test_gpg_signatures_from_drctls_keyring(
    tmp_path: Path, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GNUPGHOME", str(keys.verifier))
    alice = keys.gpg("Alice", "alice@example.com")
    mallory = keys.gpg("Mallory", "mallory@example.com")
    keys.trust(alice)
    s = Signed(tmp_path, keys)
    s.passes(1)
    s.commit("finance to rtm", "rtm", mallory)
    s.passes(5)
    assert s.jobs() == []
    why = s.reason()
    assert "a key git does not know (git verify-commit: gpg: Can't check signature" in why
    git(s.top, *alice.options, "commit", "-q", "--amend", "--no-edit", "-S", env=alice.env)
    s.daemon.notice_change()
    s.passes(40)
    assert s.sites() == {"rtm"}


@pytest.mark.parametrize("trust_merges", [False, True])
def test_a_signed_merge_of_an_unsigned_branch_acts_only_with_trust_merges(
    tmp_path: Path, keys: Keys, trust_merges: bool
) -> None:
    s = Signed(tmp_path, keys, trust_merges=trust_merges)
    s.passes(1)
    git(s.top, "checkout", "-q", "-b", "failover")
    s.commit("finance to rtm, unsigned", "rtm", None)
    git(s.top, "checkout", "-q", "main")
    bob = s.bob
    git(s.top, *bob.options, "merge", "-q", "--no-ff", "-S", "-m", "merge failover", "failover")
    s.daemon.notice_change()
    s.passes(40)
    if trust_merges:
        assert s.sites() == {"rtm"}
        assert s.sample("drctl_spec_revision_trusted") == 1
    else:
        assert s.jobs() == []
        assert s.sample("drctl_spec_revision_trusted") == 0
        why = s.reason()
        assert "a signed merge vouches for it only with --trust-merges" in why


def test_uncommitted_edits_are_never_applied(tmp_path: Path, keys: Keys) -> None:
    s = Signed(tmp_path, keys)
    s.passes(1)
    s.want("rtm")  # edited in the daemon's clone, never committed
    s.daemon.notice_change()
    s.passes(10)
    assert s.jobs() == []
    assert s.sample("drctl_spec_revision_trusted") == 0
    why = s.reason()
    assert "(edits not committed)" in why
    assert "commit and sign them (git commit -S)" in why
    s.want("ams")  # the edit undone: the revision in force again, trusted
    s.daemon.notice_change()
    s.passes(1)
    assert s.sample("drctl_spec_revision_trusted") == 1
    assert daemon_status(s)["revisionUntrusted"] is None


def test_a_first_start_on_an_unsigned_revision_acts_on_nothing(
    tmp_path: Path, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    s = Signed(tmp_path, keys)
    git(s.top, "commit", "-q", "--amend", "--no-edit", "--no-gpg-sign")  # unsigned after all
    s.passes(5)
    assert s.daemon.in_force is None
    assert s.sample("drctl_spec_revision_trusted") == 0
    assert s.untrusted()["vms"] == [
        {"plan": "finance", "vm": "sql01"},
        {"plan": "finance", "vm": "web01"},
    ]
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "revision in force: none" in warned[-1].getMessage()


def test_a_restarted_daemon_keeps_the_signed_revision_and_refuses_the_unsigned(
    tmp_path: Path, keys: Keys
) -> None:
    s = Signed(tmp_path, keys)
    s.passes(1)
    s.commit("finance to rtm", "rtm", None)
    s.daemon = s.new_daemon()  # restarted while HEAD is unsigned
    s.passes(10)
    assert s.daemon.in_force is not None
    assert s.daemon.in_force.revision == s.accepted
    assert s.jobs() == []
    assert s.sample("drctl_spec_revision_trusted") == 0


def test_without_the_flag_an_unsigned_commit_acts(tmp_path: Path) -> None:
    """The rule is the flag's: the same unsigned move, and a daemon that does not require it."""
    s = Setup(tmp_path)
    git(tmp_path, "init", "-q", "-b", "main")
    commit(tmp_path, "finance at ams", {"specs/finance.yaml": PLAN.replace("SITE", "ams")})
    s.passes(1)
    s.want("rtm")
    commit(tmp_path, "finance to rtm")
    s.daemon.notice_change()
    s.passes(40)
    assert {vm.active_site for vm in s.fabric.observe().vms.values()} == {"rtm"}
    assert s.sample("drctl_spec_revision_trusted") is None
