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
checked (audit.run.runner.Runner.settings_in_effect). tests/e2e/test_parallel.py checks that the
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
from audit.run.pool.child import close_all
from audit.run.pool.estimates import Estimates
from audit.run.pool.forkserver import ForkServers
from audit.run.pool.parking import Parking, task_worker_key, worker_key
from audit.run.pool.scheduler import Scheduler, WidestFirst
from audit.run.pool.session import Shared, serve
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
        self.shared = Shared(threading.Condition(), self.budget, Estimates(), Parking(park),
                             ForkServers())
        self.lock = self.shared.lock
        # A background worker beside wide ones (audit.run.pool.priority); not with --jobs 1.
        backfill = (priority.supported() if backfill is None else backfill) and self.jobs > 1
        self.scheduler: Scheduler = WidestFirst(self.budget, self.shared.estimates,
                                                self.shared.parking, backfill)
        self.threads: list[threading.Thread] = []

    @property
    def backfill(self) -> bool:
        """Whether background workers run beside wide ones."""
        return self.scheduler.backfill

    @property
    def background_units(self) -> int:
        """Units background workers finished (every run so far), for the summary."""
        return self.shared.background_units

    def run(self, tasks: list[Task]) -> None:
        """Every job of every task, side by side where the cores allow; returns when done."""
        tasks = self.scheduler.order(tasks)
        shared = self.shared
        shared.closing = False  # (a pool closed before is open again)
        shared.servers.expect(task.hooks.child_environ(task.combo) for task in tasks
                              if task.pending)
        shared.done, shared.total = 0, sum(len(task.pending) for task in tasks)
        wanted = {task_worker_key(task) for task in tasks if task.pending}
        with self.lock:
            close_all(shared.parking.keep_only(wanted))  # parked workers no task will use
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
        """A worker for `task`, counted now, driven by a thread of its own (session.serve)."""
        task.started += 1
        if background:
            task.background += 1
        else:
            task.running += 1
        self.budget.worker_started(task.cores, background)
        thread = threading.Thread(target=serve, args=(self.shared, task, background),
                                  daemon=True)
        self.threads.append(thread)
        thread.start()

    def start_ahead(self, workers: list[Ahead]) -> None:
        """Start the workers of the first tasks a run will have (those the scheduler
        picks) before the caller has planned it: both then import at once. `workers`:
        one for every process combination the run will have."""
        self.shared.servers.expect(environ for _, environ, _ in workers)
        chosen, server = self.scheduler.ahead([cores_of(combo, self.jobs)
                                               for combo, _, _ in workers])
        for index in chosen:
            with self.lock:
                self.park_new(*workers[index])
        if server is not None:  # the background worker's
            self.shared.servers.start(workers[server][1])

    def park_new(self, combo: dict[str, str], environ: dict[str, str],
                 header: dict[str, Any]) -> None:
        """Start a worker now for a task of `combo` that is to come, parked till then."""
        key = worker_key(combo, header)
        self.shared.parking.add(key, self.shared.start_child(key, environ, header),
                                warming=True)

    def close(self) -> None:
        """Close every parked worker; kill those still at work (an interrupted run)."""
        shared = self.shared
        with self.lock:
            shared.closing = True
            parked = shared.parking.clear()
            active, shared.active = list(shared.active), set()
        for child in active:
            child.kill()
        close_all(parked)
        shared.servers.close()
        for thread in self.threads:  # none reports a unit once the caller goes on
            thread.join(timeout=60)
        self.threads = []

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()
