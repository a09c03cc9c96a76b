"""Which units need an op trace: both sides of every comparison whose digests differ.

The report (audit.compare) compares an output along one axis (torch version, device,
machine, one setting) between cells whose other axes are all equal, and asks the traces of
both cells of a differing pair where the output first diverges (audit.origin). A trace is
only ever read for such a pair, so only their units need one: outputs that hold along
every axis need none. Here, without pandas or torch (a run's parent and the nox host use
it), cells are grouped the way the report pairs them: per output and axis, by the values
of every other axis (for the device axis, settings of one device only are left out, as
the report does). A group whose cells do not all share one digest needs the traces of all
of its cells. That is a superset of the report's pairs (which compare each value with the
axis' first, and each torch version with the one before): a value equal to the first one
is traced too, nothing the report asks for is missed.

Cells are what the report compares: `ok` rows with a value that repeated run to run.
Within one run only the run's own axes (its settings) vary; merged with other results
files, torch versions and machines do too (`repro-audit trace --for`, audit.retrace).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from audit.environment import platform_label
from audit.results import unit_key
from audit.settings import SETTINGS, with_unset_values

NOT_RECORDED = "not recorded"  # as audit.compare: a setting unknown here, absent from a row


@dataclass(frozen=True)
class Source:
    """The rows of one results file (or of one run, before it is written)."""

    name: str  # the file, or any label unique among the sources
    environment: Mapping[str, Any]
    rows: list[dict[str, Any]]


@dataclass(frozen=True)
class Cell:
    """One comparable value: where it came from and the unit that made it."""

    source: str
    unit: str  # the unit's key as requested (audit.run.row_unit_key): what to run again
    trace: str  # its trace key (audit.trace.trace_key of the settings in effect)


def requested_key(row: Mapping[str, Any]) -> str:
    """The key of the unit a row came from, by the settings it requested."""
    requested = row.get("requested")
    return unit_key(row["scenario"], row["device"],
                    requested if requested is not None else row["settings"])


def comparable(row: Mapping[str, Any]) -> bool:
    """A row the report compares: ok, with a value that repeated run to run."""
    return (row.get("status") == "ok" and row.get("output") is not None
            and row.get("repeatable") is True and row.get("digest") is not None)


def cell_of(source: str, row: Mapping[str, Any]) -> Cell:
    return Cell(source, requested_key(row),
                unit_key(row["scenario"], row["device"], row.get("settings") or {}))


def differing(sources: Iterable[Source],
              traceable: Callable[[Cell], bool] | None = None) -> set[Cell]:
    """Cells on either side of a comparison (as the report pairs them) that differs.

    With `traceable` (whether a cell has a trace or will get one), a cell is needed only
    when a cell it differs from is traceable too: an origin needs both sides' traces, so
    tracing one side of a comparison with results that have none (kept results of a
    machine that did not trace) would be time spent for nothing.
    """
    values: list[tuple[str, str, dict[str, str], str, Cell]] = []
    for source in sources:
        platform = platform_label(dict(source.environment)) if source.environment else "unknown"
        for row in source.rows:
            if not comparable(row):
                continue
            device = str(row["device"])
            axes = {"torch": str(row.get("torch_version")), "device": device,
                    "platform": platform}
            for name, value in with_unset_values(row.get("settings") or {}, device).items():
                axes[f"setting:{name}"] = str(value)
            values.append((str(row["scenario"]), str(row["output"]), axes, str(row["digest"]),
                           cell_of(source.name, row)))
    seen: dict[str, set[str]] = defaultdict(set)
    counts: dict[str, int] = defaultdict(int)
    for _, _, axes, _, _ in values:
        for axis, value in axes.items():
            seen[axis].add(value)
            counts[axis] += 1
    for axis, count in counts.items():
        if count < len(values):  # some rows lack it: "not recorded" there
            seen[axis].add(NOT_RECORDED)
    # Only axes that vary are compared along, and only they tell two contexts apart.
    names = sorted(axis for axis, found in seen.items() if len(found) > 1)
    device_only = {f"setting:{name}" for name, setting in SETTINGS.items()
                   if setting.devices is not None}
    needed: set[Cell] = set()
    for axis in names:
        others = [name for name in names
                  if name != axis and not (axis == "device" and name in device_only)]
        groups: dict[tuple[Any, ...], dict[str, list[Cell]]] = defaultdict(
            lambda: defaultdict(list))
        for scenario, output, axes, digest, cell in values:
            context = (scenario, output, *(axes.get(name, NOT_RECORDED) for name in others))
            groups[context][digest].append(cell)
        for by_digest in groups.values():
            if len(by_digest) < 2:
                continue
            if traceable is None:
                for cells in by_digest.values():
                    needed.update(cells)
                continue
            sides = [[cell for cell in cells if traceable(cell)] for cells in by_digest.values()]
            if sum(1 for side in sides if side) > 1:  # two traceable sides that differ
                for side in sides:
                    needed.update(side)
    return needed


def every_cell(sources: Iterable[Source]) -> set[Cell]:
    """Every unit that produced a value (`--trace-all`: traced whether it differs or not)."""
    return {cell_of(source.name, row) for source in sources for row in source.rows
            if row.get("status") == "ok" and row.get("output") is not None}


def wanted(cells: Iterable[Cell], source: str, traced: Iterable[str] = ()
           ) -> dict[str, str]:
    """{unit key as requested: trace key} of the cells of `source` not traced yet."""
    done = set(traced)
    return {cell.unit: cell.trace for cell in cells
            if cell.source == source and cell.trace not in done}
