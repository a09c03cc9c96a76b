"""Drive one worker: wait until it is ready, hand it its task's units one at a time, read its
events against deadlines, and fail what it leaves undone.

A unit that outlives its timeout becomes `timeout`; one whose worker dies, says it cannot
go on, or writes something that is no event of the protocol (audit.run.pool.events)
becomes `crashed`, and the worker is not given another (the pool starts a fresh one for
the units left, unless it died before running anything: see `WorkerSession.fail`).
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from audit.run.pool import priority
from audit.run.pool.budget import CoreBudget
from audit.run.pool.child import Child
from audit.run.pool.estimates import Estimates
from audit.run.pool.events import Fatal, Finished, ProtocolError, Ready, Started
from audit.run.pool.forkserver import ForkServers
from audit.run.pool.parking import Parking, task_worker_key
from audit.run.pool.task import Job, Task

STARTUP_GRACE = 120.0  # seconds a child may take to import torch and load scenarios
Failure = tuple[str, str]  # (status, message) of a unit that did not end


@dataclass
class Shared:
    """What the worker threads of one pool share; read and written under `lock`."""

    lock: threading.Condition
    budget: CoreBudget
    estimates: Estimates
    parking: Parking
    servers: ForkServers  # workers forked from a process that imported torch
    active: set[Child] = field(default_factory=set)  # workers at work now
    done: int = 0  # jobs of the run in progress that ended, and how many it has
    total: int = 0
    background_units: int = 0  # units background workers finished, for the summary
    # The pool is shutting down (an interrupted run): workers it kills are no finding.
    closing: bool = False

    def start_child(self, key: str, environ: dict[str, str], header: dict[str, Any],
                    background: bool = False) -> Child:
        """A new worker (forked where a server can): it imports while the caller goes on."""
        child = Child(key, environ, header, self.servers)
        child.background = background
        return child

    def finish(self, task: Task, child: Child, job: Job, event: Finished) -> None:
        """A job of `task` ran to its end in `child` (under the lock)."""
        child.ran += 1
        task.finished += 1
        self.done += 1
        self.background_units += child.background
        # Traced and background runs are slower: not a guide.
        if job.trace_key is None and not child.background:
            self.estimates.unit_ran(job.unit.scenario.name, event.seconds)
        task.hooks.finished(job, event, child.effective or {})

    def fail(self, task: Task, jobs: list[Job], status: str, message: str,
             effective: dict[str, str]) -> None:
        """These jobs of `task` ended without a result (under the lock); not when the pool
        is closing: it killed their workers itself, and they run again on --resume."""
        if self.closing:
            return
        for job in jobs:
            self.done += 1
            task.hooks.failed(job, status, message, effective)

    def release(self, task: Task, background: bool = False) -> None:
        """A worker of `task` is done: its cores are free (under the lock)."""
        if background:
            task.background -= 1
        else:
            task.running -= 1
        self.budget.worker_ended(task.cores, background)
        self.lock.notify_all()


def serve(shared: Shared, task: Task, background: bool = False) -> None:
    """A worker's thread: a parked worker or a new one takes jobs from the task's queue
    until it is empty or the worker fails (a fresh worker then takes the rest); then it
    is parked or closed, and its cores are free."""
    hooks = task.hooks
    with shared.lock:
        key = task_worker_key(task, background)
        child = shared.parking.take(key)
        if child is None:
            environ, header = hooks.child_environ(task.combo), hooks.child_header(task.combo)
            if background:
                environ = priority.background_environ(environ)
    try:
        if child is None:
            child = shared.start_child(key, environ, header, background)
        with shared.lock:
            shared.active.add(child)
            closing = shared.closing  # started as the pool closed: nothing to do
        if closing:
            child.kill()
        keep = not closing and WorkerSession(shared, task, child).work()
    except Exception as error:  # noqa: BLE001 - a bug here must not loop forever
        if child is not None:
            child.kill()
        with shared.lock:  # the task's units are failed, not retried by a fresh worker
            shared.fail(task, list(task.pending), "crashed",
                        f"runner failed: {type(error).__name__}: {error}", {})
            task.pending.clear()
            shared.active.discard(child)
            shared.release(task, background)
        return
    with shared.lock:
        shared.active.discard(child)
        parked = keep and shared.parking.accepts(child)
        if parked:
            shared.parking.add(key, child)
        shared.release(task, background)
    if keep and not parked:
        child.close()


class Deadline:
    """When a worker must have said something. A background worker's deadline moves on by
    the time a wide worker ran meanwhile: it may get no cycles at all then."""

    def __init__(self, shared: Shared, seconds: float, background: bool) -> None:
        self.shared = shared
        self.background = background
        self.at = time.monotonic() + seconds
        with shared.lock:
            self.counted = shared.budget.shadowed()  # the time wide workers ran, as known

    def restart(self, seconds: float) -> None:
        """`seconds` from now (the unit started)."""
        self.at = time.monotonic() + seconds
        with self.shared.lock:
            self.counted = self.shared.budget.shadowed()

    def extended(self) -> bool:
        """Past it: whether a background worker's deadline moved on (a wide worker ran)."""
        if not self.background:
            return False
        with self.shared.lock:
            now = self.shared.budget.shadowed()
        extra, self.counted = now - self.counted, now
        if extra > 0.01:
            self.at += extra
            return True
        return False


