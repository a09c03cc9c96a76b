"""Cores: how many a worker uses, how many are free, and how long wide workers have run.

Workers run at once only while their cores add up to at most `jobs`. A *wide* worker uses
more than one core; beside it, a background worker (audit.run.pool.priority) holds none, as
it takes only the cycles the wide one leaves idle. `CoreBudget` is plain bookkeeping, with
no threads or processes: the pool calls it under its lock.
"""

from __future__ import annotations

import os
import time
from typing import Callable


def available_cores() -> int:
    """Cores this process may use (its affinity where the OS tells, else the CPU count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def cores_of(combo: dict[str, str], jobs: int) -> int:
    """Cores a worker of `combo` uses: its thread count, at most `jobs` (all when unset)."""
    threads = combo.get("threads")
    if threads is None or not str(threads).isdigit():
        return jobs
    return max(1, min(int(threads), jobs))


class CoreBudget:
    """Cores held by the pool's workers, out of `jobs`."""

    def __init__(self, jobs: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.jobs = jobs
        self.clock = clock
        self.busy = 0  # cores held by running workers
        self.wide = 0  # running workers that use more than one core
        self.background = 0  # background workers alive, and those running a unit now
        self.background_running = 0
        self._shadow_total = 0.0  # seconds wide workers ran before `_shadow_since`
        self._shadow_since: float | None = None  # since when one runs now (None: none does)

    def free(self) -> int:
        """Cores no worker holds. A background worker holds none while a wide worker runs
        (it takes only what that one leaves idle), but the one it is running a unit on
        once none does, until the unit ends: then it stops."""
        shadowed = self.background_running if not self.wide else 0
        return self.jobs - self.busy - shadowed

    def worker_started(self, cores: int, background: bool = False) -> None:
        """A worker of `cores` cores (a background one: none) starts."""
        if background:
            self.background += 1
            return
        self.busy += cores
        if cores > 1:
            self.wide += 1
            if self.wide == 1:
                self._shadow_since = self.clock()

    def worker_ended(self, cores: int, background: bool = False) -> None:
        """A worker `worker_started` counted ends."""
        if background:
            self.background -= 1
            return
        self.busy -= cores
        if cores > 1:
            self.wide -= 1
            if self.wide == 0:
                self._shadow_total, self._shadow_since = self.shadowed(), None

    def background_unit_started(self) -> None:
        self.background_running += 1

    def background_unit_ended(self) -> None:
        self.background_running -= 1

    def shadowed(self) -> float:
        """Seconds during which a wide worker ran, so far (a background unit's time then
        does not count against its timeout: it may get no cycles at all)."""
        since = self._shadow_since
        return self._shadow_total + (self.clock() - since if since is not None else 0.0)
