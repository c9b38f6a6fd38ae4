"""Whether a spec revision comes from commits git verifies (`drctl run --require-signed-commits`).

The daemon (daemon/trust.py) calls `judge` with the revision it read and the
last revision it accepted; `drctl audit` (audit.py) calls `describe` for who
signed the revisions that moved VMs. Every git command goes through git.py.

What git verifies, and what it does not. `git verify-commit` checks one
signature over the commit object, which names its tree (every spec file of
that revision) and its parents by hash, against git's own trust
configuration: the GPG keyring of drctl's user (with `gpg.minTrustLevel`, a
key of unknown trust is accepted unless it is set) or, for SSH signatures,
`gpg.ssh.allowedSignersFile` (`--allowed-signers`). It does not verify the
parents' signatures: a signed merge vouches for the tree it makes, not for
the commits it merged. So every commit since the last accepted revision that
touches the spec directory is verified, the ones a merge brought in too;
with `trust_merges` only those on the first-parent chain are, and a verified
merge then vouches for the branch it merged.

With no accepted revision (a first start), the revision is judged from the
newest commit on its first-parent chain that touched the specs (its
signature covers the whole tree), with what that commit merged unless
`trust_merges`. Uncommitted edits (a dirty revision) and specs in no commit
are never trusted: there is no signature to check.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from reconciler.gitops import git, revision

# Said in full for this many refused commits; the rest are counted.
REPORTED = 5
# A user's `log.showSignature` would add gpg's words to every format below.
_QUIET = ("--literal-pathspecs", "-c", "log.showSignature=false")
_FIELDS = "%H%x00%G?%x00%GS%x00%GF%x00%GK%x00%cn <%ce>%x00%s%x00"
_UNSIGNED_FIELDS = "%H%x00%x00%x00%x00%x00%cn <%ce>%x00%s%x00"  # the same, no gpg run

# git's %G? letters, in words.
MEANING = {
    "G": "good",
    "U": "good, of unknown validity",
    "X": "good, expired",
    "Y": "good, made by an expired key",
    "R": "good, made by a revoked key",
    "B": "bad",
    "E": "cannot be checked",
    "N": "none",
}


@dataclass(frozen=True)
class Policy:
    """What `drctl run --require-signed-commits` was told: whose signatures count, and how."""

    allowed_signers: Path | None = None  # gpg.ssh.allowedSignersFile for SSH signatures
    trust_merges: bool = False

    def config(self) -> tuple[str, ...]:
        """git's `-c` options for the verification."""
        if self.allowed_signers is None:
            return ()
        return ("-c", f"gpg.ssh.allowedSignersFile={self.allowed_signers}")


@dataclass(frozen=True)
class Signature:
    """What git says of a commit's signature: %G?, the signer (%GS) and the key."""

    status: str  # one of MEANING's letters
    signer: str  # "" when git names none (no signature, an unknown key)
    key: str  # the fingerprint, else the key id git reports; "" when none

    def to_json(self) -> dict[str, str | None]:
        return {
            "status": self.status,
            "meaning": MEANING.get(self.status, self.status),
            "signer": self.signer or None,
            "key": self.key or None,
        }


@dataclass(frozen=True)
class Check:
    """One commit, verified."""

    sha: str
    subject: str
    committer: str  # "Name <email>"
    signature: Signature | None  # what git says of it: only for a refused commit
    accepted: bool  # `git verify-commit` exited 0
    said: str  # what verify-commit said (its last line) when it refused; "" if nothing


@dataclass(frozen=True)
class Verdict:
    """Whether a revision may act: every commit that had to be verified was accepted."""

    trusted: bool
    reasons: tuple[str, ...]  # why not, and what to do (empty when trusted)
    checked: tuple[Check, ...] = ()


def judge(specs_dir: Path, rev: revision.Revision, accepted: str | None, policy: Policy) -> Verdict:
    """Whether `rev` may act, `accepted` (a commit) being the last revision that did.

    `GitError` when git cannot read the repository (the caller keeps the
    revision in force, as for any git trouble).
    """
    if rev.commit is None:
        why = (
            "the specs are in no git commit: drctl acts only on signed commits "
            "(--require-signed-commits); commit and sign them (git commit -S)"
        )
        return Verdict(False, (why,))
    if rev.dirty:
        why = (
            f"the spec files differ from commit {rev.commit[:12]} (edits not committed): "
            "drctl acts only on signed commits (--require-signed-commits); commit and "
            "sign them (git commit -S), or discard the edits"
        )
        return Verdict(False, (why,))
    tree = git.work_tree(specs_dir)
    if tree is None:  # gone since the revision was read: read again at the next look
        return Verdict(False, (f"{specs_dir} is no longer in a git work tree",))
    pathspec = tree.prefix or "."
    shas = _to_verify(tree.top, pathspec, rev.commit, accepted, policy.trust_merges)
    checks: list[Check] = []
    refused: list[Check] = []
    # Who signed is asked of git (a second run of gpg or ssh-keygen) only for
    # the commits it refuses: that is what the reasons say.
    for sha, _, committer, subject in _describe(tree.top, shas, policy, signed=False):
        ok, said = git.verify_commit(tree.top, sha, policy.config())
        check = Check(sha, subject, committer, None, ok, said)
        checks.append(check)
        if not ok:
            refused.append(check)
            if len(refused) == REPORTED:
                break  # enough to say why; the revision is not trusted anyway
    if not refused:
        return Verdict(True, (), tuple(checks))
    found = describe(specs_dir, [c.sha for c in refused], policy)
    refused = [dataclasses.replace(c, signature=found.get(c.sha)) for c in refused]
    checks = [next((r for r in refused if r.sha == c.sha), c) for c in checks]
    merged = (
        set()
        if policy.trust_merges
        else _off_first_parent(tree.top, rev.commit, accepted, {c.sha for c in refused})
    )
    reasons = [_reason(c, c.sha in merged) for c in refused]
    unchecked = len(shas) - len(checks)
    if unchecked:
        reasons.append(f"{unchecked} more commits since the revision in force were not checked")
    return Verdict(False, tuple(reasons), tuple(checks))


