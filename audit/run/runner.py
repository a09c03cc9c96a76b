"""The parent of a run: plans units and hands them to workers, one process combination each.

A unit is (scenario, device, run-settings combination). Units that cannot run here (device
absent, torch too old, optional package missing) become `unavailable` rows without
starting anything. The rest go to `audit.run.worker` children (audit.run.pool.pool: as many side by
side as the cores allow); a unit that outlives its timeout becomes `timeout`, one whose
child dies becomes `crashed`, and a fresh child takes the remaining units, so one bad
scenario never costs the results of the others. `Runner.trace` runs chosen units once
more under the op recorder, in a pass of its own after the audit.
"""

from __future__ import annotations

import importlib.util
import os
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from audit.config.settings import (
    NOT_APPLICABLE,
    PROCESS,
    RUN,
    SETTINGS,
    combinations,
    for_device,
    process_environ,
    with_unset_values,
)
from audit.environment.compat import version_at_least
from audit.run.pool.budget import cores_of
from audit.run.pool.child import package_environ
from audit.run.pool.events import Finished, Ready
from audit.run.pool.pool import Pool
from audit.run.pool.task import Job, Task, combo_key
from audit.scenarios.registry import Scenario
from audit.store.results import make_row, unit_key

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


def worker_environ(combo: dict[str, str]) -> dict[str, str]:
    """The environment of a worker of a process-settings combination."""
    environ = package_environ(dict(os.environ))  # the child imports this very package
    for name, value in process_environ(combo).items():
        if value is None:
            environ.pop(name, None)
        else:
            environ[name] = value
    return environ


def worker_header(combo: dict[str, str], scenario_files: list[str],
                  keep_tensors: str | None) -> dict[str, Any]:
    """The job line a worker of a combination starts with (units follow one by one)."""
    return {"scenario_files": scenario_files, "process_settings": combo,
            "keep_tensors": keep_tensors}


def start_workers(pool: Pool, products: list[dict[str, list[str]]], scenario_files: list[str],
                  keep_tensors: str | None) -> None:
    """Start the workers of the first tasks the pool will run (as many as their cores fit)
    before this process has imported torch and planned: both import at once."""
    combos = [combo for settings in products
              for combo in (list(combinations(settings, PROCESS)) or [{}])]
    pool.start_ahead([(combo, worker_environ(combo),
                       worker_header(combo, scenario_files, keep_tensors)) for combo in combos])


