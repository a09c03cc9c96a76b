"""The pytest plugin, run the way a user runs it: pytest sessions of their own (pytester).

Each test writes a small test file, runs pytest on it with the plugin's options, and reads
what came out: the exit code, the failure text, the baseline and results files; and, for
agreement, what `repro-audit baseline check`, `report` and `diff` make of the same files.
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

# torch, numpy and audit.environment.native are imported here, once: pytester's in-process runs drop
# the modules first imported inside them, torch imported a second time crashes the
# interpreter, and audit.environment.native probes MKL and oneDNN once per process (as a
# session does).
import numpy  # noqa: F401
import pytest
import torch  # noqa: F401

import audit.environment.native  # noqa: F401
from audit.cli import main
from audit.judge.baseline import cell_label, settings_key
from audit.store.results import read_all
from tests.support import ROOT

pytest_plugins = ["pytester"]

VALUES = '''
import os

import numpy as np
import pytest
import torch


def test_seeded(repro):
    torch.manual_seed(0)
    layer = torch.nn.Linear(4, 3)
    x = torch.tensor([1.0, 2.0, 3.0])
    shift = int(os.environ.get("REPRO_TEST_SHIFT", "0"))  # ULPs added to the last element
    x.view(torch.int32)[2] += shift
    repro.check({"model": layer.state_dict(), "x": x})


@pytest.mark.parametrize("p", [0.25, 0.5])
def test_dropout(repro, p):
    torch.manual_seed(1)
    repro.check({"mask": torch.nn.functional.dropout(torch.ones(8, 8), p) != 0})
    repro.check({"draws": np.random.RandomState(0).rand(4)}, name="numpy")


def test_plain():
    assert True
'''


def plugin_options() -> list[str]:
    """`-p audit.integrations.pytest_plugin.plugin` where the entry point is not installed (a
    source checkout
    whose installed metadata predates it); pytest loads it by itself otherwise."""
    found = entry_points()
    group = found.select(group="pytest11") if hasattr(found, "select") else found.get(
        "pytest11", [])
    return [] if any(item.name == "repro_audit" for item in group) else [
        "-p", "audit.integrations.pytest_plugin.plugin"]


@pytest.fixture
def session(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch):
    """Run pytest on the files of `pytester` with the plugin: `session(*options)`."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # xdist workers import this tree
    monkeypatch.delenv("REPRO_TEST_SHIFT", raising=False)

    def run(*options: str) -> pytest.RunResult:
        # hypothesis' plugin would import hypothesis anew in every session, slowly
        return pytester.runpytest("-p", "no:cacheprovider", "-p", "no:hypothesispytest",
                                  *plugin_options(), *options)

    return run


def only_file(folder: Path) -> Path:
    files = sorted(folder.iterdir())
    assert len(files) == 1, files
    return files[0]


def rows_of(folder: Path) -> list[dict[str, Any]]:
    return [row for item in read_all([str(folder)]) for row in item.rows]


def test_save_then_check_on_the_same_machine_passes(pytester, session) -> None:
    pytester.makepyfile(test_values=VALUES)
    saved = session("--repro-save", "b", "--repro-results", "r")
    saved.assert_outcomes(passed=4)
    baseline = json.loads(only_file(pytester.path / "b").read_text("utf-8"))
    names = sorted((item["scenario"], item["output"]) for item in baseline["outputs"])
    assert names == [
        ("test_values:test_dropout[0.25]", "mask"), ("test_values:test_dropout[0.25]",
                                                      "numpy.draws"),
        ("test_values:test_dropout[0.5]", "mask"), ("test_values:test_dropout[0.5]",
                                                     "numpy.draws"),
        ("test_values:test_seeded", "model.bias"), ("test_values:test_seeded", "model.weight"),
        ("test_values:test_seeded", "x")]
    assert "repro-audit: saved 7 outputs to b" in saved.stdout.lines
    checked = session("--repro-check", "b")
    checked.assert_outcomes(passed=4)
    assert checked.ret == 0
    assert "baseline check: 7 matched, 0 differ, 0 without baseline" in checked.stdout.lines


