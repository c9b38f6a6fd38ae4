"""Which revisions `--require-signed-commits` lets act: real GPG and SSH signatures made here,
verified by git with its own trust configuration."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from gitops.test_audit import MOVED, PLAN
from signing import Keys, Signer, commit, git

from reconciler.cli import main as cli
from reconciler.gitops import revision, signature


def repo(tmp_path: Path) -> Path:
    """An empty repository whose specs are in specs/; returns its top."""
    top = tmp_path / "repo"
    (top / "specs").mkdir(parents=True)
    git(top, "init", "-q", "-b", "main")
    (top / "README").write_text("specs for drctl\n")
    return top


def judge(
    top: Path, accepted: str | None = None, keys: Keys | None = None, **policy: bool
) -> signature.Verdict:
    allowed = keys.allowed if keys is not None else None
    return signature.judge(
        top / "specs",
        revision.spec_revision(top / "specs"),
        accepted,
        signature.Policy(allowed, trust_merges=policy.get("trust_merges", False)),
    )


@pytest.fixture
def verifier(keys: Keys, monkeypatch: pytest.MonkeyPatch) -> Keys:
    """`keys`, with this process verifying as drctl would: the verifier's GPG keyring."""
    monkeypatch.setenv("GNUPGHOME", str(keys.verifier))
    return keys


def test_a_commit_signed_with_a_trusted_gpg_key_acts(tmp_path: Path, verifier: Keys) -> None:
    alice = verifier.gpg("Alice", "alice@example.com")
    verifier.trust(alice)
    top = repo(tmp_path)
    sha = commit(top, "finance at ams", {"specs/finance.yaml": "a: 1\n"}, alice)
    verdict = judge(top)
    assert verdict.trusted, verdict.reasons
    (check,) = verdict.checked
    assert (check.sha, check.accepted) == (sha, True)
    found = signature.describe(top / "specs", [sha], signature.Policy())
    assert found[sha].signer == "Alice <alice@example.com>"
    assert found[sha].key == alice.key


def test_a_gpg_key_drctl_does_not_know_is_refused(tmp_path: Path, verifier: Keys) -> None:
    mallory = verifier.gpg("Mallory", "mallory@example.com")  # never trusted
    top = repo(tmp_path)
    sha = commit(top, "everything to rtm", {"specs/finance.yaml": "a: 2\n"}, mallory, ("M", "m@x"))
    verdict = judge(top)
    assert not verdict.trusted
    (why,) = verdict.reasons
    assert why.startswith(
        f"commit {sha[:12]} ('everything to rtm', committed by M <m@x>) is signed with key "
    )
    assert (
        "a key git does not know (git verify-commit: gpg: Can't check signature: No public" in why
    )
    assert "add the key to the allowed signers file (SSH) or to drctl's keyring" in why


def test_gits_own_trust_level_decides_for_gpg(tmp_path: Path, verifier: Keys) -> None:
    """A key in the keyring of unknown trust passes git's default; gpg.minTrustLevel raises it."""
    alice = verifier.gpg("Alice", "alice@example.com")
    verifier.trust(alice)
    top = repo(tmp_path)
    commit(top, "finance at ams", {"specs/finance.yaml": "a: 1\n"}, alice)
    git(top, "config", "gpg.minTrustLevel", "fully")
    verdict = judge(top)
    assert not verdict.trusted
    assert "is signed by Alice <alice@example.com> with key" in verdict.reasons[0]
    assert "a key git does not trust" in verdict.reasons[0]
    subprocess.run(
        ["gpg", "--batch", "--import-ownertrust"],
        input=f"{alice.key}:6:\n".encode(),  # ultimate, as for one's own key
        capture_output=True,
        check=True,
    )
    assert judge(top).trusted


def test_ssh_signatures_are_checked_against_the_allowed_signers_file(
    tmp_path: Path, keys: Keys
) -> None:
    bob = keys.ssh("bob", "bob@example.com")
    eve = keys.ssh("eve", "eve@example.com")
    keys.trust(bob)
    top = repo(tmp_path)
    first = commit(top, "finance at ams", {"specs/finance.yaml": "a: 1\n"}, bob)
    trusted = judge(top, keys=keys)
    assert trusted.trusted, trusted.reasons
    assert [(c.sha, c.accepted) for c in trusted.checked] == [(first, True)]
    # Without the allowed signers, git cannot check an SSH signature at all.
    (unchecked,) = judge(top).reasons
    assert "is signed, but git cannot check the signature (git verify-commit: error: " in unchecked
    assert "gpg.ssh.allowedSignersFile needs to be configured" in unchecked
    assert "--allowed-signers FILE" in unchecked
    sha = commit(top, "finance to rtm", {"specs/finance.yaml": "a: 2\n"}, eve)
    (why,) = judge(top, first, keys).reasons
    assert why.startswith(
        f"commit {sha[:12]} ('finance to rtm', committed by Ops <ops@example.com>)"
    )
    assert f"is signed with key {eve.key}, a key git does not trust" in why
    assert "(git verify-commit: No principal matched.)" in why


