"""Fixtures of the publish tests: the report fixtures in a folder of the test's own."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support import FIXTURES


@pytest.fixture
def fixture_copies(tmp_path: Path) -> list[Path]:
    """The fixture results files copied into `tmp_path`, sorted by name: a test may alter
    one or add its own beside them."""
    for path in FIXTURES.glob("*.jsonl"):
        shutil.copy(path, tmp_path / path.name)
    return sorted(tmp_path.glob("*.jsonl"))