def test_a_changed_seeded_value_fails_with_the_distance_message(pytester, session,
                                                                 monkeypatch) -> None:
    pytester.makepyfile(test_values=VALUES)
    session("--repro-save", "b").assert_outcomes(passed=4)
    monkeypatch.setenv("REPRO_TEST_SHIFT", "1")
    failed = session("--repro-check", "b", "--repro-results", "r")
    failed.assert_outcomes(passed=3, failed=1)
    assert failed.ret == 1  # like any failing test
    (results,) = read_all([str(pytester.path / "r")])
    row = next(row for row in results.rows if row["output"] == "x")
    env_id = results.header["env_id"]
    label = cell_label("test_values:test_seeded", "x", "cpu", settings_key(row["settings"]))
    expected = [  # one header per (baseline env -> this env) pair, then one line per output
        f"repro-audit: 1 output differs from the baseline in b/{env_id}.json",
        f"baseline env {env_id} → env {env_id}: same environment and settings",
        f"DIFFERS {label} env {env_id}: max abs 2.4e-07, max 1 ULP, 1 of 3 elements",
        "(reviewed and intended? pytest --repro-save DIR --repro-update rewrites the baseline)"
        if not sys.flags.hash_randomization else  # this process' seed, in effect in pytester's
        "(this process ran with a random hash seed: a value that depends on hash() of a str or "
        "bytes changes from run to run, which may be the cause; fix the seed with "
        "PYTHONHASHSEED=0 pytest ... and save the baseline under it, rather than --repro-update)",
    ]
    lines = failed.stdout.lines
    start = lines.index(expected[0])
    assert lines[start:start + len(expected)] == expected
    assert "baseline check: 6 matched, 1 differs, 0 without baseline" in lines


def test_the_plugin_and_baseline_check_agree_both_ways(pytester, session, monkeypatch,
                                                       capsys) -> None:
    pytester.makepyfile(test_values=VALUES)
    path = pytester.path
    session("--repro-save", "b", "--repro-results", "r").assert_outcomes(passed=4)
    # the plugin's baseline is what `baseline save` makes of the plugin's results, byte for byte
    assert main(["baseline", "save", str(path / "r"), "--to", str(path / "cli")]) == 0
    assert only_file(path / "cli").read_bytes() == only_file(path / "b").read_bytes()
    # a check that passes: the CLI on the plugin's baseline, the plugin on the CLI's
    assert main(["baseline", "check", str(path / "r"), "--against", str(path / "b")]) == 0
    session("--repro-check", "cli").assert_outcomes(passed=4)
    # a check that fails: both, on the same output, with the same line
    monkeypatch.setenv("REPRO_TEST_SHIFT", "3")
    failed = session("--repro-check", "cli", "--repro-results", "r2")
    failed.assert_outcomes(passed=3, failed=1)
    capsys.readouterr()
    assert main(["baseline", "check", str(path / "r2"), "--against", str(path / "b")]) == 1
    cli_lines = capsys.readouterr().out.splitlines()
    differs = [line for line in cli_lines if line.startswith("DIFFERS")]
    assert len(differs) == 1 and "test_values:test_seeded/x [" in differs[0]
    assert "max 3 ULP, 1 of 3 elements" in differs[0]
    assert differs[0] in failed.stdout.lines  # the plugin's failure names the same line


def test_outputs_and_environments_without_baseline_are_reported_not_failed(
        pytester, session) -> None:
    pytester.makepyfile(test_values=VALUES)
    session("--repro-save", "b").assert_outcomes(passed=4)
    pytester.makepyfile(test_new='''
import torch

def test_new(repro):
    torch.manual_seed(5)
    repro.check({"y": torch.rand(3)})
''')
    checked = session("--repro-check", "b", "--repro-results", "r")
    checked.assert_outcomes(passed=5)
    assert checked.ret == 0
    lines = checked.stdout.lines
    assert any(line.startswith("NO BASELINE test_new:test_new/y [cpu ") for line in lines)
    assert "baseline check: 7 matched, 0 differ, 1 without baseline" in lines
    # another environment's baselines only: every output is new, none fails
    baseline = only_file(pytester.path / "b")
    other = json.loads(baseline.read_text("utf-8"))
    other["env_id"] = "0000000000000000"
    (pytester.path / "b" / "0000000000000000.json").write_text(json.dumps(other), "utf-8")
    baseline.unlink()
    elsewhere = session("--repro-check", "b")  # checked against the other machine's
    elsewhere.assert_outcomes(passed=5)
    assert any(line.startswith("NO BASELINE env ") and line.endswith("): 1 output")
               for line in elsewhere.stdout.lines)
    assert any(line.startswith("baseline check: 7 matched (7 against another environment or "
                               "settings), 0 differ, 1 without baseline")
               for line in elsewhere.stdout.lines)


