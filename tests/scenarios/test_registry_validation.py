"""`@scenario` arguments are checked when the scenario registers, not when it runs.

A bad one used to surface late and far away: a timeout of "abc" or a device "tpu" made the
scenario vanish from the run (exit 0), a timeout of -1 or 0 was taken, a min_torch of
"garbage!" was a traceback, and a name registered twice in one file was last-wins. Each is
now one line naming the file, the scenario and the argument, exit 2.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch

# Imported at collection, while sys.stderr is the session's: Progress binds its default
# stream on import, and bound to one test's capsys stream (closed after that test), it
# would fail every later `run` in this process.
import audit.run.progress  # noqa: F401
from audit.cli import main
from audit.errors import UserError
from audit.scenarios import registry
from audit.scenarios.registry import scenario

ROOT = Path(__file__).resolve().parent.parent.parent


# What a test registers, or loads from a file in-process, must not leak into others.
pytestmark = pytest.mark.usefixtures("clean_registry")


def seeded(ctx: Any) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {"x": torch.rand(2)}


# argument -> (its value, what the message says after "scenario 'check.bad': ")
BAD_ARGUMENTS = {
    "timeout abc": ({"timeout": "abc"}, "timeout='abc' must be a positive number of seconds"),
    "timeout -1": ({"timeout": -1}, "timeout=-1 must be a positive number of seconds"),
    "timeout 0": ({"timeout": 0}, "timeout=0 must be a positive number of seconds"),
    "timeout nan": ({"timeout": float("nan")}, "timeout=nan must be a positive number of seconds"),
    "timeout inf": ({"timeout": float("inf")}, "timeout=inf must be a positive number of seconds"),
    "timeout True": ({"timeout": True}, "timeout=True must be a positive number of seconds"),
    "devices tpu": ({"devices": ("tpu",)},
                    "devices=('tpu',): unknown device 'tpu' (known: cpu, cuda, mps, xpu)"),
    "devices one bad of two": ({"devices": ["cpu", "gpu"]},
                               "devices=('cpu', 'gpu'): unknown device 'gpu' "
                               "(known: cpu, cuda, mps, xpu)"),
    "devices a string": ({"devices": "cpu"},
                         "devices='cpu' must be a tuple of strings, such as ('cpu',)"),
    "devices empty": ({"devices": ()}, "devices=() names no device (leave it out for every one)"),
    "min_torch garbage": ({"min_torch": "garbage!"},
                          "min_torch='garbage!' is not a version string such as '2.1'"),
    "min_torch a float": ({"min_torch": 2.1},
                          "min_torch=2.1 is not a version string such as '2.1'"),
    "modules a string": ({"modules": "scipy"},
                         "modules='scipy' must be a tuple of strings, such as ('scipy',)"),
    "modules not strings": ({"modules": (1,)},
                            "modules=(1,) must be a tuple of strings, such as ('scipy',)"),
    "modules not a name": ({"modules": ("no such",)},
                           "modules=('no such',): 'no such' is not a module name"),
    "description not text": ({"description": 3}, "description=3 must be a string"),
    "references not a mapping": ({"references": [1.0]},
                                 "references must be a mapping of output names to values, "
                                 "not list"),
}


@pytest.mark.parametrize("case", sorted(BAD_ARGUMENTS))
def test_a_bad_argument_is_refused_at_registration(case: str) -> None:
    arguments, message = BAD_ARGUMENTS[case]
    with pytest.raises(UserError) as raised:
        scenario("check.bad", **arguments)(seeded)
    assert str(raised.value) == f"scenario 'check.bad': {message}"
    assert "check.bad" not in registry.all_scenarios()


@pytest.mark.parametrize("name", ["", "nodot", "family.", ".name", "family. .name", 3, None])
def test_a_name_must_be_a_dotted_name(name: Any) -> None:
    with pytest.raises(UserError, match="must look like 'family.name'"):
        scenario(name)


def test_good_arguments_are_kept_as_given() -> None:
    scenario("check.good", "described", devices=["cpu", "cuda"], min_torch="1.13.1+cpu",
             modules=["numpy", "numpy.linalg"], timeout=2.5, references={"x": 1.0})(seeded)
    scenario("check.whole", timeout=30)(seeded)
    good, whole = registry.all_scenarios()["check.good"], registry.all_scenarios()["check.whole"]
    assert (good.devices, good.min_torch, good.modules, good.timeout, good.references) == (
        ("cpu", "cuda"), "1.13.1+cpu", ("numpy", "numpy.linalg"), 2.5, {"x": 1.0})
    assert (whole.devices, whole.modules, whole.timeout) == (None, (), 30)


# --- in a scenario file -----------------------------------------------------------------

TWICE_IN_ONE_FILE = textwrap.dedent('''\
    import torch
    from audit import scenario


    @scenario("twice.same")
    def first(ctx):
        return {"x": torch.zeros(1)}


    @scenario("twice.same")
    def second(ctx):
        return {"x": torch.ones(1)}
    ''')


ONCE = TWICE_IN_ONE_FILE.rsplit("\n\n\n", 1)[0]  # its first scenario alone


def test_a_name_twice_in_one_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "twice.py"
    path.write_text(TWICE_IN_ONE_FILE, encoding="utf-8")
    with pytest.raises(UserError) as raised:
        registry.load_file(path)
    assert str(raised.value) == (f"{path}:10: scenario 'twice.same' is defined twice in "
                                 f"{path} (first at line 5)")


def test_a_file_loaded_again_defines_its_scenarios_anew(tmp_path: Path) -> None:
    path = tmp_path / "once.py"
    path.write_text(ONCE.replace("twice.", "once."), encoding="utf-8")
    registry.load_file(path)
    first = registry.all_scenarios()["once.same"].function
    registry.load_file(path)  # the runner and each worker load the same file: not a duplicate
    assert registry.all_scenarios()["once.same"].function is not first


def test_a_name_in_two_files_is_still_refused(tmp_path: Path) -> None:
    one, two = tmp_path / "one.py", tmp_path / "two.py"
    one.write_text(ONCE, encoding="utf-8")
    two.write_text(ONCE, encoding="utf-8")
    registry.load_file(one)
    with pytest.raises(UserError) as raised:
        registry.load_file(two)
    assert str(raised.value) == (f"{two}:5: scenario 'twice.same' is defined twice: in {one} "
                                 f"and in {two}")


# the argument as written in the file -> the message after "scenario 'args.bad': "
FILE_CASES = {
    "timeout abc": ('timeout="abc"', "timeout='abc' must be a positive number of seconds"),
    "timeout -1": ("timeout=-1", "timeout=-1 must be a positive number of seconds"),
    "timeout 0": ("timeout=0", "timeout=0 must be a positive number of seconds"),
    "devices tpu": ('devices=("tpu",)',
                    "devices=('tpu',): unknown device 'tpu' (known: cpu, cuda, mps, xpu)"),
    "min_torch garbage": ('min_torch="garbage!"',
                          "min_torch='garbage!' is not a version string such as '2.1'"),
}


def file_with(argument: str) -> str:
    return textwrap.dedent(f'''\
        import torch
        from audit import scenario


        @scenario("args.good")
        def good(ctx):
            return {{"x": torch.zeros(1)}}


        @scenario("args.bad", {argument})
        def bad(ctx):
            return {{"x": torch.ones(1)}}
        ''')


# `run` starts its workers before it loads the files (they import torch meanwhile): slower
FILE_COMMANDS = [("list", case) for case in sorted(FILE_CASES)] + [("run", "devices tpu")]


@pytest.mark.parametrize(("command", "case"), FILE_COMMANDS)
def test_a_bad_argument_in_a_file_is_one_line_naming_file_scenario_and_argument(
        command: str, case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argument, message = FILE_CASES[case]
    path = tmp_path / "args.py"
    path.write_text(file_with(argument), encoding="utf-8")
    out = tmp_path / "out"
    extra = ["--select", "args.*", "--devices", "cpu", "--out", str(out)] if command == "run" \
        else []
    code = main([command, "--scenarios", str(path), *extra])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.splitlines() == [f"repro-audit: error: {path}:10: scenario 'args.bad': {message}"]
    assert not out.exists()


def test_the_cli_refuses_a_bad_timeout_in_one_line_and_runs_nothing(tmp_path: Path) -> None:
    path = tmp_path / "args.py"
    path.write_text(file_with('timeout="abc"'), encoding="utf-8")
    out = tmp_path / "out"
    completed = subprocess.run(
        [sys.executable, "-m", "audit", "run", "--scenarios", str(path), "--select", "args.*",
         "--devices", "cpu", "--settings", "threads=1", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert completed.returncode == 2, completed.stderr
    assert completed.stderr.splitlines() == [
        f"repro-audit: error: {path}:10: scenario 'args.bad': timeout='abc' must be a positive "
        "number of seconds"]
    assert not out.exists()


def test_the_cli_refuses_a_name_twice_in_one_file(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "twice.py"
    path.write_text(TWICE_IN_ONE_FILE, encoding="utf-8")
    code = main(["list", "--scenarios", str(path)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.splitlines() == [f"repro-audit: error: {path}:10: scenario 'twice.same' is "
                                f"defined twice in {path} (first at line 5)"]
