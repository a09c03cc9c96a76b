"""Classify every cell of merged results with pandas: where results hold, where they break.

An *axis* is one thing that varies in the data: the torch version, the device, the machine
(platform), or one setting. Along an axis, two cells are compared only when every other
axis has the same value, so a difference is attributed to the axis alone. Only outputs that
repeat run to run are compared across environments; the others are reported as
nondeterministic on their setup.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import pandas as pd

from audit.compat import parse_version
from audit.distance import Distance, distance
from audit.environment import platform_label
from audit.results import ResultsFile
from audit.sample import Sample
from audit.settings import SETTINGS

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


def frame(files: Iterable[ResultsFile]) -> pd.DataFrame:
    """One DataFrame row per results row, with one column per axis."""
    records: list[dict[str, Any]] = []
    for item in files:
        environment = item.header.get("environment", {})
        machine = platform_label(environment) if environment else "unknown"
        for row in item.rows:
            settings = row.get("settings") or {}
            record = {
                "scenario": row["scenario"], "output": row.get("output"),
                "status": row["status"], "digest": row.get("digest"),
                "repeatable": row.get("repeatable"), "error": row.get("error"),
                "dtype": row.get("dtype"), "sample": row.get("sample"),
                "env_id": row.get("env_id"), TORCH: str(row.get("torch_version")),
                DEVICE: str(row.get("device")), PLATFORM: machine, "file": str(item.path),
            }
            for name, value in settings.items():
                record[SETTING_PREFIX + name] = str(value)
            records.append(record)
    data = pd.DataFrame.from_records(records)
    for column in setting_columns(data):
        data[column] = data[column].fillna(UNSET)
    return data


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

    def between(self, digest_a: str, sample_a: Any, digest_b: str, sample_b: Any
                ) -> Distance | None:
        key = (digest_a, digest_b)
        if key not in self.known:
            if not isinstance(sample_a, dict) or not isinstance(sample_b, dict):
                self.known[key] = None
            else:
                self.known[key] = distance(Sample.from_json(sample_a), Sample.from_json(sample_b))
        return self.known[key]


def compare_axis(cells: pd.DataFrame, axis: str, axes: list[str], cache: DistanceCache
                 ) -> AxisTable:
    """Compare each output's value at every axis value with its value at the reference."""
    values = sorted(cells[axis].dropna().unique(), key=lambda v: value_order(axis, v))
    reference = values[0]
    table = AxisTable(axis=axis, values=values, reference=reference)
    context = ["scenario", "output"] + [other for other in axes
                                        if other != axis and not _device_specific(axis, other)]
    ranked = cells.assign(_rank=cells[axis].map({v: i for i, v in enumerate(values)}))
    ranked = ranked.sort_values(context + ["_rank"], kind="stable")
    first = ranked.groupby(context, sort=False, dropna=False).head(1)
    base = first[context + [axis, "digest", "sample"]].rename(
        columns={axis: "_ref_value", "digest": "_ref_digest", "sample": "_ref_sample"})
    merged = ranked.merge(base, on=context, how="inner")
    merged = merged[merged[axis] != merged["_ref_value"]]
    columns = zip(merged["scenario"], merged["output"], merged[axis], merged["_ref_value"],
                  merged["digest"], merged["sample"], merged["_ref_digest"], merged["_ref_sample"])
    for scenario, output, value, ref_value, digest, sample, ref_digest, ref_sample in columns:
        row = table.cells.setdefault((scenario, output), {})
        ref_cell = row.setdefault(ref_value, AxisCell())
        cell = row.setdefault(value, AxisCell())
        cell.groups += 1
        ref_cell.groups += 1
        if digest != ref_digest:
            cell.differing += 1
            cell.worst = worse(cell.worst, cache.between(ref_digest, ref_sample, digest, sample))
    return table


def _device_specific(axis: str, other: str) -> bool:
    """Across devices, a setting of one device only (cpu_capability) is n/a on the other."""
    if axis != DEVICE or not other.startswith(SETTING_PREFIX):
        return False
    setting = SETTINGS.get(other[len(SETTING_PREFIX):])
    return setting is not None and setting.devices is not None


def compare(files: Iterable[ResultsFile]) -> Comparison:
    data = frame(files)
    with_value = data[(data["status"] == "ok") & data["output"].notna()]
    comparable = with_value[with_value["repeatable"] == True]  # noqa: E712 - pandas mask
    axis_columns = [TORCH, DEVICE, PLATFORM] + setting_columns(data)
    comparable = comparable.drop_duplicates(
        subset=["scenario", "output", "digest"] + axis_columns)
    axes = axes_of(comparable)
    cache = DistanceCache()
    tables = {axis: compare_axis(comparable, axis, axes, cache) for axis in axes}
    outputs = sorted({(s, o) for s, o in zip(with_value["scenario"], with_value["output"])})
    nondeterministic = with_value[with_value["repeatable"] == False]  # noqa: E712
    problems = data[data["status"] != "ok"]
    return Comparison(data=data, axes=axes, tables=tables, outputs=outputs,
                      nondeterministic=nondeterministic, problems=problems)