def test_an_existing_baseline_is_rewritten_only_with_update(pytester, session,
                                                            monkeypatch) -> None:
    pytester.makepyfile(test_values=VALUES)
    session("--repro-save", "b").assert_outcomes(passed=4)
    before = only_file(pytester.path / "b").read_bytes()
    monkeypatch.setenv("REPRO_TEST_SHIFT", "1")
    refused = session("--repro-save", "b")
    assert refused.ret == pytest.ExitCode.USAGE_ERROR  # before any test runs
    refused.stderr.fnmatch_lines(["*a baseline for this environment already exists "
                                  "(--update rewrites after review)*"])
    assert only_file(pytester.path / "b").read_bytes() == before
    session("--repro-save", "b", "--repro-update").assert_outcomes(passed=4)
    assert only_file(pytester.path / "b").read_bytes() != before
    session("--repro-check", "b").assert_outcomes(passed=4)


@pytest.mark.parametrize(("options", "message"), [
    (["--repro-save", "b", "--repro-check", "b"], "*--repro-save and --repro-check: give one*"),
    (["--repro-update"], "*--repro-update rewrites baselines that --repro-save writes*"),
    (["--repro-check", "missing"], "*repro-audit: missing: no such baseline folder*"),
])
def test_unusable_options_are_one_line_usage_errors(pytester, session, options: list[str],
                                                    message: str) -> None:
    pytester.makepyfile(test_values=VALUES)
    result = session(*options)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


UNSEEDED = '''
import pytest
import torch


@pytest.mark.repro
def test_unseeded(repro):
    repro.check({"noise": torch.rand(16)})


@pytest.mark.repro
def test_seeded(repro):
    torch.manual_seed(3)
    repro.check({"noise": torch.rand(16)})


def test_unseeded_once(repro):
    repro.check({"noise": torch.rand(16)})
'''


def test_the_marker_catches_a_test_that_forgot_to_seed(pytester, session) -> None:
    pytester.makepyfile(test_rng=UNSEEDED)
    result = session("--repro-results", "r")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines([
        "repro-audit: 1 output of test_rng.py::test_unseeded not repeatable: two runs of the "
        "test, every RNG (torch, CUDA, numpy, random) scrambled before each, gave other values",
        "NOT REPEATABLE test_rng:test_unseeded/noise: max abs *, * of 16 elements",
        "seed every RNG the test draws from inside the test body: a seed set by a fixture is "
        "set once, before both runs",
    ])
    repeatable = {row["scenario"]: row["repeatable"] for row in rows_of(pytester.path / "r")}
    assert repeatable == {"test_rng:test_unseeded": False, "test_rng:test_seeded": True,
                          "test_rng:test_unseeded_once": None}  # once: not known either way
    # --repro-twice repeats every test using the fixture, marked or not
    everywhere = session("--repro-twice")
    everywhere.assert_outcomes(passed=1, failed=2)
    everywhere.stdout.fnmatch_lines(["NOT REPEATABLE test_rng:test_unseeded_once/noise: *"])


def test_the_marker_without_the_fixture_says_what_is_missing(pytester, session) -> None:
    pytester.makepyfile(test_marked='''
import pytest

@pytest.mark.repro
def test_marked():
    pass
''')
    result = session()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*test_marked.py::test_marked: @pytest.mark.repro repeats "
                                 "what the test hands to repro.check: the test needs the "
                                 "repro fixture*"])


