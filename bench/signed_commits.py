"""What `--require-signed-commits` adds to the daemon's look at a new revision.

Run: `.venv/bin/python bench/signed_commits.py`. For 1, 10 and 50 signed spec
commits between the revision in force and the new one (SSH and GPG, real
signatures, tests/signing.py), the median time of `signature.judge` (one
`git log` naming them, then one `git verify-commit` each), against the
baseline of the look without the flag: `revision.spec_revision`.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from measure import median_seconds
from signing import Keys, Signer, commit, git

from reconciler.gitops import revision, signature

RUNS = 5


def measure(keys: Keys, signer: Signer, commits: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as root:
        top = Path(root)
        git(top, "init", "-q", "-b", "main")
        accepted = commit(top, "base", {"specs/finance.yaml": "a: 0\n"}, signer)
        for n in range(commits):
            commit(top, f"change {n}", {"specs/finance.yaml": f"a: {n + 1}\n"}, signer)
        specs = top / "specs"
        rev = revision.spec_revision(specs)
        policy = signature.Policy(keys.allowed)
        verdict = signature.judge(specs, rev, accepted, policy)
        assert verdict.trusted, verdict.reasons
        assert len(verdict.checked) == commits
        judged = median_seconds(RUNS, lambda: signature.judge(specs, rev, accepted, policy))
        looked = median_seconds(RUNS, lambda: revision.spec_revision(specs))
        return judged, looked


def main() -> None:
    keys = Keys()
    try:
        os.environ["GNUPGHOME"] = str(keys.verifier)
        ssh = keys.ssh("bob", "bob@example.com")
        keys.trust(ssh)
        gpg = keys.gpg("Alice", "alice@example.com")
        keys.trust(gpg)
        print("signer  commits  judge (ms)  per commit (ms)  spec_revision alone (ms)")
        for name, signer in (("ssh", ssh), ("gpg", gpg)):
            for commits in (1, 10, 50):
                judged, looked = measure(keys, signer, commits)
                print(
                    f"{name:6}  {commits:7}  {judged * 1000:10.1f}  "
                    f"{judged * 1000 / commits:15.1f}  {looked * 1000:24.1f}"
                )
    finally:
        keys.close()


if __name__ == "__main__":
    main()
