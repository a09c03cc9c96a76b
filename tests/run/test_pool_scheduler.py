"""What starts next (audit.run.pool.scheduler.WidestFirst), decided on books kept by hand."""

from __future__ import annotations

from collections import deque
from typing import Any

from audit.run.pool.budget import CoreBudget
from audit.run.pool.estimates import FIRST_GUESS_SECONDS, Estimates
from audit.run.pool.parking import MAX_PARKED, Parking, task_worker_key
from audit.run.pool.scheduler import Start, WidestFirst
from audit.run.pool.task import Job, Task


class Unit:
    def __init__(self, scenario: str) -> None:
        self.scenario = type("Scenario", (), {"name": scenario})()


class Hooks:
    """Only what the scheduler asks of a task's runner: the job line (for worker keys)."""

    def child_header(self, combo: dict[str, str]) -> dict[str, Any]:
        return {"process_settings": combo}


def task(name: str, cores: int, units: int, scenario: str = "s") -> Task:
    jobs = deque(Job(Unit(scenario)) for _ in range(units))
    return Task({"name": name, "threads": str(cores)}, jobs, cores, Hooks())  # type: ignore[arg-type]


class Books:
    """A scheduler and the books it reads; `start` counts a worker as the pool would."""

    def __init__(self, jobs: int, backfill: bool = False) -> None:
        self.budget = CoreBudget(jobs)
        self.estimates = Estimates()
        self.parking = Parking()
        self.scheduler = WidestFirst(self.budget, self.estimates, self.parking, backfill)

    def start(self, start: Start | None) -> Task:
        assert start is not None
        if start.background:
            start.task.background += 1
        else:
            start.task.running += 1
        self.budget.worker_started(start.task.cores, start.background)
        return start.task

    def started_until_full(self, tasks: list[Task]) -> list[str]:
        names = []
        while (start := self.scheduler.next_start(tasks)) is not None:
            names.append(self.start(start).combo["name"] + (" bg" if start.background else ""))
        return names


def test_tasks_are_offered_cores_widest_first_in_their_order() -> None:
    books = Books(4)
    tasks = [task("a", 1, 3), task("b", 2, 3), task("c", 1, 3), task("d", 4, 3)]
    assert [t.combo["name"] for t in books.scheduler.order(tasks)] == ["d", "b", "a", "c"]


def test_every_task_gets_its_first_worker_widest_first_while_cores_fit() -> None:
    books = Books(4)
    tasks = books.scheduler.order([task("a", 1, 3), task("b", 2, 3), task("c", 1, 3)])
    assert books.started_until_full(tasks) == ["b", "a", "c"]
    assert books.budget.free() == 0


def test_a_narrower_task_never_takes_the_cores_a_wider_one_waits_for() -> None:
    books = Books(2)
    running = task("a", 1, 5)
    books.start(Start(running))
    tasks = [task("wide", 2, 5), task("narrow", 1, 5), running]
    assert books.scheduler.next_start(tasks) is None  # one core free: "narrow" would fit


def test_a_helper_goes_to_the_task_with_most_work_left_when_worth_a_start_up() -> None:
    books = Books(3)
    small, big = task("small", 1, 2, "quick"), task("big", 1, 10, "slow")
    books.start(Start(small))
    books.start(Start(big))
    books.estimates.unit_ran("slow", 2.0)
    books.estimates.unit_ran("quick", 0.1)
    books.estimates.worker_started(1.0)
    # big: 10 units of 2 s > 2 * 1 s start-up + 1 s; small: 2 units of 0.1 s is not.
    assert books.scheduler.next_start([small, big]) == Start(big)
    assert books.scheduler.worth_helping(big) and not books.scheduler.worth_helping(small)


def test_without_measurements_a_helper_must_outweigh_the_first_guesses() -> None:
    books = Books(2)
    few = task("few", 1, 3)
    books.start(Start(few))
    assert 2 * books.estimates.startup() + 1.0 > 3 * FIRST_GUESS_SECONDS
    assert books.scheduler.next_start([few]) is None


def test_a_parked_worker_helps_whenever_two_units_are_left() -> None:
    books = Books(2)
    few = task("few", 1, 2)
    books.start(Start(few))
    books.parking.add(task_worker_key(few), object())  # type: ignore[arg-type]
    assert books.scheduler.next_start([few]) == Start(few)
    few.pending.pop()
    assert books.scheduler.next_start([few]) is None  # one unit: its own worker takes it


def test_a_background_worker_runs_beside_a_wide_worker_only() -> None:
    books = Books(2, backfill=True)
    wide, short, long = task("wide", 2, 4), task("short", 1, 2), task("long", 1, 6)
    tasks = [wide, short, long]
    # The wide task takes every core; beside it one background worker, for the one-core
    # task with most work left; no second one.
    assert books.started_until_full(tasks) == ["wide", "long bg"]
    assert books.budget.background == 1
    books.budget.worker_ended(2)  # the wide worker ends
    wide.running -= 1
    wide.pending.clear()
    # A background worker stops once no wide worker runs: both get workers of their own.
    assert books.started_until_full(tasks) == ["short", "long"]


def test_no_background_worker_when_backfill_is_off_or_no_wide_worker_runs() -> None:
    books = Books(2, backfill=False)
    tasks = [task("wide", 2, 4), task("narrow", 1, 4)]
    assert books.started_until_full(tasks) == ["wide"]
    books = Books(2, backfill=True)
    tasks = [task("a", 1, 4), task("b", 1, 4), task("c", 1, 4)]
    assert books.started_until_full(tasks) == ["a", "b"]  # no wide worker: none beside


def test_the_next_waiting_task_gets_a_worker_started_ahead_one_at_a_time() -> None:
    books = Books(2)
    first, second, third = task("first", 2, 2), task("second", 2, 2), task("third", 1, 2)
    tasks = [first, second, third]
    books.start(Start(first))
    assert books.scheduler.next_ahead(tasks) is second
    books.parking.add(task_worker_key(second), object(), warming=True)  # type: ignore[arg-type]
    assert books.scheduler.next_ahead(tasks) is None  # one warming at a time
    books.parking.take(task_worker_key(second))
    books.parking.add(task_worker_key(second), object())  # type: ignore[arg-type]
    assert books.scheduler.next_ahead(tasks) is third  # second has an idle worker


def test_no_worker_is_started_ahead_when_parking_is_full() -> None:
    books = Books(1)
    running, waiting = task("running", 1, 2), task("waiting", 1, 2)
    books.start(Start(running))
    for _ in range(MAX_PARKED):
        books.parking.add("someone else", object())  # type: ignore[arg-type]
    assert books.scheduler.next_ahead([running, waiting]) is None


def test_before_a_run_is_planned_the_workers_that_fit_start_widest_first() -> None:
    books = Books(4, backfill=True)
    # cores of each task's worker, in the order the run lists them
    # All four would need 5 cores: the first three start, and the server of the first
    # one-core task's (the background worker's, should a wide worker leave room).
    assert books.scheduler.ahead([1, 2, 1, 1]) == ([1, 0, 2], 0)
    assert books.scheduler.ahead([1, 4, 2, 1]) == ([1], 0)  # 4 alone; a background server
    assert books.scheduler.ahead([2, 2]) == ([0, 1], None)  # all fit: nothing beside
    assert books.scheduler.ahead([4, 2]) == ([0], None)  # nothing one-core to run beside
    books.scheduler.backfill = False
    assert books.scheduler.ahead([1, 4, 2, 1]) == ([1], None)
