"""Merged results as one pandas DataFrame: a row per results row, a column per axis.

Every known setting is a column (`setting:<name>`), filled in at its unset value where a
file did not record it; columns with few distinct values are categoricals, so a million
rows stay small and fast to group.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd
from pandas.api.types import union_categoricals

from audit.config.settings import NOT_APPLICABLE, SETTINGS, with_unset_values
from audit.environment.collect import platform_label
from audit.judge.axes import DEVICE, PLATFORM, SETTING_PREFIX, TORCH
from audit.store.results import ResultsFile, row_columns
from audit.store.traces import trace_key, traces_path

NOT_RECORDED = "not recorded"
# The cpu_capability torch picks by itself in a file's environment (its header's reading,
# taken with no capability requested): the machine's automatic choice, "unknown" unrecorded.
AUTOMATIC_CAPABILITY = "auto_capability"  # a setting this version does not know, absent from a file

# Columns with few distinct values: categorical, so a million rows stay small and fast.
CATEGORICAL = ("scenario", "output", "status", "digest", "dtype", "env_id", TORCH, DEVICE,
               PLATFORM, "file", AUTOMATIC_CAPABILITY)
OBJECT_COLUMNS = ("repeatable", "error", "sample", "stored", "trace_key")


def frame(files: Iterable[ResultsFile]) -> pd.DataFrame:
    """One DataFrame row per results row, with one column per axis."""
    return join_frames([file_frame(item) for item in files])


def join_frames(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """The frames of single files (`file_frame`) as one.

    Categoricals are joined by their codes (`union_categoricals`), not through object
    arrays, which would convert a million rows value by value. Every known setting is a
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
               if name not in chosen and value != NOT_APPLICABLE and SETTINGS[name].note_unset}
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
    columns[AUTOMATIC_CAPABILITY] = _constant(
        str(environment.get("cpu_capability") or "unknown").lower(), count)
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