def test_check_takes_values_as_they_are_when_handed_over(pytester, session) -> None:
    pytester.makepyfile(test_api='''
import numpy as np
import torch


def test_api(repro):
    x = torch.zeros(3)
    digests = repro.check({"x": x})
    x += 1  # changed afterwards, in place: the check already took its value
    again = repro.check({"x": torch.zeros(3)}, name="again")
    assert digests["x"] == again["again.x"]
    assert repro.check({"n": np.zeros(3, dtype=np.float32)})["n"] == digests["x"]


def test_same_name_twice(repro):
    repro.check({"x": torch.zeros(1)})
    repro.check({"x": torch.ones(1)})


def test_not_a_tensor(repro):
    repro.check({"loss": "0.5"})


def test_scalars_are_0d_tensors(repro):
    digests = repro.check({"loss": 0.5, "steps": [3, True]})
    assert digests["loss"] == repro.check(torch.tensor(0.5), name="same")["same"]
    assert digests["steps.0"] == repro.check({"n": torch.tensor(3)})["n"]
    repro.check(0.25, name="bare")


def test_a_bare_scalar_needs_a_name(repro):
    repro.check(0.5)
''')
    result = session("--repro-results", "r")
    result.assert_outcomes(passed=2, failed=3)
    result.stdout.fnmatch_lines([
        "*repro.check: a float needs a name: repro.check(value, name='loss')*"])
    result.stdout.fnmatch_lines([
        "*repro.check: output 'x' was already checked in this test (give each call its "
        "own name=)*"])
    result.stdout.fnmatch_lines([
        "*repro.check: scenario 'test_api:test_not_a_tensor': output 'loss' is a str, "
        "not a tensor*"])
    rows = {(row["scenario"], row["output"]): row for row in rows_of(pytester.path / "r")}
    assert rows[("test_api:test_scalars_are_0d_tensors", "loss")]["dtype"] == "float32"
    assert rows[("test_api:test_scalars_are_0d_tensors", "steps.1")]["dtype"] == "bool"
    assert rows[("test_api:test_same_name_twice", None)]["status"] == "error"
    assert rows[("test_api:test_api", "x")]["digest"] == rows[("test_api:test_api",
                                                               "again.x")]["digest"]


def test_failed_and_skipped_tests_become_error_and_unavailable_rows(pytester, session
                                                                    ) -> None:
    pytester.makepyfile(test_outcomes='''
import pytest
import torch


def test_fails_after_check(repro):
    repro.check({"x": torch.zeros(2)})
    assert False, "not what was expected"


def test_skips(repro):
    pytest.skip("needs a GPU")
''')
    result = session("--repro-save", "b", "--repro-results", "r")
    result.assert_outcomes(failed=1, skipped=1)
    rows = {row["scenario"]: row for row in rows_of(pytester.path / "r")}
    failed, skipped = rows["test_outcomes:test_fails_after_check"], rows[
        "test_outcomes:test_skips"]
    assert (failed["status"], failed["output"]) == ("error", None)
    assert failed["error"].startswith("AssertionError: not what was expected")
    assert (skipped["status"], skipped["error"]) == ("unavailable", "skipped: needs a GPU")
    assert not (pytester.path / "b").exists()  # nothing passed: nothing to save
    assert any(line.startswith("repro-audit: nothing saved to b") for line in
               result.stdout.lines)


def test_results_files_merge_in_report_and_diff(pytester, session, monkeypatch,
                                                capsys) -> None:
    pytester.makepyfile(test_values=VALUES, test_rng=UNSEEDED)
    session("--repro-results", "r1")
    monkeypatch.setenv("REPRO_TEST_SHIFT", "2")
    session("--repro-results", "r2")
    # r2 as if from another torch version (another venv, another CI job)
    (first,) = read_all([str(pytester.path / "r1")])
    env_id, version = first.header["env_id"], first.header["environment"]["torch"]
    (pytester.path / "r3").mkdir()
    (pytester.path / "r3" / "other.jsonl").write_text(
        only_file(pytester.path / "r2").read_text("utf-8").replace(env_id, "f" * 16)
        .replace(f'"{version}"', '"2.99.0"'), "utf-8")
    out = pytester.path / "report"
    assert main(["report", str(pytester.path / "r1"), str(pytester.path / "r3"),
                 "--out", str(out)]) == 0
    text = (out / "README.md").read_text("utf-8")
    assert "Built from 2 results files: other.jsonl, pytest-torch-" in text
    assert "10 outputs of 6 scenarios produced values" in text
    # values run once are compared along the torch axis; the unseeded one is set apart
    across = text.split("## Across torch version")[1].split("\n## ")[0]
    assert any(line.startswith("| test_values:test_seeded | x ") and line.endswith(
        "| **differs**: max abs 4.8e-07, max 2 ULP, 1 of 3 elements |")
        for line in across.splitlines())
    assert "test_rng:test_unseeded" in text.split("## Nondeterministic run to run")[1]
    capsys.readouterr()
    assert main(["diff", str(pytester.path / "r1"), str(pytester.path / "r2")]) == 1
    printed = capsys.readouterr().out
    assert "test_values:test_seeded/x" in printed and "max 2 ULP" in printed


