"""Real signatures for the tests of `--require-signed-commits`: throwaway GPG and SSH keys.

`Keys` makes each signer's key in its own directory (a GNUPGHOME of its own
for GPG, an ed25519 key file for SSH) and a verifier's side: a GNUPGHOME
holding the public keys drctl should trust (`verifier_env`), and an
allowed_signers file (`allowed`) naming the SSH signers it trusts. A signer
that is made but never trusted is an untrusted key. `commit` commits the spec
files of a repository signed by one of them (or unsigned). Used by
tests/gitops/test_signature.py, tests/daemon/test_signed.py and
tests/e2e/test_signed.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Signer:
    """Who signs, and how git is told to sign as them."""

    name: str
    email: str
    key: str  # as git reports it (%GF): the GPG fingerprint, the SSH key's SHA256
    options: tuple[str, ...]  # `git -c ...` options that make `commit -S` sign with the key
    env: dict[str, str] = field(default_factory=dict)

    @property
    def identity(self) -> str:
        return f"{self.name} <{self.email}>"


class Keys:
    """Throwaway keys under a short temporary directory; `close` stops their gpg-agents."""

    def __init__(self) -> None:
        # gpg puts its agent's socket in GNUPGHOME when /run/user has no place
        # for it: a pytest tmp_path can be longer than a socket's path may be.
        self.root = Path(tempfile.mkdtemp(prefix="drsig", dir="/tmp"))
        self.verifier = self._gnupg_home("verifier")
        self.allowed = self.root / "allowed_signers"
        self.allowed.write_text("")
        self._homes = [self.verifier]

    @property
    def verifier_env(self) -> dict[str, str]:
        """The environment of a drctl that trusts the GPG keys given to `trust`."""
        return {"GNUPGHOME": str(self.verifier)}

    def gpg(self, name: str, email: str) -> Signer:
        """A GPG signer with an ed25519 key in a keyring of its own."""
        home = self._gnupg_home(name)
        self._homes.append(home)
        env = {"GNUPGHOME": str(home)}
        uid = f"{name} <{email}>"
        _run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key", uid, "ed25519"], env)
        listed = _run(["gpg", "--batch", "--with-colons", "--list-keys", uid], env)
        fingerprint = next(
            line.split(":")[9] for line in listed.splitlines() if line.startswith("fpr:")
        )
        return Signer(name, email, fingerprint, ("-c", f"user.signingkey={fingerprint}"), env)

    def ssh(self, name: str, email: str) -> Signer:
        """An SSH signer with an ed25519 key."""
        key = self.root / name
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", email, "-f", str(key)], {})
        shown = _run(["ssh-keygen", "-l", "-E", "sha256", "-f", f"{key}.pub"], {})
        options = ("-c", "gpg.format=ssh", "-c", f"user.signingkey={key}")
        return Signer(name, email, shown.split()[1], options)

    def trust(self, signer: Signer) -> None:
        """Let the verifier trust `signer`: its public key in the keyring or allowed_signers."""
        if "GNUPGHOME" in signer.env:
            public = subprocess.run(
                ["gpg", "--batch", "--export", signer.key],
                env={**os.environ, **signer.env},
                capture_output=True,
                check=True,
            ).stdout
            subprocess.run(
                ["gpg", "--batch", "--import"],
                input=public,
                env={**os.environ, **self.verifier_env},
                capture_output=True,
                check=True,
            )
        else:
            public_key = (self.root / f"{signer.name}.pub").read_text().split()
            with self.allowed.open("a") as allowed:
                allowed.write(f"{signer.email} {public_key[0]} {public_key[1]}\n")

    def close(self) -> None:
        for home in self._homes:
            subprocess.run(
                ["gpgconf", "--kill", "gpg-agent"],
                env={**os.environ, "GNUPGHOME": str(home)},
                capture_output=True,
                check=False,
            )
        shutil.rmtree(self.root, ignore_errors=True)

    def _gnupg_home(self, name: str) -> Path:
        home = self.root / f"gnupg-{name}"
        home.mkdir(mode=0o700)
        return home


def commit(
    top: Path,
    message: str,
    files: dict[str, str] | None = None,
    signer: Signer | None = None,
    committer: tuple[str, str] = ("Ops", "ops@example.com"),
) -> str:
    """Commit every change under `top` (after writing `files`, relative to it), signed by
    `signer` or unsigned; returns the commit's sha."""
    for name, text in (files or {}).items():
        path = top / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    git(top, "add", "-A")
    options = signer.options if signer is not None else ()
    sign = ("-S",) if signer is not None else ()
    env = {
        "GIT_AUTHOR_NAME": committer[0],
        "GIT_AUTHOR_EMAIL": committer[1],
        "GIT_COMMITTER_NAME": committer[0],
        "GIT_COMMITTER_EMAIL": committer[1],
        **(signer.env if signer is not None else {}),
    }
    git(top, *options, "commit", "-q", "--allow-empty", *sign, "-m", message, env=env)
    return git(top, "rev-parse", "HEAD")


def git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"git {' '.join(args)}: {done.stderr}")
    return done.stdout.strip()


def _run(command: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(
        command, env={**os.environ, **env}, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(command)}: {done.stderr}")
    return done.stdout
