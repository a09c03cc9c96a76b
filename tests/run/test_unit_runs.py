"""A unit in the worker (audit.run.unit_runs): run twice under its run settings, restored
after; a failure is a row saying why."""

from __future__ import annotations

import torch

from audit.run.unit_runs import describe_error, failure_row, run_unit
from audit.scenarios.registry import Scenario, Unavailable


def unit(**run_settings: str) -> dict:
    return {"id": 0, "scenario": "a.one", "device": "cpu", "run_settings": run_settings,
            "settings": dict(run_settings)}


def scenario(function) -> Scenario:
    return Scenario(name="a.one", function=function, description="test")


def test_failures_are_rows() -> None:
    assert failure_row(Unavailable("no op"), {}) == {
        "output": None, "status": "unavailable", "error": "no op"}
    assert failure_row(NotImplementedError("aten::x\nmore"), {})["error"] == (
        "not implemented here: NotImplementedError: aten::x")
    determinism = RuntimeError("x does not have a deterministic implementation")
    assert failure_row(determinism, {"deterministic": "on"})["status"] == (
        "raises-when-deterministic")
    assert failure_row(determinism, {"deterministic": "off"})["status"] == "error"
    assert describe_error(ValueError()) == "ValueError:"


def test_a_unit_runs_twice_under_its_settings_then_restores_them() -> None:
    dtypes = []

    def function(ctx):
        dtypes.append(torch.get_default_dtype())
        return {"x": torch.ones(2)}

    result = run_unit(scenario(function), unit(default_dtype="float64"))
    assert dtypes == [torch.float64, torch.float64]
    assert torch.get_default_dtype() == torch.float32
    assert result.effective["default_dtype"] == "float64" and result.trace is None
    (row,) = result.rows
    assert (row["output"], row["status"], row["repeatable"], row["dtype"]) == (
        "x", "ok", True, "float64")


def test_a_failing_scenario_still_reports_its_settings() -> None:
    def function(ctx):
        raise ValueError("bad\nsecond line")

    result = run_unit(scenario(function), unit(deterministic="on"))
    assert result.rows == [{"output": None, "status": "error", "error": "ValueError: bad"}]
    assert result.effective["deterministic"] == "on"
    assert not torch.are_deterministic_algorithms_enabled()


def leave_globals_changed(ctx):
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.set_flush_denormal(True)
    torch.set_float32_matmul_precision("medium")
    torch.backends.mkldnn.enabled = False
    return {"x": torch.rand(3)}


def test_a_scenario_that_leaves_global_state_changed_fails_and_the_state_comes_back() -> None:
    threads = torch.get_num_threads()
    result = run_unit(scenario(leave_globals_changed), unit())
    (row,) = result.rows
    assert row["status"] == "error"
    for change in ("default_dtype float32 \u2192 float64", "deterministic off \u2192 on",
                   "flush_denormal off \u2192 on", "mkldnn on \u2192 off",
                   "matmul_precision highest \u2192 ", "and did not restore them"):
        assert change in row["error"]
    assert (f"threads {threads} \u2192 1" in row["error"]) == (threads != 1)
    # every knob is back, and the rows say so: read back after the unit
    assert torch.get_default_dtype() == torch.float32 and torch.get_num_threads() == threads
    assert not torch.are_deterministic_algorithms_enabled()
    assert torch.backends.mkldnn.enabled and torch.get_float32_matmul_precision() == "highest"
    assert result.effective["default_dtype"] == "float32"
    assert result.effective["threads"] == str(threads)


def test_a_scenario_that_restores_what_it_changed_is_ok() -> None:
    def function(ctx):
        torch.set_default_dtype(torch.float64)
        try:
            return {"x": torch.rand(2)}
        finally:
            torch.set_default_dtype(torch.float32)

    (row,) = run_unit(scenario(function), unit()).rows
    assert (row["status"], row["dtype"]) == ("ok", "float64")
