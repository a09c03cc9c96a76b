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

A worker whose queue is empty can be *parked* (kept alive, idle) instead of closed, so
that the trace pass after the audit (audit.run.runner.Runner.trace) reuses it instead of
paying for another start-up (importing torch takes seconds). Only a worker started fresh
is parked: a fork server forks another in milliseconds, and forked workers kept parked
slowed the audit's own units by a fifth (measured: 10 workers of 0.7 to 0.9 GB each kept
through the audit, its pool.run 41-43 s instead of 34-36 s, system time 20 s instead of
10 s; the cause in the kernel was not pinned down).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable

from audit.run.pool import priority
from audit.run.pool.forkserver import ForkedProcess, ForkServers

STARTUP_GRACE = 120.0  # seconds a child may take to import torch and load scenarios
MAX_PARKED = 12  # idle workers kept for a later pass (each holds an imported torch)
PARK_MEMORY_FREE = 2 * 1024**3  # bytes left available for a worker to be parked
FIRST_GUESS_SECONDS = 0.5  # a unit's expected run time before any has been measured


def available_cores() -> int:
    """Cores this process may use (its affinity where the OS tells, else the CPU count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def memory_available() -> int | None:
    """Bytes of memory available now (Linux: MemAvailable), None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as stream:
            for line in stream:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def combo_key(combo: dict[str, str]) -> str:
    return json.dumps(combo, sort_keys=True)


@dataclass
class Job:
    """One unit handed to a worker: audited (two runs) or, with a trace key, traced once."""

    unit: Any  # audit.run.runner.Unit
    trace_key: str | None = None

    def message(self) -> dict[str, Any]:
        job = self.unit.job()
        if self.trace_key is not None:
            job["trace_only"] = True
        return job


@dataclass
class Task:
    """The units of one process-settings combination still to run, and who runs them."""

    combo: dict[str, str]
    pending: deque[Job]
    cores: int  # cores each of its workers uses
    hooks: Hooks  # the runner it belongs to (tasks of several runners share one pool)
    running: int = 0  # workers holding cores now
    background: int = 0  # background workers serving it now (they hold no cores)
    started: int = 0  # workers started for it, ever
    finished: int = 0  # units that ran to the end

    @property
    def key(self) -> str:
        return combo_key(self.combo)


def cores_of(combo: dict[str, str], jobs: int) -> int:
    """Cores a worker of `combo` uses: its thread count, at most `jobs` (all when unset)."""
    threads = combo.get("threads")
    if threads is None or not str(threads).isdigit():
        return jobs
    return max(1, min(int(threads), jobs))


