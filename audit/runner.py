"""The parent of a run: plans units, starts one worker per process-settings combination.

A unit is (scenario, device, run-settings combination). Units that cannot run here (device
absent, torch too old, optional package missing) become `unavailable` rows without
starting anything. The rest go to `audit.worker` children; a unit that outlives its timeout
becomes `timeout`, one whose child dies becomes `crashed`, and a fresh child takes the
remaining units, so one bad scenario never costs the results of the others.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from audit.compat import version_at_least
from audit.results import make_row, unit_key
from audit.scenarios.registry import Scenario
from audit.settings import (
    NOT_APPLICABLE,
    PROCESS,
    RUN,
    SETTINGS,
    combinations,
    for_device,
    process_environ,
)

DEFAULT_TIMEOUT = 300.0
STARTUP_GRACE = 120.0  # seconds a child may take to import torch and load scenarios


@dataclass
class Plan:
    """What a run will do: the selection, devices, settings and defaults."""

    scenarios: list[Scenario]
    devices: list[str]
    settings: dict[str, list[str]]
    scenario_files: list[str] = field(default_factory=list)
    timeout: float = DEFAULT_TIMEOUT
    keep_tensors: str | None = None  # folder for full output bytes (exact distances)
    trace: bool = False  # run each unit a third time, every op recorded (audit.trace)


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


class Runner:
    """Executes a plan and returns every row it produced."""

    def __init__(self, plan: Plan, env_id: str, torch_version: str,
                 progress: Callable[[int, int, str], None] | None = None,
                 on_rows: Callable[[list[dict[str, Any]]], None] | None = None,
                 skip: set[str] | None = None,
                 on_trace: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        self.plan = plan
        self.on_trace = on_trace or (lambda key, trace: None)
        self.skip = skip or set()  # unit keys already done (audit.results.unit_key)
        self.planned: set[str] = set()
        self.env_id = env_id
        self.torch_version = torch_version
        self.progress = progress or (lambda done, total, label: None)
        self.on_rows = on_rows or (lambda rows: None)
        self.done = 0
        self.total = 0
        self.missing: dict[str, str] = {}  # setting -> why its library is absent (workers)

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
                    if key in self.planned or key in self.skip:
                        # settings for another device collapse to n/a: run once
                        continue
                    self.planned.add(key)
                    reason = unavailable_reason(scenario, device, device_reasons,
                                                self.torch_version)
                    if reason:
                        rows.append(self.row(scenario.name, device, applied, requested=applied,
                                             status="unavailable", error=reason))
                        continue
                    run_only = {name: applied[name] for name in run_combo}
                    units.append(Unit(next_id, scenario, device, run_only, applied))
                    next_id += 1
        return units, rows

    def row(self, scenario: str, device: str, settings: dict[str, str], **values: Any
            ) -> dict[str, Any]:
        return make_row(scenario=scenario, device=device, settings=settings,
                        torch_version=self.torch_version, env_id=self.env_id, **values)

    # --- execution -----------------------------------------------------------------------

    def run(self, device_reasons: dict[str, str | None]) -> list[dict[str, Any]]:
        process_combos = list(combinations(self.plan.settings, PROCESS)) or [{}]
        planned = []
        next_id = 0
        all_rows: list[dict[str, Any]] = []
        for combo in process_combos:
            units, rows = self.plan_units(combo, device_reasons, next_id)
            next_id += len(units)
            planned.append((combo, units))
            all_rows.extend(rows)
        self.on_rows(all_rows)
        self.total = sum(len(units) for _, units in planned)
        for combo, units in planned:
            all_rows.extend(self.run_combo(combo, units))
        return all_rows

    def run_combo(self, combo: dict[str, str], units: list[Unit]) -> list[dict[str, Any]]:
        """All units of one process combination, restarting children after crashes."""
        rows: list[dict[str, Any]] = []
        remaining = list(units)
        while remaining:
            finished, failed_rows, remaining = self.run_child(combo, remaining)
            rows.extend(finished)
            rows.extend(failed_rows)
        return rows

    def run_child(self, combo: dict[str, str], units: list[Unit]
                  ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[Unit]]:
        """Run units in one child until all finish or the child dies or hangs.

        Returns (rows of finished units, rows of the unit that crashed or timed out,
        units still to run).
        """
        environ = dict(os.environ)
        # The child must import this very package, installed or not.
        package_root = str(Path(__file__).resolve().parent.parent)
        environ["PYTHONPATH"] = os.pathsep.join(
            [package_root] + [p for p in environ.get("PYTHONPATH", "").split(os.pathsep) if p])
        for name, value in process_environ(combo).items():
            if value is None:
                environ.pop(name, None)
            else:
                environ[name] = value
        job = {"units": [unit.job() for unit in units], "scenario_files": self.plan.scenario_files,
               "process_settings": combo, "keep_tensors": self.plan.keep_tensors,
               "trace": self.plan.trace}
        by_id = {unit.id: unit for unit in units}
        stderr_file = tempfile.TemporaryFile(mode="w+b")  # noqa: SIM115 - closed after wait()
        child = subprocess.Popen(
            [sys.executable, "-m", "audit.worker"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=stderr_file, env=environ,
        )
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(json.dumps(job).encode())
        child.stdin.close()
        events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        reader = threading.Thread(target=_read_events, args=(child.stdout, events), daemon=True)
        reader.start()

        rows: list[dict[str, Any]] = []
        pending = list(units)
        effective: dict[str, str] = {}
        current: Unit | None = None
        deadline = time.monotonic() + STARTUP_GRACE
        failure: tuple[str, str] | None = None
        while True:
            try:
                event = events.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                if current is None:
                    failure = ("crashed", f"worker did not start within {STARTUP_GRACE:.0f} s")
                else:
                    failure = ("timeout", f"no result within {self.timeout_of(current):g} s")
                _kill(child)
                break
            if event is None:  # the child closed its output: done or dead
                break
            kind = event.get("event")
            if kind == "ready":
                effective = event["effective"]
                self.missing.update(event.get("missing") or {})
            elif kind == "start":
                current = by_id[event["unit"]]
                deadline = time.monotonic() + self.timeout_of(current)
                self.progress(self.done, self.total, f"{current.scenario.name} [{current.device}]")
            elif kind == "finish":
                unit = by_id[event["unit"]]
                unit_effective = {**effective, **(event.get("effective") or {})}
                finished = self.finish_rows(unit, event["rows"], unit_effective,
                                            event["seconds"])
                if isinstance(event.get("trace"), dict):
                    settings, _ = self.settings_in_effect(unit, unit_effective)
                    self.on_trace(unit_key(unit.scenario.name, unit.device, settings),
                                  event["trace"])
                rows.extend(finished)
                self.on_rows(finished)
                pending.remove(unit)
                current = None
                self.done += 1
                deadline = time.monotonic() + STARTUP_GRACE
            elif kind == "fatal":
                failure = ("crashed", f"worker failed: {event.get('error')}")
        code = child.wait()
        stderr_file.seek(0)
        stderr_tail = stderr_file.read()[-2000:].decode("utf-8", "replace").strip()
        stderr_file.close()
        if failure is None and pending:
            last_line = stderr_tail.splitlines()[-1] if stderr_tail else ""
            failure = ("crashed", f"worker exited with code {code}"
                       + (f": {last_line}" if last_line else ""))
        if not pending:
            return rows, [], []
        assert failure is not None
        status, message = failure
        victim = current if current is not None else pending[0]
        if current is None and status == "crashed" and not rows:
            # The child died before running anything: every pending unit shares its fate.
            failed = [self.unit_row(unit, effective, status=status, error=message)
                      for unit in pending]
            self.on_rows(failed)
            self.done += len(pending)
            return rows, failed, []
        failed = [self.unit_row(victim, effective, status=status, error=message)]
        self.on_rows(failed)
        self.done += 1
        return rows, failed, [unit for unit in pending if unit is not victim]

    def timeout_of(self, unit: Unit) -> float:
        return unit.scenario.timeout or self.plan.timeout

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


def _read_events(stream: Any, events: queue.Queue[dict[str, Any] | None]) -> None:
    for line in stream:
        try:
            events.put(json.loads(line))
        except ValueError:
            continue  # not a protocol line: ignore
    events.put(None)


def _kill(child: subprocess.Popen[bytes]) -> None:
    child.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        child.wait(timeout=30)
