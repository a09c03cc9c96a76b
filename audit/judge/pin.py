"""What to pin: under which value of another setting a break along an axis disappears.

An axis table (`audit.judge.tables.compare_axis`) compares each output at every axis value
with the same output at the reference value, every other axis held equal. Each such comparison
is made in one *context*: one value of every other axis, so of every other setting. Counting
only the comparisons made where a setting S had the value v gives the axis' break as it
would be had S been pinned to v: "across machine 52 of 507 outputs differ; with
cpu_capability=default 0 of 507". That answers "what do I set so that my results come out
the same there too", from the data alone.

The counts are those of the axis tables exactly (the same cells, reference and contexts),
computed from digests only, vectorised: a million-row report asks for every axis, setting
and value, and re-comparing restricted frames would cost a pandas merge each.
Only settings varied in the data are candidates, and only values a user can set (not `n/a`);
the torch version, the device and the machine are axes but never something to pin.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
import pandas as pd

from audit.config.settings import NOT_APPLICABLE, SETTINGS
from audit.errors import UserError
from audit.judge.axes import PLATFORM, SETTING_PREFIX, value_order
from audit.judge.compare import Comparison
from audit.judge.platforms import user_view
from audit.judge.tables import AxisTable, axis_context

# A value is suggested only where its comparisons include at least this share of the
# outputs that break along the axis: fewer could look better for lack of comparisons alone.
COVERAGE = 0.9

Pins = tuple[tuple[str, str], ...]  # ((setting column, value), ...), sorted by column


@dataclass(frozen=True)
class Restricted:
    """The axis' break counted only where the pinned settings had their values."""

    pins: Pins
    compared: int  # outputs compared along the axis there
    differing: int  # of them, outputs that differ
    covered: int  # of the outputs that break along the axis (anywhere), those compared there

    def removes(self) -> bool:
        return self.covered > 0 and self.differing == 0

    def helps(self) -> bool:
        """Some output that breaks along the axis, compared here, no longer differs."""
        return self.differing < self.covered


@dataclass
class AxisPins:
    """One breaking axis: its break, and the break under each value of each other setting."""

    axis: str
    compared: int  # outputs compared along the axis (the axis table's rows)
    differing: int  # outputs that differ somewhere (the axis table's `breaking()`)
    candidates: list[str]  # setting columns that could be pinned (varied, in the context)
    options: list[Restricted] = field(default_factory=list)  # singles, then the best pair
    still_differing: list[tuple[str, str]] = field(default_factory=list)  # with `best()`

    def enough(self, option: Restricted) -> bool:
        """Compared on enough of the breaking outputs to be suggested (`COVERAGE`)."""
        return option.covered >= COVERAGE * self.differing

    def best(self) -> Restricted | None:
        """The option to suggest: fewest outputs differing among those that help and were
        compared on enough breaking outputs; ties to wider coverage, then fewer pins."""
        useful = [option for option in self.options if option.helps() and self.enough(option)]
        if not useful:
            return None
        return min(useful, key=lambda option: (option.differing, -option.covered,
                                               -option.compared, len(option.pins)))


def settable(column: str, value: str | None) -> bool:
    """A value a user can choose: one the setting accepts (not n/a, nor a placeholder for
    a value a file did not record); a setting this version does not know is never one."""
    setting = SETTINGS.get(column[len(SETTING_PREFIX):])
    if value is None or value == NOT_APPLICABLE or setting is None:
        return False
    try:
        return setting.validate(value, column) == value
    except UserError:
        return False


def what_to_pin(result: Comparison) -> list[AxisPins]:
    """For every axis with breaking outputs, in `result.axes` order."""
    if result.comparable is None:
        return []
    comparable, grouping = result.comparable, {}
    if PLATFORM in result.axes:  # across machines as a user gets each (audit.judge.platforms)
        comparable, grouping[PLATFORM] = user_view(
            comparable, axis_context(PLATFORM, result.axes))
    cells = Coded(comparable)
    return [axis_pins(cells, axis, result.axes, result.tables[axis].reference,
                      grouping.get(axis))
            for axis in result.axes if _breaks(result.tables[axis])]