class Child:
    """One worker process: the job line sent at start, units sent one at a time, events read
    by a thread of its own into a queue (None when its output closes).

    The process is forked by a fork server of the pool (audit.run.pool.forkserver) where one can
    serve it, else started fresh (`python -m audit.run.worker`). Either way that happens in the
    child's own thread, so that creating a Child never waits for a server that is still
    importing torch; whatever touches the process waits until it exists."""

    def __init__(self, task_key: str, environ: dict[str, str], header: dict[str, Any],
                 servers: ForkServers | None = None) -> None:
        self.task_key = task_key
        self.stderr: IO[bytes] = tempfile.TemporaryFile(mode="w+b")  # noqa: SIM115
        self.events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.effective: dict[str, str] | None = None  # process settings, from "ready"
        self.ran = 0  # units it finished
        self.spawned = time.monotonic()
        self.forked = False  # whether a fork server started it
        self.background = False  # whether it runs at idle priority (audit.run.pool.priority)
        self._process: subprocess.Popen[bytes] | ForkedProcess | None = None
        self._launched = threading.Event()
        threading.Thread(target=self._launch, args=(environ, header, servers),
                         daemon=True).start()

    def _launch(self, environ: dict[str, str], header: dict[str, Any],
                servers: ForkServers | None) -> None:
        try:
            forked = servers.spawn(environ, self.stderr) if servers is not None else None
            self.forked = forked is not None
            self._process = forked or subprocess.Popen(
                [sys.executable, "-m", "audit.run.worker"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=self.stderr, env=environ)
        except Exception as error:  # noqa: BLE001 - reported as the worker's failure
            self.events.put({"event": "fatal", "error": f"worker not started: {error}"})
            self.events.put(None)
            return
        finally:
            self._launched.set()
        self.send(header)
        assert self._process.stdout is not None
        _read_events(self._process.stdout, self.events)

    @property
    def process(self) -> subprocess.Popen[bytes] | ForkedProcess | None:
        """The worker process, once started (None: it could not be)."""
        self._launched.wait()
        return self._process

    def send(self, message: dict[str, Any]) -> bool:
        """Write one line to the child; False when it is gone."""
        try:
            process = self.process
            assert process is not None and process.stdin is not None
            process.stdin.write(json.dumps(message).encode() + b"\n")
            process.stdin.flush()
        except (AssertionError, BrokenPipeError, OSError, ValueError):
            return False
        return True

    def event(self, deadline: float) -> dict[str, Any] | None:
        """The next event; None when the child closed its output; queue.Empty past deadline."""
        return self.events.get(timeout=max(0.01, deadline - time.monotonic()))

    def close(self, wait: bool = True) -> None:
        """No more units: the worker finishes and exits (`wait`: wait for it, see `reap`)."""
        process = self.process
        with contextlib.suppress(OSError, ValueError):
            if process is not None and process.stdin is not None:
                process.stdin.close()
        if wait:
            self.reap()

    def reap(self) -> None:
        process = self.process
        try:
            if process is not None:
                process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.kill()
        self.stderr.close()

    def kill(self) -> None:
        process = self.process
        if process is None:
            return
        process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=30)

    def exit_message(self) -> str:
        """'worker exited with code N: <last line of its stderr>' (after it ended)."""
        process = self.process
        code = process.wait() if process is not None else "none (not started)"
        self.stderr.seek(0)
        tail = self.stderr.read()[-2000:].decode("utf-8", "replace").strip()
        last_line = tail.splitlines()[-1] if tail else ""
        return f"worker exited with code {code}" + (f": {last_line}" if last_line else "")


def _read_events(stream: Any, events: queue.Queue[dict[str, Any] | None]) -> None:
    for line in stream:
        try:
            events.put(json.loads(line))
        except ValueError:
            continue  # not a protocol line: ignore
    events.put(None)


@dataclass
class Hooks:
    """What the pool calls back (under its lock, so one at a time): audit.run.runner.Runner."""

    environ: Callable[[dict[str, str]], dict[str, str]]  # child environment of a combination
    header: Callable[[dict[str, str]], dict[str, Any]]  # the job line of a combination
    started: Callable[[Job], None]  # a unit started
    finished: Callable[[Job, dict[str, Any], dict[str, str]], None]  # event, process effective
    failed: Callable[[Job, str, str, dict[str, str]], None]  # status, message, effective
    ready: Callable[[dict[str, Any]], None] = field(default=lambda event: None)
    timeout_of: Callable[[Job], float] = field(default=lambda job: 300.0)


