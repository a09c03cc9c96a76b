"""What tests in several folders share and a test imports (fixtures are in conftest.py): the
tree's paths, the results files the report and cross-machine tests read, TOML on every
Python, a scratch file for hypothesis' examples.

Every folder under tests/ is a package, so this is `tests.support` wherever it is imported
from, and two folders may each hold a test file of the same name.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent  # the repository: subprocesses start here
DATA = ROOT / "tests" / "data"
# Results files of two torch versions (one environment each, threads 1 and 2): the report,
# changelog, heatmap and baseline tests read them.
FIXTURES = DATA / "report"
# Written by the release matrix on another machine, before rows recorded every setting.
OLD_FILE = ROOT / "reports/releases/results/torch-2.13.0_cpu-4ccc1049d8526322.jsonl.gz"

__all__ = ["DATA", "FIXTURES", "OLD_FILE", "ROOT", "pyproject", "scratch_file", "tomllib"]


def pyproject() -> dict[str, Any]:
    """The repository's pyproject.toml, parsed."""
    return tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))


@contextmanager
def scratch_file(name: str, content: bytes) -> Iterator[Path]:
    """`content` in a file called `name` of a new temporary folder, removed afterwards.

    For hypothesis: its examples of one test share that test's `tmp_path`, so each example
    writes into a folder of its own.
    """
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(content)
        yield path
