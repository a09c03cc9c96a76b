"""A torch version that cannot be installed is recorded, reported, and spoils nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest

from audit.publish.report import write_report
from audit.store.results import read_file, write_unavailable


@pytest.mark.usefixtures("fixture_copies")  # the versions that did install, beside it
def test_an_uninstallable_version_is_unavailable_with_its_reason(tmp_path: Path) -> None:
    reason = "torch==9.9.9 could not be installed or imported here (source: registry)"
    written = write_unavailable(tmp_path / "torch-9.9.9-unavailable.jsonl", "9.9.9", reason)
    item = read_file(written)
    assert item is not None and item.header["environment"]["torch"] == "9.9.9"
    (row,) = item.rows
    assert (row["status"], row["scenario"], row["torch_version"], row["error"]) == (
        "unavailable", "*", "9.9.9", reason)
    text = write_report([str(tmp_path)], tmp_path / "out").read_text(encoding="utf-8")
    problems = text.split("## Errors and unavailable cells")[1]
    assert f"| unavailable | {reason} | cpu      | 9.9.9" in problems
    # the versions that did install are compared as before
    assert "| 2.13.0+cpu, 2.14.1 |" in text and "train.mlp_sgd" in text
