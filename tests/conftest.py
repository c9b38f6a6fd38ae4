"""Fixtures shared across the test tree: the fabrics every provider test runs against, and
the guard that fails any test contacting an address outside this machine."""

from __future__ import annotations

from collections.abc import Iterator

import fabrics
import guard
import pytest

guard.install()


@pytest.fixture(autouse=True)
def _no_outside_contact() -> Iterator[None]:
    before = len(guard.OUTSIDE)
    yield
    tried = guard.OUTSIDE[before:]
    if tried:
        del guard.OUTSIDE[before:]
        pytest.fail(f"the test tried to reach beyond this machine: {', '.join(tried)}")


# Session scope: a factory holds no state (each call builds a new fabric), and
# hypothesis refuses function-scoped fixtures in a @given test.
@pytest.fixture(scope="session", params=sorted(fabrics.FACTORIES))
def make_fabric(request: pytest.FixtureRequest) -> fabrics.Factory:
    """Builds a fabric holding an inventory: once per provider in `fabrics.FACTORIES`."""
    factory: fabrics.Factory = fabrics.FACTORIES[request.param]
    return factory
