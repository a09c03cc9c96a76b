"""Rows of a run's units (audit.run.rows): every setting recorded, and the reason each
setting gives when a requested value did not take effect."""

from __future__ import annotations

from audit.config.settings import NOT_APPLICABLE, SETTINGS
from audit.run.plan import Unit, Unrunnable
from audit.run.rows import RowMaker
from audit.scenarios.registry import Scenario

SCENARIO = Scenario(name="a.one", function=lambda ctx: {}, description="test")


def unit(device: str = "cpu", **settings: str) -> Unit:
    return Unit(0, SCENARIO, device, {}, dict(settings))


def reason(requested: dict[str, str], effective: dict[str, str], device: str = "cpu",
           missing: dict[str, str] | None = None) -> str | None:
    rows = RowMaker("env", "2.13.0")
    rows.missing.update(missing or {})
    return rows.settings_in_effect(unit(device, **requested), effective)[1]


def test_each_setting_says_why_its_value_did_not_take() -> None:
    assert reason({"threads": "4"}, {"threads": "2"}) == "threads 4 requested, torch used 2"
    assert reason({"cpu_capability": "avx512"}, {"cpu_capability": "avx2"}) == (
        "cpu_capability avx512 is not available here (torch used avx2)")
    assert reason({"onednn_isa": "avx512_core"}, {"onednn_isa": "avx2"}) == (
        "onednn_isa avx512_core did not take effect here (avx2 in effect; oneDNN caps the "
        "ISA at what this CPU has)")
    assert reason({"deterministic": "on"}, {"deterministic": "off"}) == (
        "deterministic on did not take effect here (off in effect)")


def test_values_that_took_or_were_never_read_back_give_no_reason() -> None:
    assert reason({"cpu_capability": "auto"}, {"cpu_capability": "avx2"}) is None
    assert reason({"threads": "4"}, {"threads": "4"}) is None
    assert reason({"threads": "4"}, {}) is None  # a crashed unit: nothing read back
    assert reason({"tf32": NOT_APPLICABLE}, {"tf32": "on"}) is None


def test_a_missing_library_is_the_reason_first() -> None:
    assert reason({"mkl_cbwr": "avx2"}, {"mkl_cbwr": NOT_APPLICABLE},
                  missing={"mkl_cbwr": "this torch build does not use MKL"}) == (
        "mkl_cbwr avx2: this torch build does not use MKL")


def test_every_setting_is_recorded() -> None:
    rows = RowMaker("env", "2.13.0")
    recorded, why = rows.settings_in_effect(unit("cpu", threads="4"),
                                            {"threads": "4", "deterministic": "on"})
    assert why is None
    # cpu_capability has no unset value (it depends on the CPU) and was not read back
    assert set(SETTINGS) - set(recorded) == {"cpu_capability"}
    assert recorded["threads"] == "4" and recorded["deterministic"] == "on"
    assert recorded["tf32"] == NOT_APPLICABLE  # a cuda setting on cpu
    assert recorded["mkldnn"] == SETTINGS["mkldnn"].default


def test_a_unit_whose_setting_did_not_take_is_one_unavailable_row() -> None:
    rows = RowMaker("env", "2.13.0")
    partial = [{"output": "x", "status": "ok", "repeatable": True, "error": None,
                "digest": "d"}]
    (row,) = rows.finished(unit("cpu", threads="4"), partial, {"threads": "2"}, 1.5)
    assert (row["status"], row["error"], row["output"]) == (
        "unavailable", "threads 4 requested, torch used 2", None)
    assert row["settings"]["threads"] == "4" and row["requested"] == {"threads": "4"}
    (row,) = rows.finished(unit("cpu", threads="4"), partial, {"threads": "4"}, 1.5)
    assert (row["status"], row["output"], row["seconds"], row["env_id"]) == (
        "ok", "x", 1.5, "env")


def test_an_unrunnable_unit_records_unset_values() -> None:
    row = RowMaker("env", "2.13.0").unrunnable(
        Unrunnable(SCENARIO, "cuda", {"deterministic": "on"}, "device cuda: absent"))
    assert (row["status"], row["error"]) == ("unavailable", "device cuda: absent")
    assert row["settings"]["deterministic"] == "on"
    assert row["settings"]["tf32"] == SETTINGS["tf32"].default
