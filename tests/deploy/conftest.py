"""Fixtures of the deploy tests: the end-to-end tests' `site` (a specs repository,
a simulated fabric and a `drctl run` to start), from e2e/conftest.py."""

from __future__ import annotations

from e2e.conftest import site

__all__ = ["site"]
