"""What a run will do: which units, under which settings combinations, and which cannot run.

A unit is (scenario, device, run-settings combination). The settings a plan names split by
scope: each combination of process settings needs workers of its own; the run settings'
combinations are switched inside a worker around each unit. A unit that cannot run here
(device absent, torch too old, optional package missing) is planned as `Unrunnable`, with
the reason its row will give, and never reaches a worker.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from audit.config.settings import PROCESS, RUN, combinations, for_device
from audit.environment.compat import version_at_least
from audit.scenarios.registry import Scenario
from audit.store.results import unit_key

DEFAULT_TIMEOUT = 300.0


@dataclass
class Plan:
    """What a run will do: the selection, devices, settings and defaults."""

    scenarios: list[Scenario]
    devices: list[str]
    settings: dict[str, list[str]]
    scenario_files: list[str] = field(default_factory=list)
    timeout: float = DEFAULT_TIMEOUT
    keep_tensors: str | None = None  # folder for full output bytes (exact distances)
    trace: bool = False  # a trace pass follows the audit (Runner.trace): keep workers
    jobs: int | None = None  # cores to keep busy (None: all this process may use)


@dataclass
class Unit:
    id: int
    scenario: Scenario
    device: str
    run_settings: dict[str, str]
    settings: dict[str, str]  # process + run settings as requested for this device

    def job(self) -> dict[str, Any]:
        return {"id": self.id, "scenario": self.scenario.name, "device": self.device,
                "run_settings": self.run_settings, "settings": self.settings}


@dataclass
class Unrunnable:
    """A unit that cannot run here, and why (its row says so: audit.run.rows)."""

    scenario: Scenario
    device: str
    settings: dict[str, str]  # process + run settings as requested for this device
    reason: str


def unavailable_reason(scenario: Scenario, device: str, device_reasons: dict[str, str | None],
                       torch_version: str) -> str | None:
    """Why `scenario` cannot run on `device` here, or None."""
    if device_reasons.get(device):
        return f"device {device}: {device_reasons[device]}"
    if scenario.min_torch and not version_at_least(torch_version, scenario.min_torch):
        return f"needs torch >= {scenario.min_torch}"
    for module in scenario.modules:
        if importlib.util.find_spec(module) is None:
            return f"needs the optional package {module!r}"
    return None


def scenario_devices(scenario: Scenario, devices: list[str]) -> list[str]:
    """The devices a scenario is audited on: the run's, limited by what it declares.

    A scenario for devices outside the run (a cuda-only one in a `--devices cpu` run) is
    not planned: the user did not ask for that device.
    """
    if scenario.devices is None:
        return list(devices)
    return [device for device in devices if device in scenario.devices]


def process_combinations(settings: Mapping[str, list[str]]) -> list[dict[str, str]]:
    """The process-settings combinations of a plan, each run by workers of its own ({}:
    the plan names none, one kind of worker runs everything)."""
    return list(combinations(settings, PROCESS)) or [{}]


def run_combinations(settings: Mapping[str, list[str]]) -> list[dict[str, str]]:
    """The run-settings combinations of a plan, switched around each unit in a worker."""
    return list(combinations(settings, RUN)) or [{}]


class Planner:
    """The units of one plan, each unit key planned once (settings that do not apply to a
    device collapse to n/a, so two combinations may make one unit)."""

    def __init__(self, plan: Plan, torch_version: str, skip: set[str] | None = None) -> None:
        self.plan = plan
        self.torch_version = torch_version
        self.skip = skip or set()  # unit keys already done (audit.store.results.unit_key)
        self.planned: set[str] = set()  # every key planned, runnable or not
        # Runnable units by key, with their process combination; done ones too: for traces.
        self.by_key: dict[str, tuple[dict[str, str], Unit]] = {}

    def units(self, process_combo: dict[str, str], device_reasons: dict[str, str | None],
              first_id: int) -> tuple[list[Unit], list[Unrunnable]]:
        """Units to run under one process combination (numbered from `first_id`), and those
        that cannot run here; units in `skip` are in neither."""
        units: list[Unit] = []
        unrunnable: list[Unrunnable] = []
        run_combos = run_combinations(self.plan.settings)
        next_id = first_id
        for scenario in self.plan.scenarios:
            for device in scenario_devices(scenario, self.plan.devices):
                for run_combo in run_combos:
                    applied = for_device({**process_combo, **run_combo}, device)
                    key = unit_key(scenario.name, device, applied)
                    if key in self.planned:
                        continue
                    self.planned.add(key)
                    reason = unavailable_reason(scenario, device, device_reasons,
                                                self.torch_version)
                    if reason:
                        if key not in self.skip:
                            unrunnable.append(Unrunnable(scenario, device, applied, reason))
                        continue
                    run_only = {name: applied[name] for name in run_combo}
                    unit = Unit(next_id, scenario, device, run_only, applied)
                    next_id += 1
                    self.by_key[key] = (process_combo, unit)
                    if key not in self.skip:
                        units.append(unit)
        return units, unrunnable

    def plan_all(self, device_reasons: dict[str, str | None]) -> set[str]:
        """Keys of the units this plan can run here (planned now unless they were)."""
        if not self.by_key:
            for combo in process_combinations(self.plan.settings):
                self.units(combo, device_reasons, len(self.by_key))
        return set(self.by_key)

    def traced(self, wanted: dict[str, str], device_reasons: dict[str, str | None]
               ) -> list[tuple[dict[str, str], list[tuple[Unit, str]]]]:
        """The units of `wanted` ({unit key as requested: trace key}) this plan can run here,
        with their trace keys, grouped by process combination: each group runs in workers
        of its own combination."""
        self.plan_all(device_reasons)
        groups: dict[str, tuple[dict[str, str], list[tuple[Unit, str]]]] = {}
        for key, trace_key in sorted(wanted.items()):
            if key in self.by_key:
                combo, unit = self.by_key[key]
                group = groups.setdefault(json.dumps(combo, sort_keys=True), (combo, []))
                group[1].append((unit, trace_key))
        return list(groups.values())
