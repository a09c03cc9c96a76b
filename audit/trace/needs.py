"""Which units need an op trace: both sides of every comparison whose digests differ.

The report (audit.judge.compare) compares an output along one axis (torch version, device,
machine, one setting) between cells whose other axes are all equal, and asks the traces of
both cells of a differing pair where the output first diverges (audit.trace.origin). A trace is
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
files, torch versions and machines do too (`repro-audit trace --for`, audit.run.trace_command).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Callable, Iterable, Mapping

from audit.config.settings import SETTINGS, with_unset_values
from audit.environment.collect import platform_label
from audit.store.results import unit_key

NOT_RECORDED = "not recorded"  # as audit.judge.compare: a setting unknown here, absent from a row


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
    unit: str  # the unit's key as requested (audit.run.run_command.row_unit_key): what to run again
    trace: str  # its trace key (audit.store.traces.trace_key of the settings in effect)


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


@dataclass(frozen=True)
class Member:
    """A cell in a group of cells that the report compares along one axis."""

    value: str  # its value on that axis
    digest: str  # its output's digest
    cell: Cell


@dataclass(frozen=True)
class Group:
    """Cells of one output that differ only along `axis`, with at least two digests."""

    scenario: str
    output: str
    axis: str
    rank: tuple[Any, ...]  # how reference-like its context is (smaller: more)
    members: tuple[Member, ...]

    def pairs(self) -> set[tuple[str, str]]:
        """Pairs of axis values whose digests differ here, each (smaller, larger)."""
        found = set()
        for a in self.members:
            for b in self.members:
                if a.value < b.value and a.digest != b.digest:
                    found.add((a.value, b.value))
        return found

    def cells(self) -> set[Cell]:
        return {member.cell for member in self.members}


def _rank(name: str, value: str) -> tuple[Any, ...]:
    """Order of a context value: numbers as numbers, a setting's values as it lists them
    (its default first), so that contexts like the report's references come first."""
    if value.isdigit():
        return (0, int(value), value)
    setting = SETTINGS.get(name[len("setting:"):]) if name.startswith("setting:") else None
    if setting is not None and setting.values and value in setting.values:
        return (1, setting.values.index(value), value)
    return (2, 0, value)


def _picker(indices: list[int]) -> Callable[[tuple[str, ...]], tuple[str, ...]]:
    """A function that takes these positions of a tuple, as a tuple (itemgetter is fast
    but returns a bare item for one position)."""
    if len(indices) > 1:
        return itemgetter(*indices)
    return lambda full: tuple(full[index] for index in indices)


def groups_of(sources: Iterable[Source]) -> list[Group]:
    """Every group of cells the report compares along one axis whose digests differ."""
    values: list[tuple[str, str, dict[str, str], str, Cell]] = []
    # The outputs of one unit share its axes and its cell: each is made once per unit.
    units: dict[tuple[Any, ...], tuple[dict[str, str], Cell]] = {}
    rows_of: dict[tuple[Any, ...], int] = defaultdict(int)  # unit -> its comparable rows
    for source in sources:
        platform = platform_label(dict(source.environment)) if source.environment else "unknown"
        for row in source.rows:
            if not comparable(row):
                continue
            settings = row.get("settings") or {}
            requested = row.get("requested")
            unit = (source.name, row["scenario"], row["device"], row.get("torch_version"),
                    tuple(map(str, settings.items())),
                    None if requested is None else tuple(map(str, requested.items())))
            known = units.get(unit)
            if known is None:
                device = str(row["device"])
                axes = {"torch": str(row.get("torch_version")), "device": device,
                        "platform": platform}
                for name, value in with_unset_values(settings, device).items():
                    axes[f"setting:{name}"] = str(value)
                known = units[unit] = (axes, cell_of(source.name, row))
            rows_of[unit] += 1
            values.append((str(row["scenario"]), str(row["output"]), known[0],
                           str(row["digest"]), known[1]))
    seen: dict[str, set[str]] = defaultdict(set)
    counts: dict[str, int] = defaultdict(int)
    for unit, (axes, _) in units.items():
        for axis, value in axes.items():
            seen[axis].add(value)
            counts[axis] += rows_of[unit]
    for axis, count in counts.items():
        if count < len(values):  # some rows lack it: "not recorded" there
            seen[axis].add(NOT_RECORDED)
    # Only axes that vary are compared along, and only they tell two contexts apart.
    names = sorted(axis for axis, found in seen.items() if len(found) > 1)
    device_only = {f"setting:{name}" for name, setting in SETTINGS.items()
                   if setting.devices is not None}
    # An output with one digest wherever it was made has no group to find: most hold.
    digests: dict[tuple[str, str], set[str]] = defaultdict(set)
    for scenario, output, _, digest, _ in values:
        digests[(scenario, output)].add(digest)
    # Each row's values in the order of `names`, so that a context is a slice of them.
    rows = [(scenario, output, tuple(axes.get(name, NOT_RECORDED) for name in names),
             digest, cell) for scenario, output, axes, digest, cell in values
            if len(digests[(scenario, output)]) > 1]
    found: list[Group] = []
    for position, axis in enumerate(names):
        kept = [index for index, name in enumerate(names)
                if index != position and not (axis == "device" and name in device_only)]
        others = [names[index] for index in kept]
        pick = _picker(kept)
        groups: dict[tuple[Any, ...], list[tuple[str, str, Cell]]] = defaultdict(list)
        for scenario, output, full, digest, cell in rows:
            groups[(scenario, output, pick(full))].append((full[position], digest, cell))
        for (scenario, output, context), members in groups.items():
            if len({digest for _, digest, _ in members}) > 1:
                rank = tuple(_rank(name, value) for name, value in zip(others, context))
                found.append(Group(scenario, output, axis, rank,
                                   tuple(Member(*member) for member in members)))
    return found