class Runner:
    """Executes a plan and returns every row it produced."""

    def __init__(self, plan: Plan, env_id: str, torch_version: str,
                 progress: Callable[[int, int, str], None] | None = None,
                 on_rows: Callable[[list[dict[str, Any]]], None] | None = None,
                 skip: set[str] | None = None,
                 on_trace: Callable[[str, dict[str, Any]], None] | None = None,
                 pool: Pool | None = None) -> None:
        self.plan = plan
        self.on_trace = on_trace or (lambda key, trace: None)
        self.skip = skip or set()  # unit keys already done (audit.store.results.unit_key)
        self.planned: set[str] = set()
        self.env_id = env_id
        self.torch_version = torch_version
        self.progress = progress or (lambda done, total, label: None)
        self.on_rows = on_rows or (lambda rows: None)
        self.missing: dict[str, str] = {}  # setting -> why its library is absent (workers)
        self.by_key: dict[str, tuple[dict[str, str], Unit]] = {}  # planned, runnable units
        self.collected: list[dict[str, Any]] = []  # rows of the pass running now
        self.traced = 0
        # Workers: the caller's pool (shared by several runners of one run), or one's own.
        self.own_pool = pool is None
        self.pool = pool if pool is not None else Pool(plan.jobs, park=plan.trace)

    # --- planning ------------------------------------------------------------------------

    def plan_units(self, process_combo: dict[str, str], device_reasons: dict[str, str | None],
                   first_id: int) -> tuple[list[Unit], list[dict[str, Any]]]:
        """Units to run under one process combination, and the rows of those that cannot."""
        units: list[Unit] = []
        rows: list[dict[str, Any]] = []
        run_combos = list(combinations(self.plan.settings, RUN)) or [{}]
        next_id = first_id
        for scenario in self.plan.scenarios:
            for device in scenario_devices(scenario, self.plan.devices):
                for run_combo in run_combos:
                    applied = for_device({**process_combo, **run_combo}, device)
                    key = unit_key(scenario.name, device, applied)
                    if key in self.planned:  # settings for another device collapse to n/a
                        continue
                    self.planned.add(key)
                    reason = unavailable_reason(scenario, device, device_reasons,
                                                self.torch_version)
                    if reason:
                        if key not in self.skip:
                            rows.append(self.row(scenario.name, device,
                                                 with_unset_values(applied, device),
                                                 requested=applied, status="unavailable",
                                                 error=reason))
                        continue
                    run_only = {name: applied[name] for name in run_combo}
                    unit = Unit(next_id, scenario, device, run_only, applied)
                    next_id += 1
                    self.by_key[key] = (process_combo, unit)  # done ones too: for traces
                    if key not in self.skip:
                        units.append(unit)
        return units, rows

    def row(self, scenario: str, device: str, settings: dict[str, str], **values: Any
            ) -> dict[str, Any]:
        return make_row(scenario=scenario, device=device, settings=settings,
                        torch_version=self.torch_version, env_id=self.env_id, **values)

    # --- execution -----------------------------------------------------------------------

    def run(self, device_reasons: dict[str, str | None]) -> list[dict[str, Any]]:
        """Every planned unit, run twice each (the audit), side by side where the cores allow
        (audit.run.pool.pool); returns the rows, those of units that cannot run here included."""
        self.pool.run(self.tasks(device_reasons))
        if not self.plan.trace and self.own_pool:
            self.pool.close()
        return self.collected

    def tasks(self, device_reasons: dict[str, str | None]) -> list[Task]:
        """Plan the audit: one task per process combination (run them with `pool.run`, with
        other runners' tasks if need be; `collected` then holds the rows). The rows of units
        that cannot run here are reported now."""
        tasks = []
        unavailable: list[dict[str, Any]] = []
        for combo in list(combinations(self.plan.settings, PROCESS)) or [{}]:
            units, rows = self.plan_units(combo, device_reasons, len(self.by_key))
            tasks.append(self.task(combo, [Job(unit) for unit in units]))
            unavailable.extend(rows)
        self.on_rows(unavailable)
        self.collected = unavailable
        return tasks

    def task(self, combo: dict[str, str], jobs: list[Job]) -> Task:
        return Task(combo, deque(jobs), cores_of(combo, self.pool.jobs), self)

    def trace(self, wanted: dict[str, str], device_reasons: dict[str, str | None]) -> int:
        """A traced run of each unit in `wanted` ({unit key as requested: trace key}); see
        `trace_tasks`. Returns the number of units traced."""
        self.pool.run(self.trace_tasks(wanted, device_reasons))
        return self.traced

    def trace_tasks(self, wanted: dict[str, str], device_reasons: dict[str, str | None]
                    ) -> list[Task]:
        """Traced runs of the units in `wanted` this plan knows, in workers of each unit's
        process combination: a pass of its own after the audit, so a traced run is never
        one of the two audited ones. Traces go to `on_trace`."""
        self.runnable(device_reasons)
        jobs: dict[str, list[Job]] = {}
        combos: dict[str, dict[str, str]] = {}
        for key, trace_key in sorted(wanted.items()):
            if key in self.by_key:
                combo, unit = self.by_key[key]
                combos[combo_key(combo)] = combo
                jobs.setdefault(combo_key(combo), []).append(Job(unit, trace_key))
        self.traced = 0
        return [self.task(combos[key], found) for key, found in jobs.items()]

    def runnable(self, device_reasons: dict[str, str | None]) -> set[str]:
        """Keys of the units this plan can run here (planned now unless `run` did)."""
        if not self.by_key:
            for combo in list(combinations(self.plan.settings, PROCESS)) or [{}]:
                self.plan_units(combo, device_reasons, len(self.by_key))
        return set(self.by_key)

    def close(self) -> None:
        """Close the workers kept for a trace pass (those of its own pool)."""
        if self.own_pool:
            self.pool.close()

    # --- what the pool calls back (under its lock): audit.run.pool.task.Hooks ------------

    def child_environ(self, combo: dict[str, str]) -> dict[str, str]:
        return worker_environ(combo)

    def child_header(self, combo: dict[str, str]) -> dict[str, Any]:
        return worker_header(combo, self.plan.scenario_files, self.plan.keep_tensors)

    def ready(self, event: Ready) -> None:
        self.missing.update(event.missing)

    def started(self, job: Job, done: int, total: int) -> None:
        what = "trace " if job.trace_key is not None else ""
        self.progress(done, total, f"{what}{job.unit.scenario.name} [{job.unit.device}]")

    def finished(self, job: Job, event: Finished, effective: dict[str, str]) -> None:
        if job.trace_key is not None:
            if event.trace is not None:
                self.on_trace(job.trace_key, event.trace)
                self.traced += 1
            return
        unit = job.unit
        unit_effective = {**effective, **event.effective}
        finished = self.finish_rows(unit, event.rows, unit_effective, event.seconds)
        self.collected.extend(finished)
        self.on_rows(finished)

    def failed(self, job: Job, status: str, message: str, effective: dict[str, str]) -> None:
        if job.trace_key is not None:  # no trace: the audited rows stand without one
            return
        failed = [self.unit_row(job.unit, effective, status=status, error=message)]
        self.collected.extend(failed)
        self.on_rows(failed)

    def timeout_of(self, job: Job) -> float:
        return job.unit.scenario.timeout or self.plan.timeout

    def settings_in_effect(self, unit: Unit, effective: dict[str, str]
                           ) -> tuple[dict[str, str], str | None]:
        """Every setting to record, and why the unit is unavailable when one did not take.

        Each row records every setting, chosen or not: those of the unit's device as the
        worker read them back (process settings at start-up, run settings per unit), the
        others as n/a. Results of any two matrices then compare on what they share. Where a
        value was never read back (a unit that crashed), it is the requested or unset value.
        """
        recorded: dict[str, str] = {}
        for name, setting in SETTINGS.items():
            if not setting.applies_to(unit.device):
                recorded[name] = NOT_APPLICABLE
                continue
            value = effective.get(name) or unit.settings.get(name) or setting.default
            if value is not None:
                recorded[name] = value
        for name, requested in unit.settings.items():
            if requested == NOT_APPLICABLE or name not in SETTINGS:
                continue
            actual = effective.get(name)
            if name in self.missing:
                recorded[name] = requested
                return recorded, f"{name} {requested}: {self.missing[name]}"
            if actual is None or actual == requested or (requested == "auto"
                                                         and name == "cpu_capability"):
                continue
            recorded[name] = requested
            if name == "threads":
                return recorded, f"threads {requested} requested, torch used {actual}"
            if name == "cpu_capability":
                return recorded, (f"cpu_capability {requested} is not available here "
                                  f"(torch used {actual})")
            hint = f"; {SETTINGS[name].hint}" if SETTINGS[name].hint else ""
            return recorded, (f"{name} {requested} did not take effect here "
                              f"({actual} in effect{hint})")
        return recorded, None

    def unit_row(self, unit: Unit, effective: dict[str, str], **values: Any) -> dict[str, Any]:
        settings, _ = self.settings_in_effect(unit, effective)
        return self.row(unit.scenario.name, unit.device, settings, requested=unit.settings,
                        **values)

    def finish_rows(self, unit: Unit, partial_rows: list[dict[str, Any]],
                    effective: dict[str, str], seconds: float) -> list[dict[str, Any]]:
        settings, not_in_effect = self.settings_in_effect(unit, effective)
        if not_in_effect:
            return [self.row(unit.scenario.name, unit.device, settings, requested=unit.settings,
                             status="unavailable", error=not_in_effect)]
        return [self.row(unit.scenario.name, unit.device, settings, requested=unit.settings,
                         seconds=seconds, **partial)
                for partial in partial_rows]