def test_an_unsigned_commit_is_refused_naming_who_committed_it(tmp_path: Path, keys: Keys) -> None:
    top = repo(tmp_path)
    sha = commit(top, "finance to rtm", {"specs/finance.yaml": "a: 2\n"}, None, ("Mallory", "m@x"))
    (why,) = judge(top, keys=keys).reasons
    assert why == (
        f"commit {sha[:12]} ('finance to rtm', committed by Mallory <m@x>) has no signature: "
        "drctl acts only on signed commits (--require-signed-commits); sign it "
        "(git commit --amend -S) and push it in its place; every commit since the revision "
        "in force that touches the specs must be signed"
    )


def signed_base(top: Path, keys: Keys) -> tuple[Signer, str]:
    bob = keys.ssh("bob", "bob@example.com")
    keys.trust(bob)
    return bob, commit(top, "finance at ams", {"specs/finance.yaml": "a: 1\n"}, bob)


def test_every_spec_commit_since_the_accepted_revision_is_verified(
    tmp_path: Path, keys: Keys
) -> None:
    top = repo(tmp_path)
    bob, accepted = signed_base(top, keys)
    unsigned = commit(top, "sneak", {"specs/finance.yaml": "a: 2\n"})
    commit(top, "looks signed", {"specs/finance.yaml": "a: 3\n"}, bob)
    verdict = judge(top, accepted, keys)
    assert not verdict.trusted
    (why,) = verdict.reasons
    assert why.startswith(f"commit {unsigned[:12]} ('sneak', ")
    assert [c.accepted for c in verdict.checked] == [True, False]  # newest first


def test_only_commits_that_touch_the_specs_count(tmp_path: Path, keys: Keys) -> None:
    top = repo(tmp_path)
    _bob, accepted = signed_base(top, keys)
    commit(top, "a typo in the README", {"README": "specs for drctl, fixed\n"})  # unsigned
    verdict = judge(top, accepted, keys)
    assert verdict.trusted, verdict.reasons
    assert verdict.checked == ()


def test_a_first_start_judges_the_commit_that_made_the_specs_as_they_are(
    tmp_path: Path, keys: Keys
) -> None:
    """History before the first revision a daemon accepts is not replayed: the newest
    spec commit's signature covers its whole tree."""
    top = repo(tmp_path)
    commit(top, "old, unsigned", {"specs/finance.yaml": "a: 0\n"})
    _bob, signed = signed_base(top, keys)
    verdict = judge(top, None, keys)
    assert verdict.trusted, verdict.reasons
    assert [c.sha for c in verdict.checked] == [signed]
    commit(top, "README", {"README": "x\n"}, None)
    assert judge(top, None, keys).trusted
    # An accepted revision the repository no longer holds (a rewritten history): the same.
    assert judge(top, "0" * 40, keys).trusted


def merged_unsigned_branch(top: Path, keys: Keys) -> tuple[str, str, str]:
    """main signed; a branch with an unsigned spec commit; a signed merge of it on main.
    Returns (accepted, the unsigned commit, the merge)."""
    bob, accepted = signed_base(top, keys)
    git(top, "checkout", "-q", "-b", "feature")
    unsigned = commit(top, "hr at rtm, unsigned", {"specs/hr.yaml": "b: 1\n"})
    git(top, "checkout", "-q", "main")
    commit(top, "finance tuned", {"specs/finance.yaml": "a: 2\n"}, bob)
    git(top, *bob.options, "merge", "-q", "--no-ff", "-S", "-m", "merge feature", "feature")
    return accepted, unsigned, git(top, "rev-parse", "HEAD")


def test_a_signed_merge_of_an_unsigned_commit_is_refused(tmp_path: Path, keys: Keys) -> None:
    top = repo(tmp_path)
    accepted, unsigned, merge = merged_unsigned_branch(top, keys)
    verdict = judge(top, accepted, keys)
    assert not verdict.trusted
    (why,) = verdict.reasons
    assert why.startswith(f"commit {unsigned[:12]} ('hr at rtm, unsigned', ")
    assert "it came in through a merge: a signed merge vouches for it only with --trust-merges" in (
        why
    )
    assert merge in {c.sha for c in verdict.checked if c.accepted}


def test_with_trust_merges_a_signed_merge_vouches_for_what_it_merged(
    tmp_path: Path, keys: Keys
) -> None:
    top = repo(tmp_path)
    accepted, unsigned, merge = merged_unsigned_branch(top, keys)
    verdict = judge(top, accepted, keys, trust_merges=True)
    assert verdict.trusted, verdict.reasons
    checked = [c.sha for c in verdict.checked]
    assert merge in checked
    assert unsigned not in checked
    # A first start judges the merge the same way.
    assert not judge(top, None, keys).trusted
    assert judge(top, None, keys, trust_merges=True).trusted


