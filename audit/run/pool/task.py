"""What the pool runs: tasks of jobs, and the contract with the runner they belong to."""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

from audit.run.pool.events import Finished, Ready


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


class Hooks(Protocol):
    """What the pool asks of the runner a task belongs to (audit.run.runner.Runner), and
    tells it. The pool calls back under its lock, so one at a time."""

    def child_environ(self, combo: dict[str, str]) -> dict[str, str]:
        """The environment of a worker of a process-settings combination."""
        ...

    def child_header(self, combo: dict[str, str]) -> dict[str, Any]:
        """The job line a worker of a combination starts with."""
        ...

    def ready(self, event: Ready) -> None:
        """A worker of one of its tasks is ready."""
        ...

    def started(self, job: Job, done: int, total: int) -> None:
        """A unit started; `done` of the `total` jobs of the pool's run ended."""
        ...

    def finished(self, job: Job, event: Finished, effective: dict[str, str]) -> None:
        """A unit ran to its end; `effective`: its worker's process settings in effect."""
        ...

    def failed(self, job: Job, status: str, message: str, effective: dict[str, str]) -> None:
        """A unit did not end ("crashed", "timeout"), and why."""
        ...

    def timeout_of(self, job: Job) -> float:
        """Seconds a unit may run."""
        ...


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
