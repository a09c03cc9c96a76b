"""A heatmap of the report: scenarios × axis values, the share of outputs that hold.

Optional: it needs matplotlib (`pip install 'repro-audit[heatmap]'`); without it the report
says so in one line on stderr and is otherwise the same. The PNG carries no timestamp or
version metadata, so the same results and the same matplotlib give the same bytes.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

from audit.judge.axes import axis_title, value_label
from audit.judge.compare import Comparison

FILE_NAME = "heatmap.png"
MAX_ROWS = 150  # more scenarios than this: one row per family (a readable, fast image)


# The one line a report without matplotlib prints: which extra brings it.
NOT_INSTALLED = ("repro-audit: no heatmap: matplotlib is not installed "
                 "(pip install 'repro-audit[heatmap]'); the report is written without it")


def available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def not_drawn() -> None:
    """Say once, on stderr, that the heatmap needs the `heatmap` extra; draw nothing."""
    print(NOT_INSTALLED, file=sys.stderr)


def shares(result: Comparison) -> tuple[list[str], list[str], np.ndarray]:
    """Rows (scenarios, or families when there are many), columns ('threads=2') and the
    share of each row's compared outputs identical to the axis' reference value (NaN where
    nothing was compared)."""
    columns: list[tuple[str, str]] = [(axis, value) for axis in result.axes
                                      for value in result.tables[axis].values[1:]]
    scenarios = sorted({key[0] for table in result.tables.values() for key in table.cells})
    group = (lambda name: name) if len(scenarios) <= MAX_ROWS else (
        lambda name: name.split(".", 1)[0] + ".*")
    scenarios = sorted({group(name) for name in scenarios})
    grid = np.full((len(scenarios), len(columns)), np.nan)
    row_of = {name: index for index, name in enumerate(scenarios)}
    for column, (axis, value) in enumerate(columns):
        same: dict[str, list[int]] = {}
        for (scenario, _), cells in result.tables[axis].cells.items():
            cell = cells.get(value)
            if cell is not None and cell.groups:
                counts = same.setdefault(group(scenario), [0, 0])
                counts[0] += cell.differing == 0
                counts[1] += 1
        for scenario, (identical, compared) in same.items():
            grid[row_of[scenario], column] = identical / compared
    labels = [f"{axis_title(axis)}={value_label(axis, value)}" for axis, value in columns]
    return scenarios, labels, grid


def draw(result: Comparison, out: Path) -> Path | None:
    """Write out/heatmap.png; None when there is nothing to draw."""
    scenarios, labels, grid = shares(result)
    if not scenarios or not labels:
        return None
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    height = max(3.0, 0.16 * len(scenarios) + 1.5)
    figure, axes = pyplot.subplots(figsize=(2.0 + 0.9 * len(labels), height), dpi=100)
    image = axes.imshow(np.ma.masked_invalid(grid), aspect="auto", cmap="RdYlGn",
                        vmin=0.0, vmax=1.0, interpolation="nearest")
    axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
    axes.set_yticks(range(len(scenarios)), scenarios, fontsize=6)
    axes.set_title("share of outputs bit-identical to the reference value", fontsize=9)
    figure.colorbar(image, ax=axes, fraction=0.05)
    figure.tight_layout()
    target = out / FILE_NAME
    figure.savefig(target, format="png", metadata={"Software": None})
    pyplot.close(figure)
    return target
