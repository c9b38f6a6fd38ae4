"""Fixtures shared across the test tree: the fabrics every provider test runs against, real
etcd members (etcdproc.py), and the guard that fails any test contacting an address outside this machine."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import etcdproc
import fabrics
import guard
import pytest
import signing
from hypothesis import settings

guard.install()

# The suite draws the same examples on every run, so that a CI run fails only
# on a change (two CI runs failed on examples drawn for the first time). New
# examples are drawn with DRCTL_EXPLORE=1 (`make explore`); whatever they find
# becomes an @example of its test.
settings.register_profile("fixed", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile("explore" if os.environ.get("DRCTL_EXPLORE") else "fixed")


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


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[etcdproc.Cluster]:
    """One real etcd member on 127.0.0.1 (free ports, data in the test's directory)."""
    with etcdproc.running(tmp_path / "etcd", 1) as cluster:
        yield cluster


@pytest.fixture
def etcd3(tmp_path: Path) -> Iterator[etcdproc.Cluster]:
    """A real three-member etcd cluster on 127.0.0.1."""
    with etcdproc.running(tmp_path / "etcd3", 3) as cluster:
        yield cluster


@pytest.fixture
def keys() -> Iterator[signing.Keys]:
    """Throwaway GPG and SSH keys, and what a verifier trusts (tests/signing.py)."""
    made = signing.Keys()
    try:
        yield made
    finally:
        made.close()
