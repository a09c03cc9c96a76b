"""Classify every cell of merged results with pandas: where results hold, where they break.

`compare` is the whole judgement, step by step: the files as one frame
(`audit.judge.frames`); the comparable cells (ok and repeatable run to run, one per value),
with the cells one environment reported with different digests set apart
(`find_conflicts`); the axes that vary (`audit.judge.axes`); one table per axis and the
torch changelog (`audit.judge.tables`), each of their cells compared by
`audit.judge.cells`. Outputs that do not repeat run to run are reported as nondeterministic
on their setup, never compared. The names of those modules are importable from here too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import pandas as pd

from audit.judge.axes import (
    CAPABILITY,
    DEVICE,
    DEVICE_ORDER,
    PLATFORM,
    SETTING_PREFIX,
    TORCH,
    axis_title,
    value_label,
    value_order,
)
from audit.judge.cells import AxisCell, DistanceCache, compare_pair, worse
from audit.judge.frames import NOT_RECORDED, file_frame, frame, join_frames, setting_columns
from audit.judge.platforms import merge_build_labels, pair_coverage, user_view
from audit.judge.tables import (
    AxisTable,
    ChangelogStep,
    axes_of,
    axis_context,
    axis_values,
    changelog,
    compare_axis,
)
from audit.store.results import ResultsFile
from audit.trace.origin import Origins

__all__ = [  # the judging of a comparison, and the names its readers use from here
    "CAPABILITY", "DEVICE", "DEVICE_ORDER", "NOT_RECORDED", "PLATFORM", "SETTING_PREFIX",
    "TORCH", "AxisCell", "AxisTable", "ChangelogStep", "Comparison", "DistanceCache", "axes_of",
    "axis_context", "axis_title", "axis_values", "changelog", "compare", "compare_axis",
    "compare_pair", "file_frame", "find_conflicts", "frame", "join_frames", "setting_columns",
    "value_label", "value_order", "worse",
]


@dataclass
class Comparison:
    """The whole classification a report is written from."""

    data: pd.DataFrame
    axes: list[str]
    tables: dict[str, AxisTable]
    outputs: list[tuple[str, str]]  # every (scenario, output) that produced a value
    nondeterministic: pd.DataFrame
    problems: pd.DataFrame  # error / timeout / crashed / unavailable / raises-when-det.
    changelog: list[ChangelogStep] = field(default_factory=list)
    conflicts: pd.DataFrame | None = None  # one environment, one cell, several digests
    comparable: pd.DataFrame | None = None  # the cells compared (ok, repeatable, deduplicated)
    # settings some files did not record, read at their unset value: {(name, value): files}
    assumed: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    _breaks: dict[tuple[str, str], list[str]] | None = field(default=None, init=False,
                                                              repr=False)

    def breaks_on(self, key: tuple[str, str]) -> list[str]:
        """The axes along which this output differs somewhere."""
        if self._breaks is None:  # built once: a large report asks for every output
            self._breaks = {}
            for axis in self.axes:
                for broken in self.tables[axis].breaking():
                    self._breaks.setdefault(broken, []).append(axis)
        return self._breaks.get(key, [])


def find_conflicts(cells: pd.DataFrame, axis_columns: list[str]) -> pd.DataFrame:
    """Cells that one environment reported with different digests (in different files).

    Identical rows from several copies of one file are merged silently; disagreeing ones
    mean a results file is stale or the environment record misses what changed.
    """
    key = ["env_id", "scenario", "output"] + axis_columns
    counts = cells.groupby(key, dropna=False, observed=True)["digest"].transform("nunique")
    found = cells[counts > 1]
    names = ["env_id", "scenario", "output"]
    table = (found.groupby(names, sort=False, observed=True)
             .agg(digests=("digest", "nunique"), files=("file", lambda f: sorted(set(f))))
             .reset_index())
    for name in names:  # sorted by name, not by the categories' order of appearance
        table[name] = table[name].astype(object)
    return table.sort_values(names, ignore_index=True)


def compare(files: Iterable[ResultsFile], data: pd.DataFrame | None = None) -> Comparison:
    """Classify every cell; `data` is the files' frame when the caller built it already."""
    data = merge_build_labels(frame(files) if data is None else data)
    with_value = data[(data["status"] == "ok") & data["output"].notna()]
    # repeatable None: run once (a pytest test without the repeat marker), compared as is
    comparable = with_value[with_value["repeatable"] != False]  # noqa: E712 - pandas mask
    axis_columns = [TORCH, DEVICE, PLATFORM] + setting_columns(data)
    conflicts = find_conflicts(comparable, axis_columns)
    comparable = comparable.drop_duplicates(
        subset=["scenario", "output", "digest"] + axis_columns)
    axes = axes_of(comparable)
    cache, origins = DistanceCache(), Origins()
    tables = {axis: compare_axis(comparable, axis, axes, cache, origins) for axis in axes}
    steps = changelog(comparable, axes, cache, origins, tables.get(TORCH))
    if PLATFORM in tables:
        context = axis_context(PLATFORM, axes)
        viewed, also = user_view(comparable, context)
        tables[PLATFORM].pairs = pair_coverage(data, viewed, context, also)
    outputs = sorted({(s, o) for s, o in zip(with_value["scenario"], with_value["output"])})
    nondeterministic = with_value[with_value["repeatable"] == False]  # noqa: E712
    problems = data[data["status"] != "ok"]
    return Comparison(data=data, axes=axes, tables=tables, outputs=outputs,
                      nondeterministic=nondeterministic, problems=problems, changelog=steps,
                      conflicts=conflicts, comparable=comparable,
                      assumed=dict(data.attrs.get("assumed", {})))
