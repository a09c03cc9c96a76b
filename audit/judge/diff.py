"""Compare two results sets directly: two machines, two versions, before and after a change.

`report` classifies along every axis that varies; `diff` answers one question with an exit
status a script can test: did any value change between A and B? Cells are matched on
(scenario, output, device, settings), ignoring the environment. A pair is compared only
when it is `ok` and repeatable run to run on both sides (identical or differs, with the
distance of the kept samples); any other pair is counted as not compared.

Several environments on one side: cells are grouped by env-id and environments are
paired, never pooled. With one environment on each side the two are paired whatever they
are. Otherwise an environment of A is paired with every environment of B that has the
same torch version (the full version string, local part included: `2.13.0+cpu` and
`2.13.0+cu130` are different builds), the usual case being the same matrix run on two
machines. An environment with no partner is listed, and its cells are counted as only in
A or only in B. Within one environment, a cell that appears in several files is taken
from the first file in path order.

A cell of A whose settings B never ran (two pytest runs under threads 2 and 1) is compared
with the cell of B of the same output and device whose settings differ on the fewest
axes; its line comes under a header naming those axes (`threads 2 → 1`).

No torch and no pandas here: it runs in the torch-free report venv.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from audit.capture.distance import Distance
from audit.capture.distance_text import describe_gap
from audit.judge.baseline.nearest import Axis, describe_axes, settings_axes
from audit.judge.rows import cell_label, comparable, env_of, measure, one_line, settings_key
from audit.store.results import ResultsFile, read_all

Unit = tuple[str, str, str]  # (scenario, device, settings): what a scenario-level row covers


@dataclass(frozen=True, order=True)
class Cell:
    """One output of one scenario on one device and settings, environment left out."""

    scenario: str
    output: str
    device: str
    settings: str  # sorted JSON

    @property
    def unit(self) -> Unit:
        return (self.scenario, self.device, self.settings)

    def label(self) -> str:
        return cell_label(self.scenario, self.output, self.device, self.settings)


@dataclass
class Environment:
    """The cells of one env-id on one side: outputs, and units that failed as a whole."""

    env_id: str
    torch: str
    outputs: dict[Cell, dict[str, Any]] = field(default_factory=dict)
    units: dict[Unit, dict[str, Any]] = field(default_factory=dict)  # output-less rows

    @property
    def size(self) -> int:
        return len(self.outputs) + len(self.units)


@dataclass(frozen=True)
class Difference:
    """A cell whose value differs between A and B, and by how much."""

    cell: Cell
    env_a: str
    env_b: str
    digest_a: str
    digest_b: str
    distance: Distance | None
    shapes: tuple[Any, Any] = (None, None)
    axes: tuple[Axis, ...] = ()  # the settings that differ when compared across them

    def describe(self) -> str:
        return (f"DIFFERS {self.cell.label()} env {one_line(self.env_a)} vs "
                f"{one_line(self.env_b)}: {one_line(describe_gap(self.distance, *self.shapes))}")


@dataclass
class DiffResult:
    """Everything `diff` found; counts are per environment pair. `exit_code`: 0 or 1."""

    pairs: list[tuple[str, str]] = field(default_factory=list)
    identical: int = 0
    differences: list[Difference] = field(default_factory=list)
    not_compared: int = 0  # present on both sides, but not ok and repeatable on both
    only_a: int = 0
    only_b: int = 0
    unpaired_a: dict[str, str] = field(default_factory=dict)  # env-id -> torch version
    unpaired_b: dict[str, str] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return 1 if self.differences else 0


def environments(files: list[ResultsFile]) -> dict[str, Environment]:
    """Rows of one side grouped by env-id (first row of a cell wins, files in path order)."""
    found: dict[str, Environment] = {}
    for item in sorted(files, key=lambda entry: str(entry.path)):
        for row in item.rows:
            env_id = env_of(row, item)
            torch = (item.header.get("environment") or {}).get("torch") or row.get("torch_version")
            environment = found.setdefault(env_id, Environment(env_id, str(torch)))
            settings = settings_key(row.get("settings"), str(row.get("device")))
            if isinstance(row.get("output"), str):
                cell = Cell(str(row["scenario"]), row["output"], str(row.get("device")), settings)
                environment.outputs.setdefault(cell, row)
            else:
                unit = (str(row["scenario"]), str(row.get("device")), settings)
                environment.units.setdefault(unit, row)
    return found


def pair_environments(a: dict[str, Environment], b: dict[str, Environment]
                      ) -> list[tuple[str, str]]:
    """Which environment of A is compared with which of B (see the module docstring)."""
    if len(a) == 1 and len(b) == 1:
        return [(next(iter(a)), next(iter(b)))]
    return [(env_a, env_b) for env_a in sorted(a) for env_b in sorted(b)
            if a[env_a].torch == b[env_b].torch]


def compare_pair(a: Environment, b: Environment, result: DiffResult) -> None:
    """Add one environment pair's cells to `result`."""
    for cell in sorted(set(a.outputs) | set(b.outputs)):
        row_a, row_b = a.outputs.get(cell), b.outputs.get(cell)
        if row_a is not None and row_b is not None:
            _compare(row_a, row_b, cell, (a.env_id, b.env_id), result)
        elif row_a is not None:  # B failed the whole scenario there, or never ran it
            if cell.unit in b.units:
                result.not_compared += 1
            elif not _others(cell, b.outputs, a.outputs):  # else: _across_settings
                result.only_a += 1
        elif cell.unit in a.units:
            result.not_compared += 1
        elif not _others(cell, a.outputs, b.outputs):
            result.only_b += 1
    _across_settings(a, b, result)
    units_a = {cell.unit for cell in a.outputs}
    units_b = {cell.unit for cell in b.outputs}
    for unit in set(a.units) | set(b.units):
        if unit in a.units and unit in b.units:
            result.not_compared += 1  # failed (or unavailable) on both sides
        elif unit in a.units and unit not in units_b:
            result.only_a += 1
        elif unit in b.units and unit not in units_a:
            result.only_b += 1
        # otherwise already counted, once per output of the side that ran it


