"""GPU code paths exercised on CPU: discovery, unavailable cells, CUDA-only settings."""

from __future__ import annotations

import types

import pytest
import torch

from audit.environment import devices
from audit.run.plan import Plan, scenario_devices
from audit.run.runner import Runner
from audit.scenarios.registry import Scenario


def test_cpu_is_always_available() -> None:
    assert devices.device_status("cpu") is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the reason given without CUDA")
def test_absent_cuda_gives_a_reason() -> None:
    reason = devices.device_status("cuda")
    assert reason in ("no CUDA device", "this torch is built without CUDA")


def test_unknown_device_gives_a_reason() -> None:
    assert devices.device_status("tpu") == "unknown device 'tpu'"


def test_cuda_properties_are_recorded_when_a_device_is_present(monkeypatch) -> None:
    """The recording code runs against a stand-in for one GPU (no GPU here)."""
    props = types.SimpleNamespace(name="Fake GPU", major=9, minor=0, multi_processor_count=132,
                                  max_threads_per_multi_processor=2048, total_memory=80 << 30)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: props)
    monkeypatch.setattr(torch.backends.cudnn, "is_available", lambda: True)
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 91000)
    found = devices.device_properties()["cuda"]
    assert found["devices"] == [{"name": "Fake GPU", "capability": "9.0", "sm_count": 132,
                                 "max_threads_per_sm": 2048, "memory_bytes": 80 << 30}]
    assert found["cudnn_version"] == 91000


def make_scenario(name: str, devices_: tuple[str, ...] | None = None,
                  min_torch: str | None = None, modules: tuple[str, ...] = ()) -> Scenario:
    return Scenario(name=name, function=lambda ctx: {}, description="test",
                    devices=devices_, min_torch=min_torch, modules=modules)


def test_scenario_devices_follow_the_run_and_the_declaration() -> None:
    assert scenario_devices(make_scenario("a.any"), ["cpu", "cuda"]) == ["cpu", "cuda"]
    assert scenario_devices(make_scenario("a.cpu", ("cpu",)), ["cpu", "cuda"]) == ["cpu"]
    assert scenario_devices(make_scenario("a.cuda", ("cuda",)), ["cpu"]) == []


def plan(settings: dict[str, list[str]], scenarios: list[Scenario], run_devices: list[str],
         reasons: dict[str, str | None]) -> tuple[list, list[dict]]:
    runner = Runner(Plan(scenarios=scenarios, devices=run_devices, settings=settings),
                    env_id="e", torch_version="2.13.0")
    return runner.plan_units({}, reasons, 0)


def test_absent_device_cells_are_unavailable_rows_not_skipped() -> None:
    units, rows = plan({}, [make_scenario("a.one"), make_scenario("a.two")], ["cpu", "cuda"],
                       {"cpu": None, "cuda": "no CUDA device"})
    assert [(unit.scenario.name, unit.device) for unit in units] == [("a.one", "cpu"),
                                                                       ("a.two", "cpu")]
    assert [(row["scenario"], row["device"], row["status"], row["error"]) for row in rows] == [
        ("a.one", "cuda", "unavailable", "device cuda: no CUDA device"),
        ("a.two", "cuda", "unavailable", "device cuda: no CUDA device")]


def test_cuda_only_settings_are_not_applicable_on_cpu_and_run_once() -> None:
    units, _ = plan({"tf32": ["off", "on"], "deterministic": ["off", "on"]},
                    [make_scenario("a.one")], ["cpu", "cuda"], {"cpu": None, "cuda": None})
    cpu = sorted((u.settings["tf32"], u.settings["deterministic"]) for u in units
                 if u.device == "cpu")
    cuda = sorted((u.settings["tf32"], u.settings["deterministic"]) for u in units
                  if u.device == "cuda")
    assert cpu == [("n/a", "off"), ("n/a", "on")]
    assert cuda == [("off", "off"), ("off", "on"), ("on", "off"), ("on", "on")]


def test_too_old_torch_and_missing_packages_are_unavailable() -> None:
    _, rows = plan({}, [make_scenario("a.new", min_torch="99.0"),
                        make_scenario("a.pkg", modules=("no_such_package_xyz",))],
                   ["cpu"], {"cpu": None})
    assert [row["error"] for row in rows] == [
        "needs torch >= 99.0", "needs the optional package 'no_such_package_xyz'"]
