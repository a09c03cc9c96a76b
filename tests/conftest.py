"""Fixtures and hooks for every test: the `e2e` marker, and a registry left as it was found.

The tests mirror the package (tests/run/ tests audit/run/, and so on); tests/e2e/ holds the
ones that start `python -m audit` or pytest sessions of their own, as a user would. Each of
those is marked `e2e` here, so `pytest -m "not e2e"` runs the unit tests alone.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from audit.scenarios import registry

E2E = Path(__file__).resolve().parent / "e2e"


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if E2E in item.path.parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture
def clean_registry() -> Iterator[None]:
    """User scenario files loaded in-process must not leak into other tests."""
    registry.load_builtin()  # imported once per process: snapshot them registered
    before = dict(registry._REGISTRY)
    modules = set(sys.modules)
    yield
    registry._REGISTRY.clear()
    registry._REGISTRY.update(before)
    for name in set(sys.modules) - modules:
        if name.startswith(registry.USER_MODULE_PREFIX):
            del sys.modules[name]