class Pool:
    """Runs tasks with at most `jobs` cores busy; keeps idle workers parked when `park`.

    The tasks of one `run` may belong to several runners (a run's products, each with its
    hooks), so that they all share the cores; a later `run` (the trace pass) reuses a
    parked worker for a task of the same combination and job line.
    """

    def __init__(self, jobs: int | None = None, park: bool = False,
                 backfill: bool | None = None) -> None:
        self.done = 0  # jobs of the run in progress that ended, and how many it has
        self.total = 0
        self.jobs = max(1, jobs or available_cores())
        self.park = park
        # A background worker beside wide ones (audit.run.pool.priority); not with --jobs 1.
        self.backfill = (priority.supported() if backfill is None else backfill) \
            and self.jobs > 1
        self.lock = threading.Condition()
        self.busy = 0  # cores held by running workers
        self.wide = 0  # running workers that use more than one core
        self.background = 0  # background workers alive, and those running a unit now
        self.background_running = 0
        self.background_units = 0  # units background workers finished, for the summary
        self.shadow = (0.0, None)  # (seconds wide workers ran, since when one runs now)
        self.parked: dict[str, list[Child]] = {}
        self.warming: set[str] = set()  # keys of parked workers started ahead (prespawn)
        self.active: set[Child] = set()  # workers at work now
        self.seconds: dict[str, list[float]] = {}  # scenario -> measured unit seconds
        self.startups: list[float] = []  # seconds from spawn to ready
        self.threads: list[threading.Thread] = []
        self.servers = ForkServers()  # workers forked from a process that imported torch

    # --- the scheduler --------------------------------------------------------------------

    def run(self, tasks: list[Task]) -> None:
        """Every job of every task, side by side where the cores allow; returns when done."""
        # Wide tasks first, each alone with a background worker beside it; the one-core
        # tasks then pack the cores to the end (a fine-grained tail).
        tasks = sorted(tasks, key=lambda task: -task.cores)
        self.servers.expect(task.hooks.environ(task.combo) for task in tasks if task.pending)
        self.done, self.total = 0, sum(len(task.pending) for task in tasks)
        wanted = {self.parking_key(task) for task in tasks if task.pending}
        with self.lock:
            unused = [child for key in list(self.parked) if key not in wanted
                      for child in self.parked.pop(key)]
            close_all(unused)  # parked workers no task will use
            self.warming &= set(self.parked)
            while True:
                self.start_what_fits(tasks)
                if not any(task.pending or task.running or task.background for task in tasks):
                    break
                self.lock.wait(timeout=1.0)
        for thread in self.threads:
            thread.join()
        self.threads = [thread for thread in self.threads if thread.is_alive()]

    def start_what_fits(self, tasks: list[Task]) -> None:
        """Start workers while their cores fit: the first worker of each task, widest first
        (a narrower one never takes the cores a wider one waits for); once every task has
        one, a helper for the task with most work left, when that work outweighs a
        start-up; beside a wide worker, a background one."""
        while True:
            free = self.free_cores()
            waiting = [task for task in tasks if task.pending and not task.running]
            if waiting:
                if waiting[0].cores <= free:
                    self.start(waiting[0])
                    continue
            else:
                helped = [task for task in tasks if task.pending and task.running
                          and task.cores <= free and self.worth_helping(task)]
                if helped:
                    self.start(max(helped, key=self.work_left))
                    continue
            self.start_background(tasks)
            self.prespawn(tasks)
            return

    def free_cores(self) -> int:
        """Cores no worker holds. A background worker holds none while a wide worker runs
        (it takes only what that one leaves idle), but the one it is running a unit on
        once none does, until the unit ends: then it stops."""
        shadowed = self.background_running if not self.wide else 0
        return self.jobs - self.busy - shadowed

    def start_background(self, tasks: list[Task]) -> None:
        """While a wide worker runs, one background worker for the one-core task with most
        work left (audit.run.pool.priority): it takes units only while a wide worker runs."""
        if not self.backfill or not self.wide or self.background:
            return
        narrow = [task for task in tasks if task.pending and task.cores == 1]
        if narrow:
            self.start(max(narrow, key=self.work_left), background=True)

    def shadowed(self) -> float:
        """Seconds during which a wide worker ran, so far (a background unit's time then
        does not count against its timeout: it may get no cycles at all)."""
        total, since = self.shadow
        return total + (time.monotonic() - since if since is not None else 0.0)

    def spawn_ahead(self, combo: dict[str, str], environ: dict[str, str],
                    header: dict[str, Any]) -> None:
        """Start a worker now for a task of `combo` that a later `run` will have."""
        key = json.dumps([combo, header], sort_keys=True)  # as parking_key
        with self.lock:
            self.parked.setdefault(key, []).append(Child(key, environ, header, self.servers))
            self.warming.add(key)

    def prespawn(self, tasks: list[Task]) -> None:
        """Start the worker of the next task that waits for cores, so that it imports torch
        while the others run (a worker using two threads leaves a core idle much of the
        time) and starts work the moment cores free up. It runs no unit before it holds
        its cores: what runs beside a worker is only ever another process's import."""
        if self.warming:
            return
        for task in tasks:
            key = self.parking_key(task)
            if task.pending and not task.running and not self.parked.get(key):
                if sum(map(len, self.parked.values())) < MAX_PARKED:
                    child = Child(key, task.hooks.environ(task.combo),
                                  task.hooks.header(task.combo), self.servers)
                    self.parked.setdefault(key, []).append(child)
                    self.warming.add(key)
                return

    @staticmethod
    def parking_key(task: Task, background: bool = False) -> str:
        """Workers are interchangeable when started with the same environment and job line
        (and priority)."""
        key = json.dumps([task.combo, task.hooks.header(task.combo)], sort_keys=True)
        return f"{priority.BACKGROUND} {key}" if background else key

    def worth_helping(self, task: Task) -> bool:
        """A second worker halves the work left but costs a start-up (or none if parked)."""
        if self.parked.get(self.parking_key(task)):
            return len(task.pending) > 1
        startup = sum(self.startups) / len(self.startups) if self.startups else 5.0
        return self.work_left(task) > 2 * startup + 1.0

    def work_left(self, task: Task) -> float:
        measured = [s for values in self.seconds.values() for s in values]
        overall = sum(measured) / len(measured) if measured else FIRST_GUESS_SECONDS
        total = 0.0
        for job in task.pending:
            known = self.seconds.get(job.unit.scenario.name)
            total += sum(known) / len(known) if known else overall
        return total

    def start(self, task: Task, background: bool = False) -> None:
        task.started += 1
        if background:
            task.background += 1
            self.background += 1
        else:
            task.running += 1
            self.busy += task.cores
            if task.cores > 1:
                self.wide += 1
                if self.wide == 1:
                    self.shadow = (self.shadow[0], time.monotonic())
        thread = threading.Thread(target=self.serve, args=(task, background), daemon=True)
        self.threads.append(thread)
        thread.start()

    def release(self, task: Task, background: bool = False) -> None:
        if background:
            task.background -= 1
            self.background -= 1
        else:
            task.running -= 1
            self.busy -= task.cores
            if task.cores > 1:
                self.wide -= 1
                if self.wide == 0:
                    self.shadow = (self.shadowed(), None)
        self.lock.notify_all()

    def close(self) -> None:
        """Close every parked worker; kill those still at work (an interrupted run)."""
        with self.lock:
            parked, self.parked = self.parked, {}
            self.warming.clear()
            active, self.active = list(self.active), set()
        for child in active:
            child.kill()
        close_all([child for children in parked.values() for child in children])
        self.servers.close()

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    # --- one worker -----------------------------------------------------------------------

    def serve(self, task: Task, background: bool = False) -> None:
        """A worker's thread: take jobs from the task's queue until it is empty or the
        worker fails (a fresh worker then takes the rest); a background worker also stops
        once no wide worker runs."""
        hooks = task.hooks
        with self.lock:
            key = self.parking_key(task, background)
            idle = self.parked.get(key)
            child = idle.pop() if idle else None
            self.warming.discard(key)
            if child is None:
                environ, header = hooks.environ(task.combo), hooks.header(task.combo)
                if background:
                    environ = priority.background_environ(environ)
        try:
            if child is None:
                child = Child(key, environ, header, self.servers)
                child.background = background
            with self.lock:
                self.active.add(child)
            keep = self.work(task, child)
        except Exception as error:  # noqa: BLE001 - a bug here must not loop forever
            if child is not None:
                child.kill()
            with self.lock:  # the task's units are failed, not retried by a fresh worker
                for job in list(task.pending):
                    self.done += 1
                    hooks.failed(job, "crashed", f"runner failed: {type(error).__name__}: "
                                 f"{error}", {})
                task.pending.clear()
                self.active.discard(child)
                self.release(task, background)
            return
        with self.lock:
            self.active.discard(child)
            parked = (keep and self.park and not child.forked
                      and sum(map(len, self.parked.values())) < MAX_PARKED
                      and (memory_available() or PARK_MEMORY_FREE) >= PARK_MEMORY_FREE)
            if parked:
                self.parked.setdefault(key, []).append(child)
            self.release(task, background)
        if keep and not parked:
            child.close()

    def work(self, task: Task, child: Child) -> bool:
        """Run jobs in `child`; True when it is still healthy (its queue ran dry)."""
        if child.effective is None:
            failure = self.wait_ready(task, child)
            if failure is not None:
                self.fail(task, child, None, False, *failure)
                return False
        while True:
            with self.lock:
                if not task.pending or (child.background and not self.wide):
                    return True
                job = task.pending.popleft()
                self.background_running += child.background
            try:
                if not child.send(job.message()):
                    self.fail(task, child, job, False, "crashed", child.exit_message())
                    return False
                started, failure = self.run_job(task, child, job)
                if failure is not None:
                    self.fail(task, child, job, started, *failure)
                    return False
            finally:
                if child.background:
                    with self.lock:
                        self.background_running -= 1
                        self.lock.notify_all()

    def wait_ready(self, task: Task, child: Child) -> tuple[str, str] | None:
        deadline = time.monotonic() + STARTUP_GRACE
        while True:
            try:
                event = child.event(deadline)
            except queue.Empty:
                child.kill()
                return "crashed", f"worker did not start within {STARTUP_GRACE:.0f} s"
            if event is None:
                return "crashed", child.exit_message()
            if event.get("event") == "fatal":
                child.kill()
                return "crashed", f"worker failed: {event.get('error')}"
            if event.get("event") == "ready":
                child.effective = dict(event.get("effective") or {})
                with self.lock:
                    self.startups.append(time.monotonic() - child.spawned)
                    task.hooks.ready(event)
                return None

    def run_job(self, task: Task, child: Child, job: Job
                ) -> tuple[bool, tuple[str, str] | None]:
        """One job to its end: whether it started, and None when it finished, else
        (status, message)."""
        deadline = time.monotonic() + STARTUP_GRACE
        timeout = task.hooks.timeout_of(job)
        started = False
        with self.lock:
            counted = self.shadowed()  # the time wide workers ran, as the deadline knows it
        while True:
            try:
                event = child.event(deadline)
            except queue.Empty:
                if child.background:  # time a wide worker ran beside it does not count
                    with self.lock:
                        now = self.shadowed()
                    extra, counted = now - counted, now
                    if extra > 0.01:
                        deadline += extra
                        continue
                child.kill()
                if not started:
                    return False, ("crashed", f"worker took no unit within {STARTUP_GRACE:.0f} s")
                return True, ("timeout", f"no result within {timeout:g} s")
            if event is None:
                return started, ("crashed", child.exit_message())
            kind = event.get("event")
            if kind == "start":
                started = True
                deadline = time.monotonic() + timeout
                with self.lock:
                    counted = self.shadowed()
                    task.hooks.started(job)
            elif kind == "finish":
                with self.lock:
                    child.ran += 1
                    task.finished += 1
                    self.done += 1
                    self.background_units += child.background
                    # Traced and background runs are slower: not a guide.
                    if job.trace_key is None and not child.background:
                        self.seconds.setdefault(job.unit.scenario.name, []).append(
                            float(event.get("seconds") or 0.0))
                    task.hooks.finished(job, event, child.effective or {})
                return True, None
            elif kind == "fatal":
                child.kill()
                return started, ("crashed", f"worker failed: {event.get('error')}")

    def fail(self, task: Task, child: Child, job: Job | None, started: bool, status: str,
             message: str) -> None:
        """The job that was running failed. A worker that died before it ran anything
        takes every job still queued for its task with it (a fresh one would fail the same
        way), unless another worker of the task is at work."""
        child.kill()
        with contextlib.suppress(OSError, ValueError):
            child.stderr.close()
        with self.lock:
            victims = [job] if job is not None else []
            if (child.ran == 0 and not started and status == "crashed" and task.running == 1
                    and not child.background):
                victims += list(task.pending)
                task.pending.clear()
            for victim in victims:
                self.done += 1
                task.hooks.failed(victim, status, message, child.effective or {})


def close_all(children: list[Child]) -> None:
    """Close workers at once, then wait for each: they exit side by side."""
    for child in children:
        child.close(wait=False)
    for child in children:
        child.reap()


def package_environ(environ: dict[str, str]) -> dict[str, str]:
    """`environ` with this very package importable first (installed or not)."""
    package_root = str(Path(__file__).resolve().parents[3])
    environ = dict(environ)
    environ["PYTHONPATH"] = os.pathsep.join(
        [package_root] + [p for p in environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    return environ
