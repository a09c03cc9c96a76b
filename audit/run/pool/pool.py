"""Worker processes side by side, as many as the cores allow, none changing another's results.

A *task* is one process-settings combination and the queue of its units (audit.run.runner).
Its workers are children with that combination in their environment, forked from a fork
server that has imported torch (audit.run.pool.forkserver) or started as
`python -m audit.run.worker`;
each takes the next unit of its task's queue when it is free, so one worker serves every
run-settings combination of its process combination, and a second worker of the same task
can share the queue when cores are free and enough work is left.

Cores: a task's workers each use as many cores as its `threads` setting says (all of them
when threads is not chosen: torch then starts one thread per core). Workers run at once
only while their cores add up to at most `jobs`; a task that uses all cores runs alone.
Results do not depend on what runs beside a worker: every worker is its own process with
its settings fixed at start-up, and the thread count it really used is read back and
checked (audit.run.runner.Runner.settings_in_effect). tests/test_parallel.py checks that the
digests of a parallel run equal those of a serial one.

`Pool` is the controller: its loop asks the scheduler what starts next
(audit.run.pool.scheduler), keeps the books of cores (audit.run.pool.budget), gives each
worker a thread of its own that drives it (audit.run.pool.session), and parks the workers a
later run may reuse (audit.run.pool.parking).
"""

from __future__ import annotations

import threading
from typing import Any

from audit.run.pool import priority
from audit.run.pool.budget import CoreBudget, available_cores, cores_of
from audit.run.pool.child import Child, close_all
from audit.run.pool.estimates import Estimates
from audit.run.pool.forkserver import ForkServers
from audit.run.pool.parking import Parking, task_worker_key, worker_key
from audit.run.pool.scheduler import Scheduler, WidestFirst, widest_first
from audit.run.pool.session import Shared, WorkerSession, start_child
from audit.run.pool.task import Task

# One worker to start ahead: its process combination, environment and job line.
Ahead = tuple[dict[str, str], dict[str, str], dict[str, Any]]