def differing(sources: Iterable[Source],
              traceable: Callable[[Cell], bool] | None = None,
              across: bool = False) -> set[Cell]:
    """Cells on either side of a comparison (as the report pairs them) that differs.

    With `traceable` (whether a cell has a trace or will get one), a cell is needed only
    when a cell it differs from is traceable too: an origin needs both sides' traces, so
    tracing one side of a comparison with results that have none (kept results of a
    machine that did not trace) would be time spent for nothing. With `across`, only
    comparisons between sources count (those within one are its run's to trace).
    """
    needed: set[Cell] = set()
    for group in groups_of(sources):
        if across and len({member.cell.source for member in group.members}) < 2:
            continue
        if traceable is None:
            needed |= group.cells()
            continue
        sides: dict[str, list[Cell]] = defaultdict(list)
        for member in group.members:
            if traceable(member.cell):
                sides[member.digest].append(member.cell)
        if len(sides) > 1:  # two traceable sides that differ
            for cells in sides.values():
                needed.update(cells)
    return needed


class Selection:
    """Fewer traces for the same origins: one group per pair of values, not every group.

    The report shows, for an output at one axis value, the origin of the first differing
    pair of cells (in any context of the other axes) whose traces give one. So one context
    per pair of values that differ is enough, as long as its traces give an origin; where
    they do not, every other context of that pair is traced (`more`), as with every unit
    traced. Contexts like the report's references come first, so that one
    unit's trace serves the pairs of several axes (and a two-thread unit, which runs alone,
    is traced only where the thread count itself is compared).
    """

    def __init__(self, groups: list[Group]) -> None:
        self.by_pair: dict[tuple[str, str, str, tuple[str, str]], list[Group]] = \
            defaultdict(list)
        for group in sorted(groups, key=lambda item: item.rank):
            for pair in group.pairs():
                self.by_pair[(group.scenario, group.output, group.axis, pair)].append(group)
        self.chosen: dict[tuple[str, str, str, tuple[str, str]], int] = {
            key: 0 for key in self.by_pair}  # index of the group each pair is checked in
        self.done: set[tuple[str, str, str, tuple[str, str]]] = set()

    def cells(self) -> set[Cell]:
        """Every cell of the groups chosen so far."""
        found: set[Cell] = set()
        for key, index in self.chosen.items():
            for group in self.by_pair[key][:index + 1]:
                found |= group.cells()
        return found

    def checks(self) -> list[tuple[tuple[str, str, str, tuple[str, str]], Member, Member]]:
        """For each pair not yet known to have an origin: its two cells in the group it is
        checked in now."""
        found = []
        for key, index in self.chosen.items():
            if key in self.done:
                continue
            group = self.by_pair[key][index]
            first, second = key[3]
            a, b = next((a, b) for a in group.members for b in group.members
                        if a.value == first and b.value == second and a.digest != b.digest)
            found.append((key, a, b))
        return found

    def resolved(self, key: tuple[str, str, str, tuple[str, str]]) -> None:
        self.done.add(key)

    def more(self, key: tuple[str, str, str, tuple[str, str]]) -> bool:
        """The pair had no origin where checked: trace every other group of it, as if all
        were traced (one more pass, not one per group: a pair without an origin in one
        context mostly has none in any). False when there is no other group."""
        self.done.add(key)
        if self.chosen[key] + 1 >= len(self.by_pair[key]):
            return False
        self.chosen[key] = len(self.by_pair[key]) - 1
        return True


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