def test_under_xdist_every_worker_writes_its_file_and_no_row_is_lost(pytester, session
                                                                     ) -> None:
    pytest.importorskip("xdist")
    body = "\n".join(f'''
def test_{number}(repro):
    torch.manual_seed({number})
    repro.check({{"v": torch.rand(4)}})
''' for number in range(8))
    pytester.makepyfile(test_many="import torch\n" + body)
    alone = session("--repro-save", "b1", "--repro-results", "r1")
    alone.assert_outcomes(passed=8)
    spread = session("-n", "2", "--repro-save", "b2", "--repro-results", "r2")
    spread.assert_outcomes(passed=8)
    names = sorted(path.name for path in (pytester.path / "r2").iterdir())
    assert [name.rsplit("-", 1)[1] for name in names] == ["gw0.jsonl", "gw1.jsonl"]
    key = sorted((row["scenario"], row["output"], row["digest"]) for row in
                 rows_of(pytester.path / "r2"))
    assert key == sorted((row["scenario"], row["output"], row["digest"]) for row in
                         rows_of(pytester.path / "r1"))
    assert len(key) == 8
    # one baseline, written once by the controller: the same bytes as without xdist
    assert only_file(pytester.path / "b2").read_bytes() == only_file(
        pytester.path / "b1").read_bytes()
    checked = session("-n", "2", "--repro-check", "b1", "--repro-results", "r2")
    checked.assert_outcomes(passed=8)
    assert "baseline check: 8 matched, 0 differ, 0 without baseline" in checked.stdout.lines
    # a later run with fewer workers replaces the earlier run's files, leaving none behind
    session("--repro-results", "r2").assert_outcomes(passed=8)
    assert len(rows_of(pytester.path / "r2")) == 8
    assert [path.name.endswith("-gw0.jsonl") for path in (pytester.path / "r2").iterdir()] \
        == [False]


def test_tests_that_do_not_use_the_fixture_are_left_alone(pytester, session) -> None:
    pytester.makepyfile(test_plain='''
import random

def test_plain():
    random.seed(1)
    assert random.random() == 0.13436424411240122
''')
    result = session("--repro-results", "r", "--repro-twice")
    result.assert_outcomes(passed=1)
    assert not (pytester.path / "r").exists()
    assert not any(line.startswith("repro-audit") or "= repro-audit =" in line
                   for line in result.stdout.lines)


def test_the_marker_names_a_test_and_may_run_it_once(pytester, session) -> None:
    pytester.makepyfile(test_named='''
import pytest
import torch


@pytest.mark.repro(name="mine.step", runs=1)
@pytest.mark.parametrize("size", [2, 3])
def test_step(repro, size):
    repro.check({"v": torch.rand(size)})  # unseeded, but run once: not checked


@pytest.mark.repro(name="mine.step")
def test_unparametrized(repro):
    torch.manual_seed(0)
    repro.check({"v": torch.rand(1)})


@pytest.mark.repro(name="mine.step")
def test_same_name(repro):
    torch.manual_seed(0)
    repro.check({"v": torch.rand(1)})
''')
    result = session("--repro-results", "r")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["test_named.py::test_same_name: scenario name 'mine.step' is "
                                 "already the name of test_named.py::test_unparametrized; give "
                                 "@pytest.mark.repro(name=...) another name"])
    rows = sorted((row["scenario"], row["repeatable"]) for row in rows_of(pytester.path / "r"))
    assert rows == [("mine.step", True), ("mine.step[2]", None), ("mine.step[3]", None)]


HASHED = """
import torch


def test_hashed(repro):
    repro.check({"h": torch.tensor([hash("abc")])})
"""


@pytest.mark.parametrize("seed", ["random", "0"])
def test_a_random_hash_seed_is_named_as_the_cause(pytester, monkeypatch, seed) -> None:
    pytester.makepyfile(test_hashed=HASHED)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv("PYTHONHASHSEED", seed)
    options = ["-p", "no:cacheprovider", "-p", "no:hypothesispytest", *plugin_options()]
    pytester.runpytest_subprocess(*options, "--repro-save", "b").assert_outcomes(passed=1)
    (baseline,) = (pytester.path / "b").iterdir()
    assert '"python_hash_seed": "' + seed + '"' in baseline.read_text("utf-8")
    checked = pytester.runpytest_subprocess(*options, "--repro-check", "b")
    if seed == "0":
        checked.assert_outcomes(passed=1)
        return
    checked.assert_outcomes(failed=1)
    checked.stdout.fnmatch_lines(["*this process ran with a random hash seed*may be the "
                                  "cause; fix the seed with PYTHONHASHSEED=0 pytest ...*"])
    assert "--repro-update rewrites" not in checked.stdout.str()
