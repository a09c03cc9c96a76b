"""What starts next: the pool's scheduling policy, behind the `Scheduler` protocol.

The pool's controller loop (audit.run.pool.pool.Pool.run) asks its scheduler, under its
lock, which worker to start while cores are free, and which worker to start ahead of its
task; it starts them and keeps the books (audit.run.pool.budget). `WidestFirst` is the
policy in use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Protocol, TypeVar

from audit.run.pool.budget import CoreBudget
from audit.run.pool.estimates import Estimates
from audit.run.pool.parking import Parking, task_worker_key
from audit.run.pool.task import Task

Item = TypeVar("Item")


@dataclass(frozen=True)
class Start:
    """Start a worker for `task` (`background`: at idle priority, holding no cores)."""

    task: Task
    background: bool = False


class Scheduler(Protocol):
    """The policy the pool asks; `backfill`: whether it may start background workers."""

    backfill: bool

    def order(self, tasks: list[Task]) -> list[Task]:
        """The tasks of a run in the order they are offered cores."""
        ...

    def next_start(self, tasks: list[Task]) -> Start | None:
        """A worker to start now (the pool counts it before it asks again), or None."""
        ...

    def next_ahead(self, tasks: list[Task]) -> Task | None:
        """A task waiting for cores whose worker may start now and wait parked, or None."""
        ...

    def ahead(self, cores: list[int]) -> tuple[list[int], int | None]:
        """Before a run is planned, given the cores of its tasks' workers (one each): the
        indexes of those to start now, and of the one whose fork server to start for a
        background worker (None: none)."""
        ...


def widest_first(items: Iterable[Item], cores: Callable[[Item], int]) -> list[Item]:
    """Wide tasks first, each alone with a background worker beside it; the one-core tasks
    then pack the cores to the end (a fine-grained tail)."""
    return sorted(items, key=lambda item: -cores(item))


class WidestFirst:
    """Start workers while their cores fit: the first worker of each task, widest first (a
    narrower one never takes the cores a wider one waits for); once every task has one, a
    helper for the task with most work left, when that work outweighs a start-up; beside
    a wide worker, a background one (audit.run.pool.priority)."""

    def __init__(self, budget: CoreBudget, estimates: Estimates, parking: Parking,
                 backfill: bool) -> None:
        self.budget = budget
        self.estimates = estimates
        self.parking = parking
        self.backfill = backfill

    def order(self, tasks: list[Task]) -> list[Task]:
        return widest_first(tasks, lambda task: task.cores)

    def next_start(self, tasks: list[Task]) -> Start | None:
        free = self.budget.free()
        waiting = [task for task in tasks if task.pending and not task.running]
        if waiting:
            if waiting[0].cores <= free:
                return Start(waiting[0])
        else:
            helped = [task for task in tasks if task.pending and task.running
                      and task.cores <= free and self.worth_helping(task)]
            if helped:
                return Start(max(helped, key=self.estimates.work_left))
        return self.background_start(tasks)

    def background_start(self, tasks: list[Task]) -> Start | None:
        """While a wide worker runs, one background worker for the one-core task with most
        work left: it takes units only while a wide worker runs."""
        if not self.backfill or not self.budget.wide or self.budget.background:
            return None
        narrow = [task for task in tasks if task.pending and task.cores == 1]
        if not narrow:
            return None
        return Start(max(narrow, key=self.estimates.work_left), background=True)

    def worth_helping(self, task: Task) -> bool:
        """A second worker halves the work left but costs a start-up (or none if parked)."""
        if self.parking.has_idle(task_worker_key(task)):
            return len(task.pending) > 1
        return self.estimates.work_left(task) > 2 * self.estimates.startup() + 1.0

    def next_ahead(self, tasks: list[Task]) -> Task | None:
        """The next task that waits for cores, so that its worker imports torch while the
        others run (a worker using two threads leaves a core idle much of the time) and
        starts work the moment cores free up. It runs no unit before it holds its cores:
        what runs beside a worker is only ever another process's import. One at a time."""
        if self.parking.warming:
            return None
        for task in tasks:
            if (task.pending and not task.running
                    and not self.parking.has_idle(task_worker_key(task))):
                return task if self.parking.room() else None
        return None

    def ahead(self, cores: list[int]) -> tuple[list[int], int | None]:
        """The first workers that fit, widest first (the order `order` gives their tasks);
        a background worker's server where they do not all fit."""
        ordered = widest_first(range(len(cores)), lambda index: cores[index])
        busy, chosen = 0, []
        for index in ordered:
            busy += cores[index]
            if busy > self.budget.jobs:
                break
            chosen.append(index)
        narrow = [index for index in ordered if cores[index] == 1]
        wanted = self.backfill and busy > self.budget.jobs and narrow
        return chosen, narrow[0] if wanted else None
