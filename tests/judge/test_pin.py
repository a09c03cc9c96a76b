"""The report's "What to pin" section on fixed results files: exact markdown, and counts
that are the axis tables' own (checked against compare_pair on restricted cells)."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from audit.environment.collect import env_id
from audit.judge.compare import (
    DEVICE,
    PLATFORM,
    SETTING_PREFIX,
    DistanceCache,
    axis_context,
    compare,
    compare_axis,
    compare_pair,
)
from audit.judge.pin import COVERAGE, Coded, axis_pins, settable, what_to_pin
from audit.publish.report import context_label, environments_section, pin_section, render
from audit.store.results import ResultsFile, make_header, read_all, write_atomic
from tests.judge.support import value_row
from tests.support import DATA

MACHINES = {"a": "Example CPU A @ 2.80GHz", "b": "Example CPU B @ 3.10GHz"}
CHOICES = {"threads": ("1", "2"), "cpu_capability": ("default", "avx2"),
           "deterministic": ("off", "on")}


def nudged(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor with its first element one ULP up (a float) or one unit up (an integer)."""
    copy = tensor.clone().reshape(-1)
    if copy.dtype.is_floating_point:
        copy[0] = torch.nextafter(copy[0], torch.tensor(float("inf"), dtype=copy.dtype))
    else:
        copy[0] += 1
    return copy.reshape(tensor.shape)


def outputs(machine: str, threads: str, capability: str,
            deterministic: str) -> dict[tuple[str, str], torch.Tensor]:
    """Each output's value in one cell: real tensors, each break tied to the settings.

    - seed.rand holds everywhere;
    - ops.sum_large differs across threads, under cpu_capability=avx2 only;
    - ops.softmax differs across machine, under cpu_capability=avx2 only;
    - ops.randn_large differs across machine, under deterministic=off only;
    - ops.index_add differs across deterministic, whatever else is set.
    """
    torch.manual_seed(246)
    values = {("seed.rand", "first"): torch.rand(3, 4),
              ("ops.sum_large", "sum"): torch.ones(1000).sum(),
              ("ops.softmax", "out"): torch.softmax(torch.arange(4.0), 0),
              ("ops.randn_large", "x"): torch.randn(5, dtype=torch.float64),
              ("ops.index_add", "out"): torch.arange(6)}
    breaks = {("ops.sum_large", "sum"): threads == "2" and capability == "avx2",
              ("ops.softmax", "out"): machine == "b" and capability == "avx2",
              ("ops.randn_large", "x"): machine == "b" and deterministic == "off",
              ("ops.index_add", "out"): deterministic == "on"}
    return {key: nudged(value) if breaks.get(key) else value for key, value in values.items()}


def write_results(folder: Path) -> list[Path]:
    """One results file per machine, every combination of CHOICES (matmul_precision set
    but never varied), and one output not repeatable under the scalar kernels."""
    paths = []
    for machine, model in MACHINES.items():
        environment = {"cpu": {"cores": 2, "flags": ["avx2"], "model": model},
                       "cpu_capability": "AVX2", "devices": {}, "machine": "x86_64",
                       "numpy": "2.4.6", "os": "Linux 6.1", "python": "3.11.7",
                       "torch": "2.13.0+cpu"}
        identity = env_id(environment)
        rows = []
        for values in itertools.product(*CHOICES.values()):
            settings = {**dict(zip(CHOICES, values)), "matmul_precision": "highest"}
            cell = outputs(machine, settings["threads"], settings["cpu_capability"],
                           settings["deterministic"])
            if settings["cpu_capability"] == "default":
                cell[("rng.unseeded", "x")] = torch.rand(2)
            for (scenario, output), tensor in sorted(cell.items()):
                rows.append(value_row(scenario, output, tensor, identity,
                                      repeatable=scenario != "rng.unseeded", settings=settings))
        paths.append(write_atomic(folder / f"torch-2.13.0_cpu-{identity}.jsonl",
                                  make_header(environment, identity), rows))
    return paths


