"""Classify every cell of merged results with pandas: where results hold, where they break.

An *axis* is one thing that varies in the data: the torch version, the device, the machine
(platform), or one setting. Along an axis, two cells are compared only when every other
axis has the same value, so a difference is attributed to the axis alone. Only outputs that
repeat run to run are compared across environments; the others are reported as
nondeterministic on their setup.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from audit.compat import parse_version
from audit.distance import Distance, distance
from audit.environment import platform_label
from audit.origin import NoOrigin, Origin, Origins
from audit.results import ResultsFile
from audit.sample import Sample
from audit.settings import SETTINGS
from audit.trace import trace_key, traces_path

TORCH, DEVICE, PLATFORM = "torch", "device", "platform"
SETTING_PREFIX = "setting:"
DEVICE_ORDER = {"cpu": 0, "cuda": 1, "mps": 2, "xpu": 3}
UNSET = "default"


def axis_title(axis: str) -> str:
    return axis[len(SETTING_PREFIX):] if axis.startswith(SETTING_PREFIX) else {
        TORCH: "torch version", DEVICE: "device", PLATFORM: "machine"}[axis]


def value_order(axis: str, value: str) -> tuple[Any, ...]:
    """Natural order of an axis' values: versions numerically, cpu first, numbers as numbers."""
    if axis == TORCH:
        try:
            return (0, parse_version(value), value)
        except ValueError:
            return (1, (), value)
    if axis == DEVICE:
        return (DEVICE_ORDER.get(value, 9), (), value)
    setting = SETTINGS.get(axis[len(SETTING_PREFIX):]) if axis.startswith(SETTING_PREFIX) else None
    if setting is not None and setting.values and value in setting.values:
        return (0, (setting.values.index(value),), value)  # the order the setting lists
    if value.isdigit():
        return (0, (int(value),), value)
    return (1, (), value)


ROW_COLUMNS = ("scenario", "output", "status", "digest", "repeatable", "error", "dtype",
               "sample", "env_id")
# Columns with few distinct values: categorical, so a million rows stay small and fast.
CATEGORICAL = ("scenario", "output", "status", "dtype", "env_id", TORCH, DEVICE, PLATFORM,
               "file")


def frame(files: Iterable[ResultsFile]) -> pd.DataFrame:
    """One DataFrame row per results row, with one column per axis (built column-wise,
    one list comprehension per column and file: a million rows in seconds)."""
    return join_frames([file_frame(item) for item in files])


def join_frames(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """The frames of single files (`file_frame`) as one, axes categorical."""
    data = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=[*ROW_COLUMNS, TORCH, DEVICE, PLATFORM, "file", "stored", "trace_key"])
    for column in setting_columns(data):
        data[column] = data[column].fillna(UNSET)
    for column in (*CATEGORICAL, *setting_columns(data)):
        data[column] = data[column].astype("category")
    return data


def file_frame(item: ResultsFile) -> pd.DataFrame:
    """One file's rows as a frame (its rows can be dropped afterwards)."""
    rows = item.rows
    environment = item.header.get("environment", {})
    folder, name = Path(item.path).parent, str(item.path)
    columns: dict[str, Any] = {column: [row.get(column) for row in rows]
                               for column in ROW_COLUMNS}
    columns[TORCH] = [str(row.get("torch_version")) for row in rows]
    columns[DEVICE] = [str(row.get("device")) for row in rows]
    columns[PLATFORM] = platform_label(environment) if environment else "unknown"
    columns["file"] = name
    columns["stored"] = [str(folder / row["stored"]) if row.get("stored") else None
                         for row in rows]
    traced = traces_path(Path(item.path)).exists()  # keys cost time: only where needed
    columns["trace_key"] = [trace_key(row["scenario"], str(row.get("device")),
                                      row.get("settings") or {}) if traced else None
                            for row in rows]
    settings = [row.get("settings") or {} for row in rows]
    for setting in sorted({key for values in settings for key in values}):
        columns[SETTING_PREFIX + setting] = [str(values.get(setting, UNSET))
                                             for values in settings]
    return pd.DataFrame(columns, index=pd.RangeIndex(len(rows)))


def setting_columns(data: pd.DataFrame) -> list[str]:
    return sorted(column for column in data.columns if column.startswith(SETTING_PREFIX))


def axes_of(data: pd.DataFrame) -> list[str]:
    """Axes whose values vary among the comparable cells, in a fixed order."""
    candidates = [TORCH, DEVICE, PLATFORM] + setting_columns(data)
    return [axis for axis in candidates
            if axis in data.columns and data[axis].nunique(dropna=True) > 1]


