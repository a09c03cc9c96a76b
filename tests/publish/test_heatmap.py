"""The report's heatmap: shares of identical outputs per scenario and axis value."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from audit.judge.compare import compare
from audit.publish import heatmap
from audit.publish.report import write_report
from audit.store.results import read_all
from tests.support import FIXTURES


def test_shares_per_scenario_and_axis_value() -> None:
    scenarios, labels, grid = heatmap.shares(compare(read_all([str(FIXTURES)])))
    assert labels == ["torch version=2.14.1", "threads=2"]
    cell = {(scenario, label): grid[i, j] for i, scenario in enumerate(scenarios)
            for j, label in enumerate(labels)}
    assert cell[("train.mlp_sgd", "torch version=2.14.1")] == 0.0
    assert cell[("train.mlp_sgd", "threads=2")] == 1.0
    assert cell[("ops.sum_large", "threads=2")] == 0.0
    assert "rng.unseeded" not in scenarios  # never compared: not repeatable
    assert not any(math.isnan(value) for value in grid.flat)


@pytest.mark.skipif(not heatmap.available(), reason="matplotlib (the heatmap extra) absent")
def test_report_links_a_byte_stable_heatmap(tmp_path: Path) -> None:
    first = write_report([str(FIXTURES)], tmp_path / "a")
    second = write_report([str(FIXTURES)], tmp_path / "b")
    png = (tmp_path / "a" / heatmap.FILE_NAME).read_bytes()
    assert png.startswith(b"\x89PNG") and png == (tmp_path / "b" / heatmap.FILE_NAME).read_bytes()
    assert f"]({heatmap.FILE_NAME})" in first.read_text("utf-8") == second.read_text("utf-8")


def test_a_report_without_matplotlib_removes_a_stale_heatmap(tmp_path: Path,
                                                             monkeypatch) -> None:
    monkeypatch.setattr(heatmap, "available", lambda: False)
    (tmp_path / heatmap.FILE_NAME).write_bytes(b"an image of earlier results")
    text = write_report([str(FIXTURES)], tmp_path).read_text(encoding="utf-8")
    assert not (tmp_path / heatmap.FILE_NAME).exists()
    assert heatmap.FILE_NAME not in text
