"""Output names after flattening: two keys that make one name, and empty names, are refused.

A collision used to keep one of the two tensors under the shared name and drop the other
without a word; an empty key made an empty name, or one that lost its place. Each is now
an error that names the keys, an `error` row in a run and a one-line failure in pytest.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

# torch, numpy and audit.environment.native are imported once here: pytester's in-process runs
# drop the modules first imported inside them, and torch imported a second time crashes.
import numpy as np
import pytest
import torch

import audit.environment.native  # noqa: F401
from audit.capture.outputs import flatten_outputs
from audit.errors import UserError

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent.parent
ZEROS, ONES = torch.zeros(1), torch.ones(1)


def refusal(returned: Any) -> str:
    with pytest.raises(UserError) as raised:
        flatten_outputs("s", returned)
    return str(raised.value)


COLLISIONS = {
    "dotted key and nested mapping": (
        {"a.b": ZEROS, "a": {"b": ONES}},
        "scenario 's': output name 'a.b' comes from both 'a.b' and 'a' → 'b'"),
    "nested mapping first": (
        {"a": {"b": ONES}, "a.b": ZEROS},
        "scenario 's': output name 'a.b' comes from both 'a' → 'b' and 'a.b'"),
    "list position and dotted key": (
        {"x": [ZEROS, ONES], "x.0": torch.full((1,), 2.0)},
        "scenario 's': output name 'x.0' comes from both 'x' → 0 and 'x.0'"),
    "int key and str key": (
        {0: ZEROS, "0": ONES},
        "scenario 's': output name '0' comes from both 0 and '0'"),
    "numpy array and tensor": (
        {"n": {"v": np.zeros(2, dtype=np.float32)}, "n.v": torch.zeros(2)},
        "scenario 's': output name 'n.v' comes from both 'n' → 'v' and 'n.v'"),
    "state_dict and a dotted key": (
        {"layer": torch.nn.Linear(2, 1).state_dict(), "layer.bias": ZEROS},
        "scenario 's': output name 'layer.bias' comes from both 'layer' → 'bias' and "
        "'layer.bias'"),
}


@pytest.mark.parametrize("case", sorted(COLLISIONS))
def test_two_keys_that_make_one_name_are_refused_naming_both(case: str) -> None:
    returned, message = COLLISIONS[case]
    assert refusal(returned) == message


EMPTY = {
    "empty top-level key": ({"": ZEROS, "x": ONES},
                            "scenario 's': an output name is empty (key '')"),
    "empty key above a name": ({"": {"b": ZEROS}},  # the name would be plain 'b'
                               "scenario 's': an output name is empty (key '')"),
    "empty nested key": ({"a": {"": ZEROS}},
                         "scenario 's': output 'a' holds an empty key (''); every part of "
                         "an output name must be non-empty"),
    "empty key deep down": ({"a": [{"k": {"": ONES}}]},
                            "scenario 's': output 'a' → 0 → 'k' holds an empty key (''); "
                            "every part of an output name must be non-empty"),
}


@pytest.mark.parametrize("case", sorted(EMPTY))
def test_empty_names_are_refused(case: str) -> None:
    returned, message = EMPTY[case]
    assert refusal(returned) == message


def test_names_and_order_without_collisions_are_as_before() -> None:
    layer = torch.nn.Linear(2, 1)
    flat = flatten_outputs("s", {
        "z": [ZEROS, {"k": ONES, "j": (ZEROS,)}],
        "a.c": np.arange(3, dtype=np.int64),
        "model": layer.state_dict(),
        7: ONES,
        "trailing.": ZEROS,  # a dot inside a key is the key's own: kept as written
    })
    assert list(flat) == ["7", "a.c", "model.bias", "model.weight", "trailing.", "z.0",
                          "z.1.j.0", "z.1.k"]
    assert torch.equal(flat["model.weight"], layer.weight)
    assert flat["a.c"].tolist() == [0, 1, 2]


# --- a run and a pytest session ----------------------------------------------------------

COLLIDING = textwrap.dedent('''
    import torch
    from audit import scenario

    @scenario("names.collide")
    def collide(ctx):
        return {"a.b": torch.zeros(1), "a": {"b": torch.ones(1)}}

    @scenario("names.listed")
    def listed(ctx):
        return {"x": [torch.zeros(1), torch.ones(1)], "x.0": torch.zeros(2)}

    @scenario("names.empty")
    def empty(ctx):
        return {"": torch.zeros(1)}

    @scenario("names.fine")
    def fine(ctx):
        torch.manual_seed(0)
        return {"a": {"b": torch.rand(2)}, "c": [torch.rand(1)]}
''')

# scenario -> what the error of its one row says after the scenario's name
EXPECTED_ROWS = {
    "names.collide": "output name 'a.b' comes from both 'a.b' and 'a' → 'b'",
    "names.listed": "output name 'x.0' comes from both 'x' → 0 and 'x.0'",
    "names.empty": "an output name is empty (key '')",
}


def test_a_run_files_a_collision_as_an_error_row_naming_both_keys(tmp_path: Path) -> None:
    scenarios = tmp_path / "colliding.py"
    scenarios.write_text(COLLIDING, encoding="utf-8")
    out = tmp_path / "results"
    completed = subprocess.run(
        [sys.executable, "-m", "audit", "run", "--scenarios", str(scenarios), "--select",
         "names.*", "--devices", "cpu", "--settings", "threads=1", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert completed.returncode == 0, completed.stderr
    assert "Traceback" not in completed.stderr
    assert "3 error, 2 ok" in completed.stdout
    (results,) = out.glob("*.jsonl")
    rows = [json.loads(line) for line in results.read_text(encoding="utf-8").splitlines()[1:]]
    by_scenario: dict[str, list[dict]] = {}
    for row in rows:
        by_scenario.setdefault(row["scenario"], []).append(row)
    assert [(row["output"], row["status"]) for row in by_scenario.pop("names.fine")] == [
        ("a.b", "ok"), ("c.0", "ok")]
    assert set(by_scenario) == set(EXPECTED_ROWS)
    for name, message in EXPECTED_ROWS.items():
        (row,) = by_scenario[name]  # one row: no output of the unit is kept
        assert (row["status"], row["output"], row["digest"]) == ("error", None, None)
        assert row["error"] == f"UserError: scenario {name!r}: {message}"


def plugin_options() -> list[str]:
    """`-p` with the plugin's module where its entry point is not installed."""
    found = entry_points()
    group = found.select(group="pytest11") if hasattr(found, "select") else found.get(
        "pytest11", [])
    return [] if any(item.name == "repro_audit" for item in group) else [
        "-p", "audit.integrations.pytest_plugin.plugin"]


def test_repro_check_fails_a_collision_in_one_line(pytester: pytest.Pytester,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    pytester.makepyfile(test_names='''
import torch


def test_collide(repro):
    repro.check({"a.b": torch.zeros(1), "a": {"b": torch.ones(1)}})


def test_empty_name(repro):
    repro.check({"": torch.zeros(1)})


def test_collide_under_a_name(repro):
    repro.check({"x": [torch.zeros(1)], "x.0": torch.ones(1)}, name="run")
''')
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:hypothesispytest",
                                *plugin_options())
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines([
        "*repro.check: scenario 'test_names:test_collide': output name 'a.b' comes from both "
        "'a.b' and 'a' → 'b'"])
    result.stdout.fnmatch_lines([
        "*repro.check: scenario 'test_names:test_empty_name': an output name is empty "
        "(key '')"])
    result.stdout.fnmatch_lines([
        "*repro.check: scenario 'test_names:test_collide_under_a_name': output name "
        "'run.x.0' comes from both 'run' → 'x' → 0 and 'run' → 'x.0'"])
    text = result.stdout.str()
    assert "Traceback" not in text and "outputs.py" not in text
