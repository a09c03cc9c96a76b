"""Faults inside scenarios and runs: every good result is kept, every bad one is named."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from tests.e2e.support import audit_cli, audit_command, read_results
from tests.support import ROOT

FAULTY = textwrap.dedent('''
    import ctypes, os, sys, time
    import torch
    from audit import scenario

    @scenario("fault.a_before", "runs before the faults")
    def before(ctx):
        torch.manual_seed(1)
        return {"x": torch.rand(4)}

    @scenario("fault.b_raises", "raises an exception")
    def raises(ctx):
        raise KeyError("no such thing")

    @scenario("fault.c_aborts", "kills its process with abort()")
    def aborts(ctx):
        os.abort()

    @scenario("fault.d_segfaults", "reads address 0")
    def segfaults(ctx):
        ctypes.string_at(0)

    @scenario("fault.e_exits", "calls sys.exit")
    def exits(ctx):
        sys.exit(7)

    @scenario("fault.f_hangs", "sleeps far past the timeout")
    def hangs(ctx):
        time.sleep(600)

    @scenario("fault.g_hangs_briefly", "needs 3 s, allowed 20 s by its own timeout", timeout=20)
    def hangs_briefly(ctx):
        time.sleep(3)
        return {"x": torch.zeros(2)}

    @scenario("fault.h_after", "runs after the faults")
    def after(ctx):
        torch.manual_seed(2)
        return {"x": torch.rand(4)}
''')


@pytest.fixture(scope="module")
def faulty_run(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    tmp_path = tmp_path_factory.mktemp("faults")
    scenarios = tmp_path / "faulty.py"
    scenarios.write_text(FAULTY, encoding="utf-8")
    out = tmp_path / "results"
    completed = audit_cli("run", "--scenarios", str(scenarios), "--select", "fault.*",
                          "--devices", "cpu", "--timeout", "2", "--out", str(out))
    assert completed.returncode == 0, completed.stderr
    return read_results(out)[1]


def status_of(rows: list[dict], scenario: str) -> dict:
    (row,) = [row for row in rows if row["scenario"] == scenario]
    return row


def test_a_raising_scenario_is_an_error_with_type_and_message(faulty_run: list[dict]) -> None:
    row = status_of(faulty_run, "fault.b_raises")
    assert row["status"] == "error" and row["error"] == "KeyError: 'no such thing'"


@pytest.mark.parametrize("scenario", ["fault.c_aborts", "fault.d_segfaults", "fault.e_exits"])
def test_a_scenario_that_kills_its_process_is_crashed(faulty_run: list[dict],
                                                      scenario: str) -> None:
    row = status_of(faulty_run, scenario)
    assert row["status"] == "crashed"
    assert "worker exited with code" in row["error"]


def test_a_hanging_scenario_times_out(faulty_run: list[dict]) -> None:
    row = status_of(faulty_run, "fault.f_hangs")
    assert row["status"] == "timeout" and "2 s" in row["error"]


def test_a_scenario_timeout_overrides_the_run_timeout(faulty_run: list[dict]) -> None:
    assert status_of(faulty_run, "fault.g_hangs_briefly")["status"] == "ok"


def test_scenarios_before_and_after_the_faults_keep_their_results(faulty_run) -> None:
    for scenario in ("fault.a_before", "fault.h_after"):
        row = status_of(faulty_run, scenario)
        assert row["status"] == "ok" and row["repeatable"] is True and row["digest"]


SLOW = textwrap.dedent('''
    import time
    import torch
    from audit import scenario

    for index in range(8):
        def make(index=index):
            def slow(ctx):
                time.sleep(0.4)
                torch.manual_seed(index)
                return {"x": torch.rand(3)}
            return slow
        scenario(f"slow.s{index}", "sleeps, then draws")(make())
''')


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL of a process group is POSIX")
def test_a_killed_run_leaves_no_results_file_and_resume_completes_it(tmp_path: Path) -> None:
    scenarios = tmp_path / "slow.py"
    scenarios.write_text(SLOW, encoding="utf-8")
    out = tmp_path / "results"
    arguments = ["run", "--scenarios", str(scenarios), "--select", "slow.*", "--devices", "cpu",
                 "--out", str(out)]
    process = subprocess.Popen(audit_command(*arguments), cwd=ROOT, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    journal_rows = 0
    while time.monotonic() < deadline and journal_rows < 3:
        time.sleep(0.1)
        journals = list(out.glob(".*.partial")) if out.exists() else []
        if journals:
            journal_rows = len(journal_units(journals[0]))
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert 3 <= journal_rows < 8, "the run was not killed half-way"
    assert list(out.glob("*.jsonl")) == []  # nothing half-written is visible
    (journal,) = out.glob(".*.partial")
    kept = [row for unit in journal_units(journal) for row in unit["rows"]]

    completed = audit_cli(*arguments, "--resume")
    assert completed.returncode == 0, completed.stderr
    _, rows = read_results(out)
    assert sorted(row["scenario"] for row in rows) == [f"slow.s{i}" for i in range(8)]
    assert all(row["status"] == "ok" for row in rows)
    for row in kept:  # rows from before the kill are kept as they were, not run again
        assert row in rows
    assert not list(out.glob(".*.partial"))


def journal_units(journal: Path) -> list[dict]:
    """The whole unit records of a run's journal (audit.run.journal), one per line."""
    units = []
    for line in journal.read_text("utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # cut off as the run was killed
        if record.get("record") == "unit":
            units.append(record)
    return units


def start_slow_run(tmp_path: Path, *extra: str, session: bool = False
                   ) -> tuple[subprocess.Popen, list[str], Path]:
    """A run of the SLOW scenarios in a subprocess, once its journal holds a unit."""
    scenarios = tmp_path / "slow.py"
    scenarios.write_text(SLOW, encoding="utf-8")
    out = tmp_path / "results"
    arguments = ["run", "--scenarios", str(scenarios), "--select", "slow.*", "--devices", "cpu",
                 "--out", str(out), *extra]
    process = subprocess.Popen(audit_command(*arguments), cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=session)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        journals = list(out.glob(".*.partial")) if out.exists() else []
        if journals and journal_units(journals[0]):
            break
        time.sleep(0.05)
    return process, arguments, out


def test_a_second_run_into_the_same_folder_refuses_and_the_first_keeps_its_rows(
        tmp_path: Path) -> None:
    first, arguments, out = start_slow_run(tmp_path)
    second = audit_cli(*arguments[:-2], "--out", str(out), "--select", "slow.s0")
    assert second.returncode == 2
    assert second.stderr.count("\n") == 1
    assert f"in use by another run (pid {first.pid} on host " in second.stderr
    _, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    _, rows = read_results(out)
    assert sorted(row["scenario"] for row in rows) == [f"slow.s{i}" for i in range(8)]


@pytest.mark.skipif(os.name != "posix", reason="SIGINT to a process is POSIX")
@pytest.mark.parametrize("group", [False, True], ids=["to-the-run", "to-its-process-group"])
def test_ctrl_c_then_resume_keeps_no_crashed_row_and_refuses_other_settings(
        tmp_path: Path, group: bool) -> None:
    """SIGINT to the run alone, or to its workers too (Ctrl-C in a terminal)."""
    process, arguments, out = start_slow_run(tmp_path, "--jobs", "3",
                                             "--settings", "threads=1", session=group)
    if group:
        os.killpg(process.pid, signal.SIGINT)
    else:
        process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    (journal,) = out.glob(".*.partial")
    units = journal_units(journal)
    assert 1 <= len(units) < 8
    assert all(row["status"] == "ok" for unit in units for row in unit["rows"]), units

    other = audit_cli(*arguments[:-1], "threads=2", "--resume")
    assert other.returncode == 2
    assert other.stderr.count("\n") == 1 and "another run (settings:" in other.stderr

    completed = audit_cli(*arguments, "--resume")
    assert completed.returncode == 0, completed.stderr
    _, rows = read_results(out)
    assert sorted(row["scenario"] for row in rows) == [f"slow.s{i}" for i in range(8)]
    assert all(row["status"] == "ok" for row in rows), rows