def describe(specs_dir: Path, shas: Iterable[str], policy: Policy) -> dict[str, Signature]:
    """The signature of each commit of `shas`, as git reports it (one git process)."""
    tree = git.work_tree(specs_dir)
    wanted = list(dict.fromkeys(shas))
    if tree is None or not wanted:
        return {}
    return {sha: signature for sha, signature, _, _ in _describe(tree.top, wanted, policy)}


def _to_verify(
    top: Path, pathspec: str, new: str, accepted: str | None, trust_merges: bool
) -> list[str]:
    """The commits that must each be verified for `new` to act, newest first."""
    base = accepted if accepted is not None and git.commit_of(top, accepted) else None
    if base is None:
        # A first start (or the accepted commit is gone, a rewritten history):
        # from the commit that made the spec files as they are.
        newest = _log(top, "--first-parent", "-1", "--format=%H %P", new, "--", pathspec).split()
        if not newest:
            return [new]  # no commit ever touched the specs: the revision's own
        base = newest[1] if len(newest) > 1 else None
    walk = "--first-parent" if trust_merges else "--full-history"
    since = [f"^{base}", new] if base is not None else [new]
    return _log(top, walk, "--format=%H", *since, "--", pathspec).split()


def _off_first_parent(top: Path, new: str, accepted: str | None, shas: set[str]) -> set[str]:
    """Which of `shas` a merge brought in: they are not on `new`'s first-parent chain."""
    since = [new] if accepted is None else [f"^{accepted}", new]
    chain = set(_log(top, "--first-parent", "--format=%H", *since).split())
    return shas - chain


def _describe(
    top: Path, shas: list[str], policy: Policy, *, signed: bool = True
) -> list[tuple[str, Signature, str, str]]:
    """(sha, signature, committer, subject) of each commit, in the order given; without
    `signed`, git checks no signature (each reads as none)."""
    if not shas:
        return []
    out = git.run(
        top,
        *_QUIET,
        *policy.config(),
        "log",
        "--no-walk=unsorted",
        "--stdin",
        f"--format={_FIELDS if signed else _UNSIGNED_FIELDS}",
        input="".join(f"{sha}\n" for sha in shas).encode(),
    )
    values = out.decode(errors="replace").split("\x00")
    found = []
    for start in range(0, len(values) - 7, 7):
        sha, status, signer, fingerprint, key, committer, subject = values[start : start + 7]
        signature = Signature(status.strip() or "N", signer, fingerprint or key)
        found.append((sha.strip(), signature, committer, subject))
    return found


def _reason(check: Check, merged: bool) -> str:
    """Why `check`'s commit may not act, and what to do, in one line."""
    sig = check.signature or Signature("N", "", "")
    commit = f"commit {check.sha[:12]} ({check.subject!r}, committed by {check.committer})"
    key = f" with key {sig.key}" if sig.key else ""
    by = f" by {sig.signer}" if sig.signer else ""
    git_said = f" (git verify-commit: {check.said})" if check.said else ""
    if sig.status == "N" and not check.said:
        why = f"{commit} has no signature"
        fix = "sign it (git commit --amend -S) and push it in its place"
    elif sig.status == "N":
        why = f"{commit} is signed, but git cannot check the signature{git_said}"
        fix = "give drctl the signers of SSH signatures (--allowed-signers FILE)"
    elif sig.status == "B":
        why = f"{commit} has a bad signature{key}: the commit was changed after it was signed"
        fix = "replace it with a commit signed by its author"
    elif sig.status in {"G", "U", "E"}:
        trust = "does not know" if sig.status == "E" else "does not trust"
        why = f"{commit} is signed{by}{key}, a key git {trust}{git_said}"
        fix = (
            "if its owner may move VMs, add the key to the allowed signers file "
            "(SSH) or to drctl's keyring with enough trust (GPG); else replace the commit "
            "with one signed by a trusted key"
        )
    else:
        meaning = MEANING.get(sig.status, sig.status)
        why = f"{commit} has a signature git does not accept ({meaning}){key}{git_said}"
        fix = "sign it again with a valid key that git trusts and push it in its place"
    if merged:
        fix += (
            "; it came in through a merge: a signed merge vouches for it only with --trust-merges"
        )
    return (
        f"{why}: drctl acts only on signed commits (--require-signed-commits); {fix}; "
        "every commit since the revision in force that touches the specs must be signed"
    )


def _log(top: Path, *args: str) -> str:
    return git.run(top, *_QUIET, "log", *args).decode()
