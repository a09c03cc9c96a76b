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

import numpy as np
import pandas as pd
from pandas.api.types import union_categoricals

from audit.capture.distance import Distance, distance
from audit.capture.sample import Sample
from audit.config.settings import NOT_APPLICABLE, SETTINGS, with_unset_values
from audit.environment.collect import platform_label
from audit.environment.compat import parse_version
from audit.store.results import ResultsFile, row_columns
from audit.store.traces import trace_key, traces_path
from audit.trace.origin import NoOrigin, Origin, Origins

TORCH, DEVICE, PLATFORM = "torch", "device", "platform"
SETTING_PREFIX = "setting:"
DEVICE_ORDER = {"cpu": 0, "cuda": 1, "mps": 2, "xpu": 3}
NOT_RECORDED = "not recorded"  # a setting this version does not know, absent from a file


CAPABILITY = SETTING_PREFIX + "cpu_capability"


def value_label(axis: str, value: Any) -> str:
    """An axis value as the report prints it: cpu_capability `default` is ATen's scalar
    kernels, a choice that must not read as "not set"."""
    text = str(value)
    return "default (scalar)" if axis == CAPABILITY and text == "default" else text


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


# Columns with few distinct values: categorical, so a million rows stay small and fast.
CATEGORICAL = ("scenario", "output", "status", "digest", "dtype", "env_id", TORCH, DEVICE,
               PLATFORM, "file")
OBJECT_COLUMNS = ("repeatable", "error", "sample", "stored", "trace_key")


def frame(files: Iterable[ResultsFile]) -> pd.DataFrame:
    """One DataFrame row per results row, with one column per axis."""
    return join_frames([file_frame(item) for item in files])