@dataclass
class AxisCell:
    """How one output's value on one axis value compares with the reference value."""

    groups: int = 0  # contexts (values of the other axes) where both were compared
    differing: int = 0
    worst: Distance | None = None
    origin: Origin | NoOrigin | None = None  # where a differing pair first diverges (traces)

    @property
    def verdict(self) -> str:
        if self.groups == 0:
            return "not compared"
        return "identical" if self.differing == 0 else "differs"


@dataclass
class AxisTable:
    """Every compared output along one axis."""

    axis: str
    values: list[str]
    reference: str
    cells: dict[tuple[str, str], dict[str, AxisCell]] = field(default_factory=dict)

    def breaking(self) -> list[tuple[str, str]]:
        return sorted(key for key, row in self.cells.items()
                      if any(cell.differing for cell in row.values()))

    def holding(self) -> list[tuple[str, str]]:
        return sorted(key for key, row in self.cells.items()
                      if not any(cell.differing for cell in row.values()))


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

    def breaks_on(self, key: tuple[str, str]) -> list[str]:
        return [axis for axis in self.axes if key in self.tables[axis].cells
                and any(cell.differing for cell in self.tables[axis].cells[key].values())]


def worse(a: Distance | None, b: Distance | None) -> Distance | None:
    """The larger of two distances (by ULP, then absolute difference, then share)."""
    if a is None:
        return b
    if b is None:
        return a

    def rank(item: Distance) -> tuple[float, float, float]:
        return (float(item.max_ulp or 0), float(item.max_abs or 0), item.share)

    return a if rank(a) >= rank(b) else b


class DistanceCache:
    """Distances by digest pair: the same two values are measured once."""

    def __init__(self) -> None:
        self.known: dict[tuple[str, str], Distance | None] = {}

    def between(self, digest_a: str, sample_a: Any, digest_b: str, sample_b: Any,
                stored_a: str | None = None, stored_b: str | None = None) -> Distance | None:
        """Exact over the full stored values when both sides kept them, else over samples."""
        key = (digest_a, digest_b)
        if key not in self.known:
            whole = _stored_sample(sample_a, stored_a), _stored_sample(sample_b, stored_b)
            if whole[0] is not None and whole[1] is not None:
                self.known[key] = distance(whole[0], whole[1])
            elif not isinstance(sample_a, dict) or not isinstance(sample_b, dict):
                self.known[key] = None
            else:
                self.known[key] = distance(Sample.from_json(sample_a), Sample.from_json(sample_b))
        return self.known[key]


def axis_values(cells: pd.DataFrame, axis: str) -> list[str]:
    return sorted(cells[axis].dropna().unique(), key=lambda v: value_order(axis, v))


def axis_context(axis: str, axes: list[str]) -> list[str]:
    """Columns held equal while comparing along `axis`."""
    return ["scenario", "output"] + [other for other in axes
                                     if other != axis and not _device_specific(axis, other)]


def _stored_sample(sample: Any, stored: str | None) -> Sample | None:
    """The full values kept by `run --keep-tensors`, as a whole-output Sample."""
    if not stored or not isinstance(sample, dict):
        return None
    try:
        return Sample(sample["dtype"], None, Path(stored).read_bytes())
    except OSError:
        return None


def compare_pair(cells: pd.DataFrame, axis: str, context: list[str], before: str, after: str,
                 cache: DistanceCache, origins: Origins | None = None
                 ) -> dict[tuple[str, str], AxisCell]:
    """Each output at `after` against the same output at `before`, other axes equal."""
    columns = context + ["digest", "sample", "stored", "file", "trace_key"]
    left = cells.loc[cells[axis] == before, columns]
    right = cells.loc[cells[axis] == after, columns]
    merged = left.merge(right, on=context, suffixes=("_a", "_b"))
    differs = merged["digest_a"].to_numpy(dtype=object) != merged["digest_b"].to_numpy(
        dtype=object)
    counts = (pd.DataFrame({"scenario": merged["scenario"].to_numpy(dtype=object),
                            "output": merged["output"].to_numpy(dtype=object),
                            "differs": differs})
              .groupby(["scenario", "output"], sort=False)["differs"].agg(["size", "sum"]))
    found = {(scenario, output): AxisCell(groups=int(size), differing=int(total))
             for (scenario, output), size, total in counts.itertuples(name=None)}
    changed = merged[differs]
    pairs = zip(changed["scenario"].tolist(), changed["output"].tolist(),
                changed["digest_a"].tolist(), changed["sample_a"].tolist(),
                changed["digest_b"].tolist(), changed["sample_b"].tolist(),
                changed["stored_a"].tolist(), changed["stored_b"].tolist(),
                zip(changed["file_a"].tolist(), changed["trace_key_a"].tolist()),
                zip(changed["file_b"].tolist(), changed["trace_key_b"].tolist()))
    for (scenario, output, digest_a, sample_a, digest_b, sample_b, stored_a, stored_b,
         unit_a, unit_b) in pairs:
        cell = found[(scenario, output)]
        cell.worst = worse(cell.worst, cache.between(digest_a, sample_a, digest_b, sample_b,
                                                     stored_a, stored_b))
        if origins is not None and not cell.origin:
            cell.origin = origins.between(unit_a, unit_b, output,
                                          (digest_a, digest_b)) or cell.origin
    return found