EXPECTED = DATA / "pin" / "what_to_pin.md"


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> list[ResultsFile]:
    folder = tmp_path_factory.mktemp("pin")
    write_results(folder)
    return read_all([str(folder)])


def section(files: list[ResultsFile]) -> str:
    return "\n".join(pin_section(compare(files))).rstrip() + "\n"


def test_what_to_pin_matches_the_expected_markdown(results: list[ResultsFile]) -> None:
    assert section(results) == EXPECTED.read_text(encoding="utf-8")


def test_the_section_comes_right_after_the_summary(results: list[ResultsFile]) -> None:
    text = render(results)
    after_summary = text.split("## Summary", 1)[1].split("\n## ", 1)[1]
    assert after_summary.startswith("What to pin\n")
    assert "| [threads](#across-threads) " in text and "\n## Across threads\n" in text


def test_a_setting_never_varied_is_never_suggested(results: list[ResultsFile]) -> None:
    result = compare(results)
    assert "setting:matmul_precision" not in result.axes
    for found in what_to_pin(result):
        assert all(column != "setting:matmul_precision"
                   for option in found.options for column, _ in option.pins)
    assert "matmul_precision" not in section(results)


def test_the_baseline_is_the_axis_table(results: list[ResultsFile]) -> None:
    result = compare(results)
    found = {item.axis: item for item in what_to_pin(result)}
    assert sorted(found) == sorted(result.axes)  # every axis breaks in these files
    for axis, item in found.items():
        assert item.differing == len(result.tables[axis].breaking())
        assert item.compared == len(result.tables[axis].cells)
    assert PLATFORM in found and all(not column.startswith(PLATFORM)
                                     for item in found.values() for option in item.options
                                     for column, _ in option.pins)


def test_no_breaks_nothing_to_pin(tmp_path: Path) -> None:
    write_results(tmp_path)
    files = read_all([str(tmp_path)])
    result = compare(files)
    holding = result.comparable[result.comparable["scenario"] == "seed.rand"]
    result.comparable = holding
    for table in result.tables.values():  # as though only seed.rand had been run
        table.cells = {key: row for key, row in table.cells.items() if key[0] == "seed.rand"}
    assert pin_section(result) == ["## What to pin", "",
                                   "No output breaks along any axis: there is nothing to pin.",
                                   ""]


def test_scalar_kernels_are_labelled_wherever_printed(results: list[ResultsFile]) -> None:
    text = render(results)
    assert re.search(r"\| default \(scalar\), avx2 +\|", text)  # the summary's values
    assert "default (scalar) (reference)" in text.split("## Across cpu_capability")[1]
    assert "cpu_capability=default (scalar)" in text.split("## Nondeterministic run to run")[1]
    assert context_label("2.13.0+cpu", "cpu", [("setting:cpu_capability", "default")]
                         ).endswith("cpu_capability=default (scalar)")
    header = {"env_id": "e1", "environment": {"torch": "2.13.0+cpu",
                                              "cpu_capability": "DEFAULT"}}
    text = "\n".join(environments_section([ResultsFile(Path("x.jsonl"), header)]))
    (row,) = [line for line in text.splitlines() if line.startswith("| e1")]
    assert "| default (scalar) " in row


def test_settable_values() -> None:
    assert settable("setting:threads", "2") and not settable("setting:threads", "default")
    assert settable("setting:cpu_capability", "default")
    assert not settable("setting:cpu_capability", "n/a")
    assert not settable("setting:deterministic", "not recorded")
    assert not settable("setting:no_such_setting", "on")