def _breaks(table: AxisTable) -> bool:
    """Whether some output differs along the axis (stops at the first: `breaking()` sorts
    every output, for a yes or no)."""
    return any(cell.differing for row in table.cells.values() for cell in row.values())


class Coded:
    """The cells' columns as integer codes from 1 (0: missing), each converted once."""

    def __init__(self, cells: pd.DataFrame) -> None:
        self.cells = cells
        self._codes: dict[str, tuple[np.ndarray, pd.Index]] = {}

    def __len__(self) -> int:
        return len(self.cells)

    def _coded(self, name: str) -> tuple[np.ndarray, pd.Index]:
        if name not in self._codes:
            column = self.cells[name]
            if isinstance(column.dtype, pd.CategoricalDtype):
                codes, uniques = column.cat.codes.to_numpy(), column.cat.categories
            else:
                codes, uniques = pd.factorize(column.to_numpy(dtype=object))
            self._codes[name] = (codes.astype(np.int64) + 1, pd.Index(uniques, dtype=object))
        return self._codes[name]

    def codes(self, name: str) -> tuple[np.ndarray, int]:
        """The column's codes and how many there can be (missing included)."""
        codes, uniques = self._coded(name)
        return codes, len(uniques) + 1

    def label(self, name: str, code: int) -> str | None:
        """What a code of `codes(name)` stands for."""
        return None if code == 0 else self._coded(name)[1][code - 1]

    def code(self, name: str, value: str) -> int:
        """The code of `value` in `codes(name)`."""
        return int(self._coded(name)[1].get_loc(value)) + 1


def _combined(parts: list[tuple[np.ndarray, int]], length: int) -> tuple[np.ndarray, int]:
    """One id per distinct combination of the parts' codes (mixed radix), and the bound of
    the ids; renumbered densely only where the product of the sizes would overflow."""
    ids, size = np.zeros(length, dtype=np.int64), 1
    for codes, count in parts:
        if size * count >= 2**62:
            ids, uniques = pd.factorize(ids)
            size = len(uniques)
        ids = ids * count + codes
        size *= count
    return ids, size


@dataclass
class Comparisons:
    """Every comparison an axis table makes, one entry each: the output compared, whether
    its two cells differ, and a row of the compared cell (for its context's settings)."""

    outputs: np.ndarray  # output id per comparison, below `bound`
    differs: np.ndarray
    rows: np.ndarray  # a position in the cells, of the non-reference side
    bound: int


def comparisons(cells: Coded, axis: str, context: list[str], reference: str) -> Comparisons:
    """The axis table's comparisons (`compare_axis`), from digests only.

    Each is a (context, value) pair: the reference cell and the cell at `value` of one
    context. It differs when their digests differ: a cell with several digests (from
    conflicting files, or several values of a setting left out of the context) differs
    unless both cells hold one and the same digest, as a merge of their rows would find.
    """
    group = _combined([cells.codes(name) for name in context], len(cells))
    value, width = cells.codes(axis)
    digest, _ = cells.codes("digest")
    # Sorted by (context, axis value): a context's cells are next to each other.
    key, _ = _combined([group, (value, width)], len(cells))
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    starts = np.flatnonzero(np.r_[True, sorted_key[1:] != sorted_key[:-1]]) if len(
        key) else np.zeros(0, dtype=np.int64)
    ordered = digest[order]
    low = np.minimum.reduceat(ordered, starts) if len(starts) else ordered
    high = np.maximum.reduceat(ordered, starts) if len(starts) else ordered
    cell_group, cell_value = np.divmod(sorted_key[starts], width)
    # Each cell's run of cells of one context, and that run's reference cell.
    run = np.cumsum(np.r_[True, cell_group[1:] != cell_group[:-1]]) - 1 if len(
        starts) else np.zeros(0, dtype=np.int64)
    is_reference = cell_value == cells.code(axis, reference)
    reference_low = np.full(int(run[-1]) + 1 if len(run) else 0, -1, dtype=np.int64)
    reference_high = reference_low.copy()
    reference_low[run[is_reference]] = low[is_reference]
    reference_high[run[is_reference]] = high[is_reference]
    pair = ~is_reference & (reference_low[run] >= 0)  # -1: no reference cell there
    pair_run, low, high = run[pair], low[pair], high[pair]
    differs = ~((low == high) & (reference_low[pair_run] == low)
                & (reference_high[pair_run] == low))
    rows = order[starts][pair]
    outputs, bound = _combined([(codes[rows], count) for codes, count in (
        cells.codes("scenario"), cells.codes("output"))], len(rows))
    if bound > 4 * len(rows) + 64:  # sparse ids: flags per id would be mostly unused
        outputs, uniques = pd.factorize(outputs)
        bound = len(uniques)
    return Comparisons(outputs, differs, rows, bound)


