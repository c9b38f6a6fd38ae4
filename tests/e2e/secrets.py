"""Whether a secret leaked into what drctl wrote or printed: the whole secret, or any piece of it.

A leak is rarely the whole token: a log line shortens it, an error quotes its
head, a header dump cuts it at a column. `leaks` looks for every secret and
for every run of `FRAGMENT` characters of its random part in each text, and
says where. Used by tests/e2e/test_asr.py and test_asr_secrets.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

# 12 characters of a random token: 72 bits, never in a text by chance.
FRAGMENT = 12


def pieces(secret: str) -> set[str]:
    """`secret`, and every run of FRAGMENT characters of its last dot-separated part (a
    JWT's signature; the random part of the test server's tokens)."""
    tail = secret.rsplit(".", 1)[-1]
    found = {secret}
    found.update(tail[i : i + FRAGMENT] for i in range(max(0, len(tail) - FRAGMENT + 1)))
    return found


def leaks(secrets: Iterable[str], texts: Mapping[str, bytes]) -> list[str]:
    """'<where>: <piece>' for each piece of a secret found in a text."""
    found: list[str] = []
    for secret in secrets:
        for piece in sorted(pieces(secret)):
            needle = piece.encode()
            found.extend(f"{where}: {piece}" for where, text in texts.items() if needle in text)
    return found


def files_under(root: Path) -> dict[str, bytes]:
    """Every file under `root` (a state dir: the journal and its WAL, daemon.json, crashes)."""
    return {str(p): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