class Pool:
    """Runs tasks with at most `jobs` cores busy; keeps idle workers parked when `park`.

    The tasks of one `run` may belong to several runners (a run's products, each with its
    hooks), so that they all share the cores; a later `run` (the trace pass) reuses a
    parked worker for a task of the same combination and job line.
    """

    def __init__(self, jobs: int | None = None, park: bool = False,
                 backfill: bool | None = None) -> None:
        self.jobs = max(1, jobs or available_cores())
        self.budget = CoreBudget(self.jobs)
        self.shared = Shared(threading.Condition(), self.budget, Estimates())
        self.lock = self.shared.lock
        self.parking = Parking(park)
        # A background worker beside wide ones (audit.run.pool.priority); not with --jobs 1.
        backfill = (priority.supported() if backfill is None else backfill) and self.jobs > 1
        self.scheduler: Scheduler = WidestFirst(self.budget, self.shared.estimates,
                                                self.parking, backfill)
        self.active: set[Child] = set()  # workers at work now
        self.threads: list[threading.Thread] = []
        self.servers = ForkServers()  # workers forked from a process that imported torch

    @property
    def backfill(self) -> bool:
        """Whether background workers run beside wide ones."""
        return self.scheduler.backfill

    @backfill.setter
    def backfill(self, value: bool) -> None:
        self.scheduler.backfill = value

    @property
    def done(self) -> int:
        """Jobs of the run in progress that ended."""
        return self.shared.done

    @property
    def total(self) -> int:
        """Jobs of the run in progress."""
        return self.shared.total

    @property
    def background_units(self) -> int:
        """Units background workers finished (every run so far), for the summary."""
        return self.shared.background_units

    @background_units.setter
    def background_units(self, value: int) -> None:
        self.shared.background_units = value

    # --- the controller loop --------------------------------------------------------------

    def run(self, tasks: list[Task]) -> None:
        """Every job of every task, side by side where the cores allow; returns when done."""
        tasks = self.scheduler.order(tasks)
        self.servers.expect(task.hooks.child_environ(task.combo) for task in tasks
                            if task.pending)
        self.shared.done = 0
        self.shared.total = sum(len(task.pending) for task in tasks)
        wanted = {task_worker_key(task) for task in tasks if task.pending}
        with self.lock:
            close_all(self.parking.keep_only(wanted))  # parked workers no task will use
            while True:
                self.start_what_fits(tasks)
                if not any(task.pending or task.running or task.background for task in tasks):
                    break
                self.lock.wait(timeout=1.0)
        for thread in self.threads:
            thread.join()
        self.threads = [thread for thread in self.threads if thread.is_alive()]

    def start_what_fits(self, tasks: list[Task]) -> None:
        """Start every worker the scheduler says fits now, then one ahead of its task."""
        while True:
            start = self.scheduler.next_start(tasks)
            if start is None:
                break
            self.start(start.task, start.background)
        ahead = self.scheduler.next_ahead(tasks)
        if ahead is not None:
            self.park_new(ahead.combo, ahead.hooks.child_environ(ahead.combo),
                          ahead.hooks.child_header(ahead.combo))

    def start(self, task: Task, background: bool = False) -> None:
        task.started += 1
        if background:
            task.background += 1
        else:
            task.running += 1
        self.budget.worker_started(task.cores, background)
        thread = threading.Thread(target=self.serve, args=(task, background), daemon=True)
        self.threads.append(thread)
        thread.start()

    def release(self, task: Task, background: bool = False) -> None:
        if background:
            task.background -= 1
        else:
            task.running -= 1
        self.budget.worker_ended(task.cores, background)
        self.lock.notify_all()

    def start_ahead(self, workers: list[Ahead]) -> None:
        """Start the workers of the first tasks a run will have (as many as their cores
        fit, in the scheduler's order) before the caller has planned it: both then import
        at once. `workers`: every process combination the run will have."""
        self.servers.expect(environ for _, environ, _ in workers)
        busy = 0
        ordered = widest_first(workers, lambda worker: cores_of(worker[0], self.jobs))
        for combo, environ, header in ordered:
            busy += cores_of(combo, self.jobs)
            if busy > self.jobs:
                break
            with self.lock:
                self.park_new(combo, environ, header)
        narrow = [environ for combo, environ, _ in ordered if cores_of(combo, self.jobs) == 1]
        if self.backfill and busy > self.jobs and narrow:  # the background worker's server
            self.servers.start(narrow[0])

    def park_new(self, combo: dict[str, str], environ: dict[str, str],
                 header: dict[str, Any]) -> None:
        """Start a worker now for a task of `combo` that is to come, parked till then."""
        key = worker_key(combo, header)
        self.parking.add(key, start_child(key, environ, header, self.servers), warming=True)

    # --- one worker's thread --------------------------------------------------------------

    def serve(self, task: Task, background: bool = False) -> None:
        """A worker's thread: a parked worker or a new one takes jobs from the task's queue
        until it is empty or the worker fails (a fresh worker then takes the rest); then
        it is parked or closed, and its cores are free."""
        hooks = task.hooks
        with self.lock:
            key = task_worker_key(task, background)
            child = self.parking.take(key)
            if child is None:
                environ, header = hooks.child_environ(task.combo), hooks.child_header(task.combo)
                if background:
                    environ = priority.background_environ(environ)
        try:
            if child is None:
                child = start_child(key, environ, header, self.servers, background)
            with self.lock:
                self.active.add(child)
            keep = WorkerSession(self.shared, task, child).work()
        except Exception as error:  # noqa: BLE001 - a bug here must not loop forever
            if child is not None:
                child.kill()
            with self.lock:  # the task's units are failed, not retried by a fresh worker
                for job in list(task.pending):
                    self.shared.done += 1
                    hooks.failed(job, "crashed", f"runner failed: {type(error).__name__}: "
                                 f"{error}", {})
                task.pending.clear()
                self.active.discard(child)
                self.release(task, background)
            return
        with self.lock:
            self.active.discard(child)
            parked = keep and self.parking.accepts(child)
            if parked:
                self.parking.add(key, child)
            self.release(task, background)
        if keep and not parked:
            child.close()

    def close(self) -> None:
        """Close every parked worker; kill those still at work (an interrupted run)."""
        with self.lock:
            parked = self.parking.clear()
            active, self.active = list(self.active), set()
        for child in active:
            child.kill()
        close_all(parked)
        self.servers.close()

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()