def axis_pins(cells: Coded, axis: str, axes: list[str], reference: str,
              grouping: list[str] | None = None) -> AxisPins:
    """The break along `axis` (against `reference`, as its table), and under each pin.

    A setting in the axis' context has one value per comparison, so the break with S = v
    is the break over the comparisons whose context has S = v. `grouping`: the columns
    that make a context where they are not the axis' context columns themselves (across
    machines, the settings as a user gets them); pins are still named by the settings.
    """
    context = axis_context(axis, axes)
    found = comparisons(cells, axis, grouping or context, reference)
    broken = _any_per_output(found, found.differs)
    candidates = [name for name in context if name.startswith(SETTING_PREFIX)]
    compared = _any_per_output(found, np.ones(len(found.differs), dtype=bool))
    result = AxisPins(axis=axis, compared=int(compared.sum()), differing=int(broken.sum()),
                      candidates=candidates)

    def restricted(pins: Pins, where: np.ndarray) -> Restricted:
        compared = _any_per_output(found, where)
        return Restricted(pins, int(compared.sum()),
                          int(_any_per_output(found, where & found.differs).sum()),
                          int((compared & broken).sum()))

    masks: dict[tuple[str, str], np.ndarray] = {}  # (column, value) -> its comparisons
    for name in candidates:
        all_codes, count = cells.codes(name)
        codes = all_codes[found.rows]
        present = {cells.label(name, int(code)): int(code)
                   for code in np.flatnonzero(np.bincount(codes, minlength=count))}
        for value in sorted((value for value in present if settable(name, value)),
                            key=lambda value, name=name: value_order(name, value)):
            masks[(name, value)] = codes == present[value]
            result.options.append(restricted(((name, value),), masks[(name, value)]))
    single = result.best()
    if single is None or single.differing:  # no one value removes it: try two together
        pairs = [restricted((first, second), masks[first] & masks[second])
                 for first, second in combinations(masks, 2) if first[0] != second[0]]
        useful = [option for option in pairs if option.helps() and result.enough(option)]
        if useful:
            best_pair = min(useful, key=lambda option: (option.differing, -option.covered,
                                                        -option.compared, option.pins))
            if single is None or best_pair.differing < single.differing:
                result.options.append(best_pair)
    best = result.best()
    if best is not None and best.differing:  # name what still differs with the suggestion
        where = np.logical_and.reduce([masks[pin] for pin in best.pins]) & found.differs
        rows = found.rows[where]
        frame = cells.cells
        result.still_differing = sorted(set(zip(frame["scenario"].iloc[rows].tolist(),
                                                frame["output"].iloc[rows].tolist())))
    return result


def _any_per_output(found: Comparisons, where: np.ndarray) -> np.ndarray:
    """For each output id, whether any of its comparisons is in `where`."""
    flags = np.zeros(found.bound, dtype=bool)
    flags[found.outputs[where]] = True
    return flags