def _others(cell: Cell, outputs: dict[Cell, Any], own: dict[Cell, Any]) -> list[Cell]:
    """Cells of `outputs` of the same output and device, under settings that the side of
    `cell` (`own`) never ran."""
    return [other for other in outputs
            if (other.scenario, other.output, other.device) ==
            (cell.scenario, cell.output, cell.device) and other not in own]


def _across_settings(a: Environment, b: Environment, result: DiffResult) -> None:
    """Cells each side has under settings the other never ran, compared with the other
    side's cell of the fewest differing settings (each B cell used once)."""
    taken: set[Cell] = set()
    for cell in sorted(a.outputs):
        if cell in b.outputs or cell.unit in b.units or not _others(cell, b.outputs, a.outputs):
            continue
        candidates = [other for other in _others(cell, b.outputs, a.outputs)
                      if other not in taken]
        if not candidates:
            result.only_a += 1
            continue
        best = min(candidates, key=lambda other: (
            len(settings_axes(cell.settings, other.settings)), other))
        taken.add(best)
        _compare(a.outputs[cell], b.outputs[best], best, (a.env_id, b.env_id), result,
                 settings_axes(cell.settings, best.settings))
    result.only_b += sum(1 for cell in b.outputs if cell not in taken
                         and cell not in a.outputs and cell.unit not in a.units
                         and _others(cell, a.outputs, b.outputs))


def _compare(row_a: dict[str, Any], row_b: dict[str, Any], cell: Cell, envs: tuple[str, str],
             result: DiffResult, axes: tuple[Axis, ...] = ()) -> None:
    """One pair of rows: identical, differs (how far), or not compared."""
    if not (comparable(row_a) and comparable(row_b)):
        result.not_compared += 1
    elif row_a["digest"] == row_b["digest"]:
        result.identical += 1
    else:
        result.differences.append(Difference(
            cell, envs[0], envs[1], row_a["digest"], row_b["digest"],
            measure(row_a.get("sample"), row_b.get("sample")),
            (row_a.get("shape"), row_b.get("shape")), axes))


def diff(a_paths: list[str], b_paths: list[str]) -> DiffResult:
    """Compare the results under `a_paths` with those under `b_paths` (files, dirs, globs)."""
    side_a, side_b = environments(read_all(a_paths)), environments(read_all(b_paths))
    result = DiffResult(pairs=pair_environments(side_a, side_b))
    for env_a, env_b in result.pairs:
        compare_pair(side_a[env_a], side_b[env_b], result)
    paired_a = {env_a for env_a, _ in result.pairs}
    paired_b = {env_b for _, env_b in result.pairs}
    for env_id in sorted(set(side_a) - paired_a):
        result.unpaired_a[env_id] = side_a[env_id].torch
        result.only_a += side_a[env_id].size
    for env_id in sorted(set(side_b) - paired_b):
        result.unpaired_b[env_id] = side_b[env_id].torch
        result.only_b += side_b[env_id].size
    result.differences.sort(key=lambda item: (item.cell, item.env_a, item.env_b))
    return result


def format_diff(result: DiffResult) -> list[str]:
    """The lines `diff` prints: each differing output with its distance, then a summary."""
    lines: list[str] = []
    header = None
    for difference in sorted(result.differences, key=lambda item: (
            item.env_a, item.env_b, item.axes, item.cell)):
        pair = (f"env {one_line(difference.env_a)} → env {one_line(difference.env_b)}: "
                f"{one_line(describe_axes(difference.axes))}")
        if difference.axes and pair != header:
            lines.append(pair)
        header = pair
        lines.append(difference.describe())
    for side, unpaired in (("A", result.unpaired_a), ("B", result.unpaired_b)):
        for env_id, torch in unpaired.items():
            lines.append(f"UNPAIRED env {one_line(env_id)} (torch {one_line(torch)}) only in "
                         f"{side}: no environment with this torch version on the other side")
    count = len(result.differences)
    parts = [f"{result.identical} identical", f"{count} {'differs' if count == 1 else 'differ'}",
             f"{result.not_compared} not compared", f"{result.only_a} only in A",
             f"{result.only_b} only in B"]
    if len(result.pairs) != 1:
        parts.append(f"{len(result.pairs)} environment pairs")
    lines.append("diff: " + ", ".join(parts))
    return lines