def test_too_few_compared_is_not_suggested() -> None:
    """A value that removes the break only because most breaking outputs were never
    compared under it (they raise there, say) is listed, never suggested."""
    rows = []
    for index, threads, deterministic in itertools.product(range(10), ("1", "2"),
                                                           ("off", "on")):
        if deterministic == "on" and index > 0:
            continue  # only output 0 exists under deterministic=on, and it holds
        value = f"d{index}-{threads}" if index > 0 or deterministic == "off" else "d0"
        if index == 0:
            value = "d0"
        rows.append({"scenario": f"s.{index}", "output": "o", "digest": value,
                     "setting:threads": threads, "setting:deterministic": deterministic})
    cells = _frame(rows)
    found = axis_pins(Coded(cells), "setting:threads", ["setting:deterministic",
                                                        "setting:threads"], "1")
    assert (found.compared, found.differing) == (10, 9)
    on = next(option for option in found.options
              if option.pins == (("setting:deterministic", "on"),))
    assert (on.compared, on.differing, on.covered) == (1, 0, 0)
    assert found.best() is None
    assert not found.enough(on) and COVERAGE * found.differing > on.covered


def _frame(rows: list[dict[str, str]]) -> pd.DataFrame:
    """Comparable cells as compare() keeps them, from plain dicts."""
    data = pd.DataFrame(rows)
    for column in data.columns:
        data[column] = pd.Categorical(data[column].astype(object))
    for column in ("sample", "stored", "trace_key"):
        data[column] = None
    data["file"] = pd.Categorical(["f"] * len(data))
    return data


def _restricted_by_merges(cells: pd.DataFrame, axis: str, axes: list[str], reference: str,
                          column: str, value: str) -> tuple[int, int]:
    """(outputs compared, outputs that differ) along `axis` where `column` == `value`,
    by compare_pair's merges, against the same reference as the axis table."""
    subset = cells[cells[column] == value]
    context = axis_context(axis, axes)
    compared, differing = set(), set()
    others = [other for other in subset[axis].unique() if other != reference]
    for other in others:
        for key, cell in compare_pair(subset, axis, context, reference, other,
                                      DistanceCache()).items():
            compared.add(key)
            if cell.differing:
                differing.add(key)
    return len(compared), len(differing)


@pytest.mark.parametrize("seed", range(12))
def test_counts_equal_compare_pair_on_restricted_cells(seed: int) -> None:
    """Random grids with missing cells, conflicting digests and a device-specific setting:
    every count is the one compare_pair's merges give on the restricted cells."""
    rng = np.random.default_rng(seed)
    rows = []
    for scenario, output, machine, device, threads, capability in itertools.product(
            ("s.a", "s.b", "s.c"), ("o1", "o2"), ("m1", "m2"), ("cpu", "cuda"),
            ("1", "2", "4"), ("default", "avx2")):
        if rng.random() < 0.25:
            continue  # a cell that is missing (unavailable, nondeterministic, ...)
        capability = capability if device == "cpu" else "n/a"
        for _ in range(2 if rng.random() < 0.05 else 1):  # a conflict: two digests
            rows.append({"scenario": scenario, "output": output, PLATFORM: machine,
                         DEVICE: device, "setting:threads": threads,
                         "setting:cpu_capability": capability,
                         "digest": f"v{rng.integers(0, 2 if rng.random() < 0.3 else 1)}"})
    cells = _frame(rows).drop_duplicates(subset=["scenario", "output", "digest", PLATFORM,
                                                 DEVICE, "setting:threads",
                                                 "setting:cpu_capability"])
    axes = [DEVICE, PLATFORM, "setting:cpu_capability", "setting:threads"]
    coded = Coded(cells)
    for axis in axes:
        table = compare_axis(cells, axis, axes, DistanceCache())
        found = axis_pins(coded, axis, axes, table.reference)
        assert (found.compared, found.differing) == (len(table.cells), len(table.breaking()))
        if axis == DEVICE:  # cpu_capability does not apply on cuda: not a candidate there
            assert found.candidates == ["setting:threads"]
        for option in found.options:
            if len(option.pins) == 1:
                (column, value), = option.pins
                assert value != "n/a" and column.startswith(SETTING_PREFIX)
                assert (option.compared, option.differing) == _restricted_by_merges(
                    cells, axis, axes, table.reference, column, value)
