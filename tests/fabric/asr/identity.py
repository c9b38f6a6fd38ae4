"""Who may call the test ARM server: the bearer token the stand-in `az` hands out.

`install()` puts tests/fabric/asr/bin (the stand-in `az`) first on PATH and
points it at one token file, so that the real azure-identity
`AzureCliCredential` (`credential: cli`) gets its token the way it does from
a signed-in Azure CLI. `ArmServer` accepts only the current token; a test
rotates it (the old one is then refused with a 401, as after a secret
rotation) or signs the CLI out.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

BIN = Path(__file__).parent / "bin"


class TokenAuthority:
    """The current token, in the file the stand-in `az` reads."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "token"
        self.rotate()

    def current(self) -> str:
        return self.path.read_text().strip()

    def rotate(self) -> str:
        """A new token; the one handed out before is refused from now on."""
        token = f"eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.drctl-test.{secrets.token_urlsafe(24)}"
        self.path.write_text(token)
        return token

    def sign_out(self) -> None:
        """`az` now answers as a CLI nobody signed in to."""
        self.path.write_text("")

    def calls(self) -> int:
        """How many times `az` was asked for a token."""
        calls = self.path.with_name(self.path.name + ".calls")
        return len(calls.read_text().splitlines()) if calls.exists() else 0


_AUTHORITY: TokenAuthority | None = None


def install() -> TokenAuthority:
    """The process's token authority, with the stand-in `az` first on PATH (idempotent)."""
    global _AUTHORITY  # noqa: PLW0603 (one authority per process: the env var names one file)
    if _AUTHORITY is None:
        _AUTHORITY = TokenAuthority(Path(tempfile.mkdtemp(prefix="drctl-az-")))
        os.environ["DRCTL_TEST_AZ_TOKEN_FILE"] = str(_AUTHORITY.path)
        os.environ["PATH"] = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    return _AUTHORITY
