"""The guard that keeps every test on this machine (installed by tests/conftest.py).

An audit hook refuses, at once, every connection to and every name lookup of
an address outside loopback (a real ARM endpoint, the instance metadata
address 169.254.169.254 that managed identity probes), and records it in
`OUTSIDE`; the autouse fixture of conftest fails the test that made it, even
when a library swallowed the refusal.
"""

from __future__ import annotations

import ipaddress
import sys
from typing import Any

OUTSIDE: list[str] = []
_installed = False


def _loopback(host: object) -> bool:
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    if host is None or host in {"localhost", "localhost.localdomain", "ip6-localhost"}:
        return True
    try:
        return ipaddress.ip_address(str(host).split("%", 1)[0]).is_loopback
    except ValueError:
        return False  # a name other than localhost: resolving it already reaches out


def _refuse_outside(event: str, args: tuple[Any, ...]) -> None:
    if event == "socket.connect" and isinstance(args[1], tuple):
        host = args[1][0]
    elif event == "socket.getaddrinfo":
        host = args[0]
    else:
        return
    if not _loopback(host):
        OUTSIDE.append(f"{event} {host!r}")
        raise OSError(f"tests never contact {host!r}: only loopback addresses are allowed")


def install() -> None:
    """Install the hook once per process (an audit hook cannot be removed)."""
    global _installed  # noqa: PLW0603
    if not _installed:
        sys.addaudithook(_refuse_outside)
        _installed = True
