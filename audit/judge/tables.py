"""Axis tables: every output compared along one axis, and torch release by release.

Along an axis, two cells are compared only when every other axis has the same value, so a
difference is attributed to the axis alone; each output at every axis value is compared
with the same output at the axis' first (reference) value.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from audit.config.settings import NOT_APPLICABLE, SETTINGS
from audit.judge.axes import DEVICE, PLATFORM, SETTING_PREFIX, TORCH, value_order
from audit.judge.cells import AxisCell, DistanceCache, compare_pair
from audit.judge.frames import setting_columns
from audit.judge.platforms import PairCoverage, user_view
from audit.trace.origin import Origins


def axes_of(data: pd.DataFrame) -> list[str]:
    """Axes whose values vary among the comparable cells, in a fixed order."""
    candidates = [TORCH, DEVICE, PLATFORM] + setting_columns(data)
    return [axis for axis in candidates
            if axis in data.columns and len(axis_values(data, axis)) > 1]


def axis_values(cells: pd.DataFrame, axis: str) -> list[str]:
    """The values along `axis`, in order; a setting's n/a (it does not apply on some
    machine or device) is no value to compare along it."""
    values = cells[axis].dropna().unique()
    if axis.startswith(SETTING_PREFIX):
        values = [value for value in values if value != NOT_APPLICABLE]
    return sorted(values, key=lambda v: value_order(axis, v))


def reference_first(cells: pd.DataFrame, axis: str, context: list[str],
                    values: list[str]) -> list[str]:
    """`values` with the reference first: the first that meets another value in some
    context (cpu_capability `default` of one machine alone meets nothing on another)."""
    groups = cells.groupby(context, observed=True, sort=False, dropna=False).ngroup()
    keys = {value: set(groups[cells[axis] == value].unique()) for value in values}
    for value in values:
        if any(keys[value] & keys[other] for other in values if other != value):
            return [value] + [other for other in values if other != value]
    return values


def axis_context(axis: str, axes: list[str]) -> list[str]:
    """Columns held equal while comparing along `axis`."""
    return ["scenario", "output"] + [other for other in axes
                                     if other != axis and not _device_specific(axis, other)]


def _device_specific(axis: str, other: str) -> bool:
    """Across devices, a setting of one device only (cpu_capability) is n/a on the other."""
    if axis != DEVICE or not other.startswith(SETTING_PREFIX):
        return False
    setting = SETTINGS.get(other[len(SETTING_PREFIX):])
    return setting is not None and setting.devices is not None


@dataclass
class AxisTable:
    """Every compared output along one axis."""

    axis: str
    values: list[str]
    reference: str
    cells: dict[tuple[str, str], dict[str, AxisCell]] = field(default_factory=dict)
    # Along the machine axis: every pair of machines, what it compared and what it left out.
    pairs: list[PairCoverage] = field(default_factory=list)

    def breaking(self) -> list[tuple[str, str]]:
        """Outputs that differ at some value, sorted."""
        return sorted(key for key, row in self.cells.items()
                      if any(cell.differing for cell in row.values()))

    def holding(self) -> list[tuple[str, str]]:
        broken = set(self.breaking())
        return sorted(key for key in self.cells if key not in broken)


def compare_axis(cells: pd.DataFrame, axis: str, axes: list[str], cache: DistanceCache,
                 origins: Origins | None = None) -> AxisTable:
    """Compare each output at every axis value with the same output at the reference value
    (across machines also as a user gets each: `audit.judge.platforms`)."""
    context = axis_context(axis, axes)
    values = axis_values(cells, axis)
    if axis.startswith(SETTING_PREFIX):
        values = reference_first(cells, axis, context, values)
    table = AxisTable(axis=axis, values=values, reference=values[0])
    also = None
    if axis == PLATFORM:
        cells, also = user_view(cells, context)
    for value in values[1:]:
        for key, cell in compare_pair(cells, axis, context, values[0], value, cache,
                                      origins, also).items():
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
