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

import os
from collections import deque
from typing import Any, Callable

from audit.config.settings import PROCESS, combinations, process_environ
from audit.run.plan import Plan, Planner, Unit, process_combinations
from audit.run.pool.budget import cores_of
from audit.run.pool.child import package_environ
from audit.run.pool.events import Finished, Ready
from audit.run.pool.pool import Pool
from audit.run.pool.task import Job, Task
from audit.run.rows import RowMaker


def worker_environ(combo: dict[str, str]) -> dict[str, str]:
    """The environment of a worker of a process-settings combination."""
    environ = package_environ(dict(os.environ))  # the child imports this very package
    for name, value in process_environ(combo, run_defaults=True).items():
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
    """Executes a plan and returns every row it produced: plans its units (audit.run.plan),
    hands them to the pool and turns what each worker reports into rows (audit.run.rows)."""

    def __init__(self, plan: Plan, env_id: str, torch_version: str,
                 progress: Callable[[int, int, str], None] | None = None,
                 on_rows: Callable[[list[dict[str, Any]]], None] | None = None,
                 skip: set[str] | None = None,
                 on_trace: Callable[[str, dict[str, Any]], None] | None = None,
                 pool: Pool | None = None) -> None:
        self.plan = plan
        self.planner = Planner(plan, torch_version, skip)  # its units: planned, by_key
        self.rows = RowMaker(env_id, torch_version)
        self.on_trace = on_trace or (lambda key, trace: None)
        self.progress = progress or (lambda done, total, label: None)
        self.on_rows = on_rows or (lambda rows: None)
        self.collected: list[dict[str, Any]] = []  # rows of the pass running now
        self.traced = 0
        # Workers: the caller's pool (shared by several runners of one run), or one's own.
        self.own_pool = pool is None
        self.pool = pool if pool is not None else Pool(plan.jobs, park=plan.trace)

    def plan_units(self, process_combo: dict[str, str], device_reasons: dict[str, str | None],
                   first_id: int) -> tuple[list[Unit], list[dict[str, Any]]]:
        """Units to run under one process combination, and the rows of those that cannot."""
        units, unrunnable = self.planner.units(process_combo, device_reasons, first_id)
        return units, [self.rows.unrunnable(item) for item in unrunnable]

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
        for combo in process_combinations(self.plan.settings):
            units, rows = self.plan_units(combo, device_reasons, len(self.planner.by_key))
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
        groups = self.planner.traced(wanted, device_reasons)
        self.traced = 0
        return [self.task(combo, [Job(unit, trace_key) for unit, trace_key in found])
                for combo, found in groups]

    def runnable(self, device_reasons: dict[str, str | None]) -> set[str]:
        """Keys of the units this plan can run here (planned now unless `run` did)."""
        return self.planner.plan_all(device_reasons)

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
        self.rows.missing.update(event.missing)

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
        finished = self.rows.finished(unit, event.rows, unit_effective, event.seconds)
        self.collected.extend(finished)
        self.on_rows(finished)

    def failed(self, job: Job, status: str, message: str, effective: dict[str, str]) -> None:
        if job.trace_key is not None:  # no trace: the audited rows stand without one
            return
        failed = [self.rows.failed(job.unit, effective, status=status, error=message)]
        self.collected.extend(failed)
        self.on_rows(failed)

    def timeout_of(self, job: Job) -> float:
        return job.unit.scenario.timeout or self.plan.timeout
