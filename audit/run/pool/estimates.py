"""How long work will take, from what the pool measured so far: it decides whether a second
worker for a task is worth its start-up (audit.run.pool.scheduler)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from audit.run.pool.task import Task

FIRST_GUESS_SECONDS = 0.5  # a unit's expected run time before any has been measured
FIRST_GUESS_STARTUP = 5.0  # a worker's start-up before one has been measured


class Estimates:
    """Measured seconds of units (by scenario) and of worker start-ups."""

    def __init__(self) -> None:
        self.seconds: dict[str, list[float]] = {}  # scenario -> measured unit seconds
        self.startups: list[float] = []  # seconds from spawn to ready

    def unit_ran(self, scenario: str, seconds: float) -> None:
        self.seconds.setdefault(scenario, []).append(seconds)

    def worker_started(self, seconds: float) -> None:
        self.startups.append(seconds)

    def startup(self) -> float:
        """A worker's expected start-up: the mean of those measured."""
        if not self.startups:
            return FIRST_GUESS_STARTUP
        return sum(self.startups) / len(self.startups)

    def work_left(self, task: Task) -> float:
        """Expected seconds of the task's pending units: each its scenario's mean, or the
        mean of every unit measured where its scenario has none yet."""
        measured = [s for values in self.seconds.values() for s in values]
        overall = sum(measured) / len(measured) if measured else FIRST_GUESS_SECONDS
        total = 0.0
        for job in task.pending:
            known = self.seconds.get(job.unit.scenario.name)
            total += sum(known) / len(known) if known else overall
        return total
