"""diff: two results sets compared cell by cell, the environment left out of the match."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import torch

from audit.judge.diff import diff, format_diff
from audit.store.results import make_row
from tests.judge import support
from tests.judge.support import results, shifted

SETTINGS = {"threads": "1"}
value_row = functools.partial(support.value_row, settings=SETTINGS)


def base() -> torch.Tensor:
    return torch.linspace(0.5, 4.0, 16, dtype=torch.float32)


def rows(env_id: str, changed: torch.Tensor | None = None) -> list[dict[str, Any]]:
    return [
        value_row("rng.rand", "x", base() if changed is None else changed, env_id),
        value_row("rng.rand", "y", torch.arange(4, dtype=torch.int64), env_id),
        value_row("init.linear", "weight", torch.ones(2, 3), env_id),
    ]


def test_one_differing_output_is_reported_with_its_distance(tmp_path: Path) -> None:
    a_rows = rows("aaaa") + [value_row("only.a", "z", torch.zeros(2), "aaaa")]
    b_rows = rows("bbbb", changed=shifted(base(), [5], 2)) + [
        value_row("only.b", "z", torch.zeros(2), "bbbb"),
        value_row("only.b", "w", torch.zeros(2), "bbbb")]
    a = results(tmp_path / "a", "aaaa", a_rows)
    b = results(tmp_path / "b", "bbbb", b_rows)
    result = diff([a], [b])
    assert result.exit_code == 1
    [difference] = result.differences
    assert (difference.cell.scenario, difference.cell.output) == ("rng.rand", "x")
    assert difference.distance is not None and difference.distance.max_ulp == 2
    assert (result.identical, result.only_a, result.only_b) == (2, 1, 2)
    lines = format_diff(result)
    assert lines[0].startswith("DIFFERS rng.rand/x [cpu threads=1] env aaaa vs bbbb: max abs ")
    assert lines[0].endswith("max 2 ULP, 1 of 16 elements")
    assert lines[1:] == [
        "diff: 2 identical, 1 differs, 0 not compared, 1 only in A, 2 only in B"]


def test_the_same_results_on_both_sides_do_not_differ(tmp_path: Path) -> None:
    a = results(tmp_path / "a", "aaaa", rows("aaaa"))
    b = results(tmp_path / "b", "bbbb", rows("bbbb"), torch_version="2.14.1")
    result = diff([a], [b])  # one environment each: paired whatever their versions
    assert (result.exit_code, result.identical, result.pairs) == (0, 3, [("aaaa", "bbbb")])
    assert format_diff(result) == [
        "diff: 3 identical, 0 differ, 0 not compared, 0 only in A, 0 only in B"]


def test_cells_not_ok_and_repeatable_on_both_sides_are_not_compared(tmp_path: Path) -> None:
    weight, total = torch.ones(2, 3), torch.tensor([6.0])
    a_rows = rows("aaaa") + [value_row("ops.sum", "s", total, "aaaa", repeatable=False)]
    b_rows = [value_row("init.linear", "weight", weight, "bbbb"),
              value_row("ops.sum", "s", shifted(total, [0], 1), "bbbb"),
              make_row(scenario="rng.rand", output=None, status="error", device="cpu",
                       torch_version="2.13.0+cpu", settings=dict(SETTINGS), env_id="bbbb",
                       error="boom")]
    result = diff([results(tmp_path / "a", "aaaa", a_rows)],
                  [results(tmp_path / "b", "bbbb", b_rows)])
    # rng.rand failed as a whole on B: its x and y of A are not compared, not "only in A";
    # ops.sum/s differs, but A's value did not repeat run to run: not compared either
    assert (result.exit_code, result.identical, result.not_compared) == (0, 1, 3)
    assert (result.only_a, result.only_b) == (0, 0)


def test_several_environments_pair_by_torch_version(tmp_path: Path) -> None:
    a = [results(tmp_path / "a", "a213", rows("a213")),
         results(tmp_path / "a", "a214", rows("a214"), torch_version="2.14.1"),
         results(tmp_path / "a", "a212", rows("a212"), torch_version="2.12.0")]
    b = [results(tmp_path / "b", "b213", rows("b213", changed=shifted(base(), [3], 1))),
         results(tmp_path / "b", "b214", rows("b214"), torch_version="2.14.1")]
    result = diff([str(tmp_path / "a")], b)
    assert result.pairs == [("a213", "b213"), ("a214", "b214")]
    assert [(d.env_a, d.env_b) for d in result.differences] == [("a213", "b213")]
    assert (result.identical, result.only_a, result.only_b) == (5, 3, 0)
    assert format_diff(result)[1:] == [
        "UNPAIRED env a212 (torch 2.12.0) only in A: "
        "no environment with this torch version on the other side",
        "diff: 5 identical, 1 differs, 0 not compared, 3 only in A, 0 only in B, "
        "2 environment pairs"]
    assert a  # the folder form and the file-list form both name results


def test_two_runs_that_differ_only_in_threads_are_compared_across_them(tmp_path: Path) -> None:
    """Two pytest runs under threads 2 and 1 share no cell exactly: each output is compared
    with the other side's under the fewest differing settings, naming them."""
    two = functools.partial(support.value_row, settings={"threads": "2"})
    a = results(tmp_path / "a", "aaaa", [two("rng.rand", "x", base(), "aaaa"),
                                         two("rng.rand", "y", torch.arange(4), "aaaa")])
    b = results(tmp_path / "b", "bbbb", [
        value_row("rng.rand", "x", shifted(base(), [3], 1), "bbbb"),
        value_row("rng.rand", "y", torch.arange(4), "bbbb")])
    result = diff([a], [b])
    assert result.exit_code == 1
    lines = format_diff(result)
    assert lines[0] == "env aaaa → env bbbb: threads 2 → 1"
    assert lines[1].startswith("DIFFERS rng.rand/x [cpu threads=1] env aaaa vs bbbb: max abs ")
    assert lines[-1] == "diff: 1 identical, 1 differs, 0 not compared, 0 only in A, 0 only in B"
