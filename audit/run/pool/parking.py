"""Idle workers kept alive (*parked*) for a later run of the same pool, and started ahead.

A worker whose queue is empty can be parked instead of closed, so that the trace pass after
the audit (audit.run.runner.Runner.trace) reuses it instead of paying for another start-up
(importing torch takes seconds). Only a worker started fresh is parked: a fork server forks
another in milliseconds, and forked workers kept parked through the audit slowed the
audit's own units (more system time; the cause in the kernel was not pinned down).

A worker is *warming* when it was started ahead of its task (audit.run.pool.pool: the
next task waiting for cores, or the first tasks of a run not yet planned), parked until
that task takes it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from audit.run.pool import priority

if TYPE_CHECKING:
    from audit.run.pool.child import Child
    from audit.run.pool.task import Task

MAX_PARKED = 12  # idle workers kept for a later pass (each holds an imported torch)
PARK_MEMORY_FREE = 2 * 1024**3  # bytes left available for a worker to be parked


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


def worker_key(combo: dict[str, str], header: dict[str, Any], background: bool = False
               ) -> str:
    """Workers are interchangeable when started with the same environment and job line
    (and priority)."""
    key = json.dumps([combo, header], sort_keys=True)
    return f"{priority.BACKGROUND} {key}" if background else key


def task_worker_key(task: Task, background: bool = False) -> str:
    """The key of a worker for `task` (its runner gives the job line)."""
    return worker_key(task.combo, task.hooks.child_header(task.combo), background)


class Parking:
    """Parked workers by key; `enabled`: whether workers are parked once their queue is
    empty (those started ahead always are, until taken)."""

    def __init__(self, enabled: bool = False) -> None:
        self.enabled = enabled
        self.parked: dict[str, list[Child]] = {}
        self.warming: set[str] = set()  # keys of parked workers started ahead

    def count(self) -> int:
        return sum(map(len, self.parked.values()))

    def room(self) -> bool:
        return self.count() < MAX_PARKED

    def has_idle(self, key: str) -> bool:
        return bool(self.parked.get(key))

    def add(self, key: str, child: Child, warming: bool = False) -> None:
        self.parked.setdefault(key, []).append(child)
        if warming:
            self.warming.add(key)

    def take(self, key: str) -> Child | None:
        """A parked worker of `key`, no longer parked (None: there is none)."""
        idle = self.parked.get(key)
        self.warming.discard(key)
        return idle.pop() if idle else None

    def accepts(self, child: Child) -> bool:
        """Whether a worker whose queue ran dry is parked (else closed)."""
        return (self.enabled and not child.forked and self.room()
                and (memory_available() or PARK_MEMORY_FREE) >= PARK_MEMORY_FREE)

    def keep_only(self, wanted: set[str]) -> list[Child]:
        """Unpark the workers of keys not `wanted`, for the caller to close."""
        unused = [child for key in list(self.parked) if key not in wanted
                  for child in self.parked.pop(key)]
        self.warming &= set(self.parked)
        return unused

    def clear(self) -> list[Child]:
        """Unpark every worker, for the caller to close."""
        parked, self.parked = self.parked, {}
        self.warming.clear()
        return [child for children in parked.values() for child in children]
