"""Fixtures shared across the test tree: the fabrics every provider test runs against."""

from __future__ import annotations

import fabrics
import pytest


# Session scope: a factory holds no state (each call builds a new fabric), and
# hypothesis refuses function-scoped fixtures in a @given test.
@pytest.fixture(scope="session", params=sorted(fabrics.FACTORIES))
def make_fabric(request: pytest.FixtureRequest) -> fabrics.Factory:
    """Builds a fabric holding an inventory: once per provider in `fabrics.FACTORIES`."""
    factory: fabrics.Factory = fabrics.FACTORIES[request.param]
    return factory
