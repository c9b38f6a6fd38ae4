"""Nothing in the tests reaches beyond this machine: the guard of tests/conftest.py."""

from __future__ import annotations

import socket

import guard
import pytest


@pytest.mark.parametrize(
    "address", [("169.254.169.254", 80), ("20.190.160.1", 443), ("management.azure.com", 443)]
)
def test_contacting_an_address_outside_loopback_is_refused_and_recorded(
    address: tuple[str, int],
) -> None:
    with pytest.raises(OSError, match="only loopback addresses are allowed"):
        socket.create_connection(address, timeout=1)
    assert guard.OUTSIDE[-1].endswith(repr(address[0]))
    # Recorded: the guard fixture would fail this test; it is what the test checks.
    guard.OUTSIDE.pop()


def test_loopback_is_allowed() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        socket.create_connection(listener.getsockname(), timeout=1).close()