def unexpected(event: Any, when: str) -> Failure:
    """Why a unit fails on an event that is not the one due: the worker gave up (fatal),
    or broke the protocol."""
    if isinstance(event, Fatal):
        return "crashed", f"worker failed: {event.error}"
    return "crashed", f"worker broke the protocol: {event.name!r} event {when}"


class WorkerSession:
    """One worker serving one task, from its ready event to the end of its last unit."""

    def __init__(self, shared: Shared, task: Task, child: Child) -> None:
        self.shared = shared
        self.lock = shared.lock
        self.task = task
        self.child = child

    def work(self) -> bool:
        """Run the task's jobs in the child; True when it is still healthy (its queue ran
        dry); a background worker also stops once no wide worker runs."""
        child, task, budget = self.child, self.task, self.shared.budget
        if child.effective is None:
            failure = self.wait_ready()
            if failure is not None:
                self.fail(None, False, *failure)
                return False
        while True:
            with self.lock:
                if self.shared.closing:
                    return False
                if not task.pending or (child.background and not budget.wide):
                    return True
                job = task.pending.popleft()
                if child.background:
                    budget.background_unit_started()
            try:
                if not child.send(job.message()):
                    self.fail(job, False, "crashed", child.exit_message())
                    return False
                started, failure = self.run_job(job)
                if failure is not None:
                    self.fail(job, started, *failure)
                    return False
            finally:
                if child.background:
                    with self.lock:
                        budget.background_unit_ended()
                        self.lock.notify_all()

    def wait_ready(self) -> Failure | None:
        """Wait for the child's ready event; None once it came, else why it did not."""
        child = self.child
        try:
            event = child.event(time.monotonic() + STARTUP_GRACE)
        except queue.Empty:
            child.kill()
            return "crashed", f"worker did not start within {STARTUP_GRACE:.0f} s"
        except ProtocolError as error:
            child.kill()
            return "crashed", f"worker broke the protocol: {error}"
        if event is None:
            return "crashed", child.exit_message()
        if not isinstance(event, Ready):
            child.kill()
            return unexpected(event, "before 'ready'")
        child.effective = dict(event.effective)
        with self.lock:
            self.shared.estimates.worker_started(time.monotonic() - child.spawned)
            self.task.hooks.ready(event)
        return None

    def run_job(self, job: Job) -> tuple[bool, Failure | None]:
        """One job to its end: whether it started, and None when it finished, else
        (status, message)."""
        child, hooks = self.child, self.task.hooks
        timeout = hooks.timeout_of(job)
        deadline = Deadline(self.shared, STARTUP_GRACE, child.background)
        started = False
        while True:
            try:
                event = child.event(deadline.at)
            except queue.Empty:
                if deadline.extended():
                    continue
                child.kill()
                if not started:
                    return False, ("crashed", f"worker took no unit within {STARTUP_GRACE:.0f} s")
                return True, ("timeout", f"no result within {timeout:g} s")
            except ProtocolError as error:
                child.kill()
                return started, ("crashed", f"worker broke the protocol: {error}")
            if event is None:
                return started, ("crashed", child.exit_message())
            if (breach := foreign_unit(event, job)) is not None:
                child.kill()
                return started, ("crashed", breach)
            if isinstance(event, Started):
                started = True
                deadline.restart(timeout)
                with self.lock:
                    hooks.started(job, self.shared.done, self.shared.total)
            elif isinstance(event, Finished):
                with self.lock:
                    self.shared.finish(self.task, child, job, event)
                return True, None
            else:
                child.kill()
                return started, unexpected(event, "during a unit")

    def fail(self, job: Job | None, started: bool, status: str, message: str) -> None:
        """The job that was running failed. A worker that died before it ran anything
        takes every job still queued for its task with it (a fresh one would fail the same
        way), unless another worker of the task is at work."""
        child, task = self.child, self.task
        child.kill()
        with contextlib.suppress(OSError, ValueError):
            child.stderr.close()
        with self.lock:
            victims = [job] if job is not None else []
            if (child.ran == 0 and not started and status == "crashed" and task.running == 1
                    and not child.background):
                victims += list(task.pending)
                task.pending.clear()
            self.shared.fail(task, victims, status, message, child.effective or {})


def foreign_unit(event: Any, job: Job) -> str | None:
    """Why `event` is about a unit the worker was not given (one a scenario wrote into its
    stdin), or None."""
    if isinstance(event, (Started, Finished)) and event.unit != job.message()["id"]:
        return (f"worker broke the protocol: {event.name!r} event for unit {event.unit} "
                "during another unit")
    return None