def test_an_unsigned_merge_is_refused_even_with_trust_merges(tmp_path: Path, keys: Keys) -> None:
    top = repo(tmp_path)
    bob, accepted = signed_base(top, keys)
    git(top, "checkout", "-q", "-b", "feature")
    commit(top, "hr at rtm", {"specs/hr.yaml": "b: 1\n"}, bob)
    git(top, "checkout", "-q", "main")
    git(top, "merge", "-q", "--no-ff", "-m", "merge feature, unsigned", "feature")
    (why,) = judge(top, accepted, keys, trust_merges=True).reasons
    assert "('merge feature, unsigned', committed by" in why
    assert "has no signature" in why


def test_uncommitted_edits_are_never_trusted(tmp_path: Path, keys: Keys) -> None:
    top = repo(tmp_path)
    _bob, accepted = signed_base(top, keys)
    (top / "specs" / "finance.yaml").write_text("a: 9\n")
    (why,) = judge(top, accepted, keys).reasons
    assert why == (
        f"the spec files differ from commit {accepted[:12]} (edits not committed): drctl acts "
        "only on signed commits (--require-signed-commits); commit and sign them "
        "(git commit -S), or discard the edits"
    )


def test_specs_in_no_commit_are_never_trusted(tmp_path: Path) -> None:
    (tmp_path / "finance.yaml").write_text("a: 1\n")
    verdict = signature.judge(tmp_path, revision.spec_revision(tmp_path), None, signature.Policy())
    assert not verdict.trusted
    assert verdict.reasons[0].startswith("the specs are in no git commit")


def test_many_refused_commits_are_counted_not_listed(tmp_path: Path, keys: Keys) -> None:
    top = repo(tmp_path)
    _bob, accepted = signed_base(top, keys)
    for n in range(signature.REPORTED + 2):
        commit(top, f"unsigned {n}", {"specs/finance.yaml": f"a: {n + 10}\n"})
    reasons = judge(top, accepted, keys).reasons
    assert len(reasons) == signature.REPORTED + 1
    assert reasons[-1] == "2 more commits since the revision in force were not checked"


def test_describe_says_who_signed_each_commit(tmp_path: Path, verifier: Keys) -> None:
    alice = verifier.gpg("Alice", "alice@example.com")
    verifier.trust(alice)
    bob = verifier.ssh("bob", "bob@example.com")
    verifier.trust(bob)
    top = repo(tmp_path)
    by_alice = commit(top, "1", {"specs/finance.yaml": "a: 1\n"}, alice)
    by_bob = commit(top, "2", {"specs/finance.yaml": "a: 2\n"}, bob)
    unsigned = commit(top, "3", {"specs/finance.yaml": "a: 3\n"})
    found = signature.describe(
        top / "specs", [unsigned, by_alice, by_bob], signature.Policy(verifier.allowed)
    )
    assert found[by_alice].signer == "Alice <alice@example.com>"
    assert found[by_alice].key == alice.key
    assert found[by_alice].status in {"G", "U"}
    assert found[by_bob] == signature.Signature("G", "bob@example.com", bob.key)
    assert found[unsigned] == signature.Signature("N", "", "")


def test_audit_says_who_signed_each_revision_that_moved_vms(
    tmp_path: Path, verifier: Keys, capsys: pytest.CaptureFixture[str]
) -> None:
    alice = verifier.gpg("Alice", "alice@example.com")
    verifier.trust(alice)
    bob = verifier.ssh("bob", "bob@example.com")
    verifier.trust(bob)
    top = repo(tmp_path)
    commit(top, "protect finance", {"specs/finance.yaml": PLAN}, alice)
    moved = commit(top, "sql01 to rtm", {"specs/finance.yaml": MOVED}, bob)
    back = commit(top, "sql01 back, unsigned", {"specs/finance.yaml": PLAN})
    specs, allowed = str(top / "specs"), str(verifier.allowed)
    state = str(tmp_path / "no-state")
    argv = ["audit", specs, "--allowed-signers", allowed, "--state-dir", state]
    assert cli.main([*argv, "--output", "json"]) == 0
    got = {(e["revision"], e["vm"]): e["signature"] for e in json.loads(capsys.readouterr().out)}
    assert got[(moved, "sql01")] == {
        "status": "G",
        "meaning": "good",
        "signer": "bob@example.com",
        "key": bob.key,
    }
    assert got[(back, "sql01")] == {"status": "N", "meaning": "none", "signer": None, "key": None}
    # The first commit only added VMs where they run: it moved none, and is not looked up.
    assert {sig for (rev, _vm), sig in got.items() if rev not in {moved, back}} == {None}
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    assert f"  signature: good by bob@example.com, key {bob.key}\n  finance/sql01\n" in text
    assert "sql01 back, unsigned\n  signature: none\n" in text
