"""Planning (audit.run.plan): each unit key once, units done before skipped, unrunnable
units with their reason, and a trace pass grouped by process combination."""

from __future__ import annotations

from audit.run.plan import Plan, Planner, process_combinations, run_combinations
from audit.scenarios.registry import Scenario


def scenario(name: str) -> Scenario:
    return Scenario(name=name, function=lambda ctx: {}, description="test")


SETTINGS = {"threads": ["1", "2"], "mkldnn": ["on", "off"], "deterministic": ["off"]}


def test_settings_split_by_scope() -> None:
    assert process_combinations(SETTINGS) == [{"threads": "1"}, {"threads": "2"}]
    assert run_combinations(SETTINGS) == [{"mkldnn": "on", "deterministic": "off"},
                                          {"mkldnn": "off", "deterministic": "off"}]
    assert process_combinations({}) == run_combinations({}) == [{}]


def test_settings_of_another_device_collapse_to_one_unit() -> None:
    planner = Planner(Plan([scenario("a.one")], ["cpu", "cuda"], SETTINGS), "2.13.0")
    units, unrunnable = planner.units({"threads": "1"}, {"cpu": None, "cuda": None}, 0)
    assert [(unit.id, unit.device, unit.run_settings["mkldnn"]) for unit in units] == [
        (0, "cpu", "on"), (1, "cpu", "off"), (2, "cuda", "n/a")]
    assert unrunnable == []
    assert len(planner.planned) == len(planner.by_key) == 3


def test_skipped_units_are_known_but_not_run_and_unrunnable_ones_say_why() -> None:
    first = Planner(Plan([scenario("a.one")], ["cpu", "cuda"], {}), "2.13.0")
    first.units({}, {"cpu": None, "cuda": None}, 0)
    done = {key for key, (_, unit) in first.by_key.items() if unit.device == "cpu"}
    planner = Planner(Plan([scenario("a.one")], ["cpu", "cuda"], {}), "2.13.0", skip=done)
    units, unrunnable = planner.units({}, {"cpu": None, "cuda": "no CUDA device"}, 0)
    assert units == []
    assert [(item.device, item.reason) for item in unrunnable] == [
        ("cuda", "device cuda: no CUDA device")]
    assert set(planner.by_key) == done  # a done unit can still be traced


def test_a_trace_pass_is_grouped_by_process_combination() -> None:
    planner = Planner(Plan([scenario("a.one"), scenario("a.two")], ["cpu"],
                           {"threads": ["1", "2"]}), "2.13.0")
    keys = planner.plan_all({"cpu": None})
    assert len(keys) == 4
    wanted = {key: f"trace-{index}" for index, key in enumerate(sorted(keys))}
    wanted["not a unit of this plan"] = "trace-x"
    groups = planner.traced(wanted, {"cpu": None})
    assert sorted(combo["threads"] for combo, _ in groups) == ["1", "2"]
    for combo, found in groups:
        assert {unit.settings["threads"] for unit, _ in found} == {combo["threads"]}
        assert [trace_key for _, trace_key in found] == sorted(t for _, t in found)
    assert sum(len(found) for _, found in groups) == 4