def compare_axis(cells: pd.DataFrame, axis: str, axes: list[str], cache: DistanceCache,
                 origins: Origins | None = None) -> AxisTable:
    """Compare each output at every axis value with the same output at the reference value."""
    values = axis_values(cells, axis)
    table = AxisTable(axis=axis, values=values, reference=values[0])
    context = axis_context(axis, axes)
    for value in values[1:]:
        for key, cell in compare_pair(cells, axis, context, values[0], value, cache,
                                      origins).items():
            row = table.cells.setdefault(key, {})
            row[value] = cell
            reference = row.setdefault(values[0], AxisCell())
            reference.groups = max(reference.groups, cell.groups)
    return table


@dataclass
class ChangelogStep:
    """What changed from one torch version to the next."""

    before: str
    after: str
    cells: dict[tuple[str, str], AxisCell]

    def changed(self) -> list[tuple[str, str]]:
        return sorted(key for key, cell in self.cells.items() if cell.differing)


def changelog(cells: pd.DataFrame, axes: list[str], cache: DistanceCache,
              origins: Origins | None = None) -> list[ChangelogStep]:
    """Consecutive torch versions compared pairwise: which outputs changed at each release."""
    if TORCH not in axes:
        return []
    values = axis_values(cells, TORCH)
    context = axis_context(TORCH, axes)
    return [ChangelogStep(before, after,
                          compare_pair(cells, TORCH, context, before, after, cache, origins))
            for before, after in zip(values, values[1:])]


def _device_specific(axis: str, other: str) -> bool:
    """Across devices, a setting of one device only (cpu_capability) is n/a on the other."""
    if axis != DEVICE or not other.startswith(SETTING_PREFIX):
        return False
    setting = SETTINGS.get(other[len(SETTING_PREFIX):])
    return setting is not None and setting.devices is not None


def find_conflicts(cells: pd.DataFrame, axis_columns: list[str]) -> pd.DataFrame:
    """Cells that one environment reported with different digests (in different files).

    Identical rows from several copies of one file are merged silently; disagreeing ones
    mean a results file is stale or the environment record misses what changed.
    """
    key = ["env_id", "scenario", "output"] + axis_columns
    counts = cells.groupby(key, dropna=False)["digest"].transform("nunique")
    found = cells[counts > 1]
    return (found.groupby(["env_id", "scenario", "output"], sort=True)
            .agg(digests=("digest", "nunique"), files=("file", lambda f: sorted(set(f))))
            .reset_index())


def compare(files: Iterable[ResultsFile], data: pd.DataFrame | None = None) -> Comparison:
    """Classify every cell; `data` is the files' frame when the caller built it already."""
    data = frame(files) if data is None else data
    with_value = data[(data["status"] == "ok") & data["output"].notna()]
    comparable = with_value[with_value["repeatable"] == True]  # noqa: E712 - pandas mask
    axis_columns = [TORCH, DEVICE, PLATFORM] + setting_columns(data)
    conflicts = find_conflicts(comparable, axis_columns)
    comparable = comparable.drop_duplicates(
        subset=["scenario", "output", "digest"] + axis_columns)
    axes = axes_of(comparable)
    cache, origins = DistanceCache(), Origins()
    tables = {axis: compare_axis(comparable, axis, axes, cache, origins) for axis in axes}
    steps = changelog(comparable, axes, cache, origins)
    outputs = sorted({(s, o) for s, o in zip(with_value["scenario"], with_value["output"])})
    nondeterministic = with_value[with_value["repeatable"] == False]  # noqa: E712
    problems = data[data["status"] != "ok"]
    return Comparison(data=data, axes=axes, tables=tables, outputs=outputs,
                      nondeterministic=nondeterministic, problems=problems, changelog=steps,
                      conflicts=conflicts)
