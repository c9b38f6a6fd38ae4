"""The options of `drctl run --require-signed-commits` (and `drctl audit --allowed-signers`).

`cli.main` adds them (`add_run_args`, `add_audit_args`) and turns them into
the daemon's `signature.Policy` (`policy`), refusing a combination that
means nothing or a file that is not there (exit 2) before anything starts.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler import errors

if TYPE_CHECKING:  # imported when used: `drctl validate` pays for no git runner
    from reconciler.gitops import signature


def add_run_args(run_cmd: argparse.ArgumentParser) -> None:
    run_cmd.add_argument(
        "--require-signed-commits",
        action="store_true",
        help="act only on revisions whose commits `git verify-commit` accepts (GPG or SSH "
        "signatures, git's own trust configuration): every commit since the revision in force "
        "that touches the specs, those a merge brought in too. git verifies a signature over "
        "the commit object, which names its tree and its parents; it does not verify the "
        "parents' own signatures. An unsigned or untrusted revision, or uncommitted edits, "
        "change nothing: the revision in force stays, and `drctl status` says why",
    )
    run_cmd.add_argument(
        "--allowed-signers",
        type=Path,
        metavar="FILE",
        help="with --require-signed-commits: the SSH signers git trusts "
        "(gpg.ssh.allowedSignersFile, in ssh-keygen's allowed_signers format)",
    )
    run_cmd.add_argument(
        "--trust-merges",
        action="store_true",
        help="with --require-signed-commits: verify only the first-parent chain, so that a "
        "verified merge vouches for the commits it merged, signed or not",
    )


def add_audit_args(audit_cmd: argparse.ArgumentParser) -> None:
    audit_cmd.add_argument(
        "--allowed-signers",
        type=Path,
        metavar="FILE",
        help="the SSH signers git trusts, to say who signed SSH-signed commits (as for drctl run)",
    )


def policy(args: argparse.Namespace) -> signature.Policy | None:
    """`--require-signed-commits` and its options, checked; None without it."""
    if not args.require_signed_commits:
        for given, flag in (
            (args.allowed_signers, "--allowed-signers"),
            (args.trust_merges, "--trust-merges"),
        ):
            if given:
                raise errors.UsageError(f"{flag} applies only with --require-signed-commits")
        return None
    from reconciler.gitops import signature

    return signature.Policy(allowed_signers(args.allowed_signers), args.trust_merges)


def allowed_signers(path: Path | None) -> Path | None:
    """`--allowed-signers FILE`, absolute: git reads it from the repository's top."""
    if path is None:
        return None
    if not path.is_file():
        raise errors.UsageError(
            f"--allowed-signers {path}: no such file; give ssh-keygen's allowed_signers file "
            "naming the SSH keys whose commits may act"
        )
    return path.resolve()