def join_frames(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """The frames of single files (`file_frame`) as one.

    Categoricals are joined by their codes (`union_categoricals`), not through object
    arrays: a million rows join in a fraction of a second. Every known setting is a
    column of every file's frame (see `file_frame`); one this version does not know, absent
    from some file, is `not recorded` there. The settings that were filled in at their
    unset value are in `attrs["assumed"]`: {(setting, value): [files]}.
    """
    settings = sorted({column for part in parts for column in setting_columns(part)})
    assumed: dict[tuple[str, str], list[str]] = {}
    for part in parts:
        for key, files in part.attrs.get("assumed", {}).items():
            assumed.setdefault(key, []).extend(files)
    if not parts:
        return pd.DataFrame({column: pd.Categorical([]) if column in CATEGORICAL
                             else np.empty(0, dtype=object)
                             for column in (*CATEGORICAL, *OBJECT_COLUMNS)})
    columns: dict[str, Any] = {}
    for column in (*CATEGORICAL, *settings):
        columns[column] = union_categoricals(
            [part[column].array if column in part.columns
             else _constant(NOT_RECORDED, len(part))
             for part in parts])
    for column in OBJECT_COLUMNS:
        columns[column] = np.concatenate([part[column].to_numpy(dtype=object)
                                          for part in parts])
    joined = pd.DataFrame(columns)
    joined.attrs["assumed"] = {key: sorted(set(files)) for key, files in sorted(assumed.items())}
    return joined


def _categorical(values: list[Any]) -> pd.Categorical:
    """Values as a categorical, by factorizing (several times faster than pd.Categorical,
    which also sorts its categories; none of ours needs sorted categories)."""
    codes, categories = pd.factorize(_objects(values))
    # Object categories always: a column of None only must still join with text ones.
    return pd.Categorical.from_codes(codes, pd.Index(categories, dtype=object))


def file_frame(item: ResultsFile) -> pd.DataFrame:
    """One file's rows as a frame (its rows can be dropped afterwards).

    A results file lists the rows of one unit (scenario, device, settings) together, so
    what a unit's rows share is built once per run of such rows and repeated by index;
    the rows' own columns are factorized, not converted value by value. Call it with the
    garbage collector paused (`audit.store.results.gc_paused`), as `read_all` does: it makes a
    tuple per row while every row is alive, and full collections would walk them all.
    """
    values = item.columns if item.columns is not None else row_columns(item.rows)
    count = len(values["scenario"])
    environment = item.header.get("environment", {})
    folder = Path(item.path).parent
    unit_keys = list(zip(values["scenario"], values["device"], values["settings"],
                         values["env_id"], values["torch_version"]))
    starts = [position for position in range(count)
              if position == 0 or unit_keys[position] != unit_keys[position - 1]]
    run_of_row = np.repeat(np.arange(len(starts)), np.diff([*starts, count]))

    def per_unit(key: str) -> list[Any]:
        return [values[key][position] for position in starts]

    scenarios, devices = per_unit("scenario"), [str(device) for device in per_unit("device")]
    settings = [chosen or {} for chosen in per_unit("settings")]
    traced = traces_path(Path(item.path)).exists()  # keys cost time: only where needed
    unit: dict[str, Any] = {
        "scenario": scenarios,
        "env_id": per_unit("env_id"),
        TORCH: [str(version) for version in per_unit("torch_version")],
        DEVICE: devices,
    }
    # Every row gets every known setting: one a file did not record (it was written before
    # the setting was recorded, or by a matrix that never set it) at its unset value.
    completed = [with_unset_values(chosen, device) for chosen, device in zip(settings, devices)]
    assumed = {(name, value): [str(item.path)]
               for chosen, full in zip(settings, completed)
               for name, value in full.items()
               if name not in chosen and value != NOT_APPLICABLE}
    for setting in sorted({key for chosen in completed for key in chosen}):
        unit[SETTING_PREFIX + setting] = [str(chosen.get(setting, NOT_RECORDED))
                                          for chosen in completed]
    columns: dict[str, Any] = {}
    for name, unit_values in unit.items():
        categories = _categorical(unit_values)
        columns[name] = pd.Categorical.from_codes(categories.codes[run_of_row],
                                                  categories.categories)
    columns["trace_key"] = _objects([
        trace_key(scenario, device, chosen) if traced else None
        for scenario, device, chosen in zip(scenarios, devices, settings)])[run_of_row]
    for name in ("output", "status", "digest", "dtype"):
        columns[name] = _categorical(values[name])
    for name in ("repeatable", "error", "sample"):
        columns[name] = _objects(values[name])
    columns["stored"] = _objects([str(folder / stored) if stored else None
                                  for stored in values["stored"]])
    columns[PLATFORM] = _constant(platform_label(environment) if environment else "unknown",
                                  count)
    columns["file"] = _constant(str(item.path), count)
    framed = pd.DataFrame(columns, index=pd.RangeIndex(count))
    framed.attrs["assumed"] = assumed
    return framed


def _constant(value: str, length: int) -> pd.Categorical:
    """`length` times one value, as a categorical with object categories (as all ours)."""
    return pd.Categorical.from_codes(np.zeros(length, dtype=np.int8),
                                     pd.Index([value], dtype=object))


def _objects(values: list[Any]) -> np.ndarray:
    """A 1-d object array, also when the values are dicts or lists."""
    column = np.empty(len(values), dtype=object)
    column[:] = values
    return column


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
        """Outputs that differ at some value, sorted."""
        return sorted(key for key, row in self.cells.items()
                      if any(cell.differing for cell in row.values()))

    def holding(self) -> list[tuple[str, str]]:
        broken = set(self.breaking())
        return sorted(key for key in self.cells if key not in broken)


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
        self.decoded: dict[str, Sample] = {}  # a reference value meets several others

    def _sample(self, value_digest: str, sample: dict[str, Any]) -> Sample:
        if value_digest not in self.decoded:
            self.decoded[value_digest] = Sample.from_json(sample)
        return self.decoded[value_digest]

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
                self.known[key] = distance(self._sample(digest_a, sample_a),
                                           self._sample(digest_b, sample_b))
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
    # The worst distance needs each pair of values once, not once per context they met in
    # (first occurrences kept, so ties resolve as before).
    distinct = changed.drop_duplicates(
        ["scenario", "output", "digest_a", "digest_b", "stored_a", "stored_b"])
    for scenario, output, digest_a, sample_a, digest_b, sample_b, stored_a, stored_b in zip(
            *(distinct[column].tolist() for column in (
                "scenario", "output", "digest_a", "sample_a", "digest_b", "sample_b",
                "stored_a", "stored_b"))):
        cell = found[(scenario, output)]
        cell.worst = worse(cell.worst, cache.between(digest_a, sample_a, digest_b, sample_b,
                                                     stored_a, stored_b))
    if origins is not None and (changed["trace_key_a"].notna().any()
                                and changed["trace_key_b"].notna().any()):
        for scenario, output, digest_a, digest_b, unit_a, unit_b in zip(
                changed["scenario"].tolist(), changed["output"].tolist(),
                changed["digest_a"].tolist(), changed["digest_b"].tolist(),
                zip(changed["file_a"].tolist(), changed["trace_key_a"].tolist()),
                zip(changed["file_b"].tolist(), changed["trace_key_b"].tolist())):
            cell = found[(scenario, output)]
            if not cell.origin:
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
              origins: Origins | None = None,
              torch_table: AxisTable | None = None) -> list[ChangelogStep]:
    """Consecutive torch versions compared pairwise: which outputs changed at each release.

    The first step (oldest against the next) is the torch axis table's first comparison:
    given that table, it is taken from there instead of being compared again.
    """
    if TORCH not in axes:
        return []
    values = axis_values(cells, TORCH)
    context = axis_context(TORCH, axes)
    steps = []
    for before, after in zip(values, values[1:]):
        if torch_table is not None and before == torch_table.reference:
            found = {key: row[after] for key, row in torch_table.cells.items() if after in row}
        else:
            found = compare_pair(cells, TORCH, context, before, after, cache, origins)
        steps.append(ChangelogStep(before, after, found))
    return steps


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
    data = frame(files) if data is None else data
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
    outputs = sorted({(s, o) for s, o in zip(with_value["scenario"], with_value["output"])})
    nondeterministic = with_value[with_value["repeatable"] == False]  # noqa: E712
    problems = data[data["status"] != "ok"]
    return Comparison(data=data, axes=axes, tables=tables, outputs=outputs,
                      nondeterministic=nondeterministic, problems=problems, changelog=steps,
                      conflicts=conflicts, comparable=comparable,
                      assumed=dict(data.attrs.get("assumed", {})))
