"""The pytest plugin as a gate across environments: baselines saved under one setting and
checked under another (threads 2 → 1, set in the inner session's conftest), the axes it may
cross, and outputs that have no baseline anywhere (pytester sessions of their own).
"""

from __future__ import annotations

import pytest
import torch

from tests.e2e.test_pytest_plugin import session  # noqa: F401 - the fixture

pytest_plugins = ["pytester"]

CONFTEST = '''
import os

import torch

torch.set_num_threads(int(os.environ.get("REPRO_TEST_THREADS", "1")))
'''

# A sum reduced in one chunk per thread, as a parallel reduction splits it: its last bits
# depend on the thread count.
VALUES = '''
import torch


def test_reduced(repro):
    torch.manual_seed(0)
    x = torch.rand(10_000)
    chunks = x.chunk(torch.get_num_threads())
    repro.check({"sum": torch.stack([chunk.sum() for chunk in chunks]).sum(),
                 "x": x[:8]})
'''


@pytest.fixture
def threads_restored():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def saved_with_two_threads(pytester, session, monkeypatch) -> None:  # noqa: F811
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_values=VALUES)
    monkeypatch.setenv("REPRO_TEST_THREADS", "2")
    session("--repro-save", "b").assert_outcomes(passed=1)
    monkeypatch.setenv("REPRO_TEST_THREADS", "1")


def test_other_threads_fail_naming_the_axis_and_the_distance(
        pytester, session, monkeypatch, threads_restored) -> None:  # noqa: F811
    saved_with_two_threads(pytester, session, monkeypatch)
    failed = session("--repro-check", "b")
    failed.assert_outcomes(failed=1)
    lines = failed.stdout.lines
    header = next(line for line in lines if line.startswith("baseline env "))
    assert header.endswith(": threads 2 → 1")
    differs = lines[lines.index(header) + 1]
    assert differs.startswith("DIFFERS test_values:test_reduced/sum [cpu ")
    assert "max abs " in differs and " ULP" in differs
    assert "(expected to differ along these axes? --repro-allow threads)" in lines
    assert any(line.startswith("baseline check: 1 matched (1 against another environment "
                               "or settings), 1 differs") for line in lines)


def test_an_allowed_axis_passes(pytester, session, monkeypatch,  # noqa: F811
                                threads_restored) -> None:
    saved_with_two_threads(pytester, session, monkeypatch)
    allowed = session("--repro-check", "b", "--repro-allow", "threads,cpu_capability")
    allowed.assert_outcomes(passed=1)
    assert "ALLOWED differences along threads:" in allowed.stdout.lines
    pytester.makeini("[pytest]\nrepro_allow = threads\n")
    session("--repro-check", "b").assert_outcomes(passed=1)


def test_strict_fails_on_an_output_without_any_baseline(pytester, session,  # noqa: F811
                                                        monkeypatch, threads_restored) -> None:
    saved_with_two_threads(pytester, session, monkeypatch)
    pytester.makepyfile(test_new='''
import torch

def test_new(repro):
    repro.check({"y": torch.ones(3)})
''')
    lenient = session("--repro-check", "b", "--repro-allow", "threads")
    assert lenient.ret == 0
    assert ("repro-audit: 1 output unchecked: no environment in b has a baseline of it "
            "(--repro-strict fails on them)") in lenient.stdout.lines
    strict = session("--repro-check", "b", "--repro-allow", "threads", "--repro-strict")
    strict.assert_outcomes(passed=2)
    assert strict.ret == pytest.ExitCode.TESTS_FAILED
    assert ("repro-audit: FAILED (--repro-strict): 1 output unchecked: no environment in b "
            "has a baseline of it") in strict.stdout.lines
    pytester.makeini("[pytest]\nrepro_strict = true\nrepro_allow = threads\n")
    assert session("--repro-check", "b").ret == pytest.ExitCode.TESTS_FAILED


def test_names_do_not_move_with_a_baseline_folder_outside_the_tree(
        pytester, session, tmp_path_factory, monkeypatch, threads_restored) -> None:  # noqa: F811
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_values=VALUES)
    session("--repro-save", "b").assert_outcomes(passed=1)
    outside = tmp_path_factory.mktemp("elsewhere") / "baselines"
    session("--repro-save", str(outside)).assert_outcomes(passed=1)  # space-separated value
    inside, = (pytester.path / "b").iterdir()
    assert (outside / inside.name).read_bytes() == inside.read_bytes()
    checked = session("--repro-check", str(outside))
    checked.assert_outcomes(passed=1)
    assert checked.ret == 0
    assert "baseline check: 2 matched, 0 differ, 0 without baseline" in checked.stdout.lines


def test_a_baseline_folder_matching_no_test_fails(pytester, session,  # noqa: F811
                                                  threads_restored) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_values=VALUES)
    session("--repro-save", "b").assert_outcomes(passed=1)
    pytester.makepyfile(test_values=VALUES.replace("test_reduced", "test_renamed"))
    renamed = session("--repro-check", "b")
    renamed.assert_outcomes(passed=1)
    assert renamed.ret == pytest.ExitCode.TESTS_FAILED
    assert any(line.startswith("repro-audit: FAILED: no test of this session matches any of "
                               "the 1 tests baselined in b") for line in renamed.stdout.lines)
