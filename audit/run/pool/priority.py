"""Background workers: a worker at idle priority takes only the cycles others leave unused.

A worker of a combination that uses every core (threads=2 on 2 cores) keeps them busy only
part of the time: its Python code runs on one thread, and its second thread waits between
parallel regions (docs/benchmarks.md). A one-thread worker beside it at normal priority
would slow it down; at Linux's SCHED_IDLE it runs only when a core would otherwise idle, and
yields the core as soon as the wide worker's threads want it (audit.run.pool.pool starts one
such *background* worker while a wide worker runs).

What a unit computes does not depend on how fast it runs: priority is no setting, and every
setting that can change a result is the worker's own, fixed at its start
(tests/e2e/test_parallel.py checks the digests against a serial run).
"""

from __future__ import annotations

import contextlib
import os

PRIORITY_VARIABLE = "REPRO_AUDIT_PRIORITY"  # "background": run at idle priority
BACKGROUND = "background"
SWITCH_VARIABLE = "REPRO_AUDIT_BACKFILL"  # "0": never start background workers


def supported() -> bool:
    """Whether a worker can run at idle priority here (Linux's SCHED_IDLE), and that is not
    turned off (REPRO_AUDIT_BACKFILL=0)."""
    return (hasattr(os, "SCHED_IDLE") and hasattr(os, "sched_setscheduler")
            and os.environ.get(SWITCH_VARIABLE, "1") != "0")


def background_environ(environ: dict[str, str]) -> dict[str, str]:
    """The environment of a background worker of the same combination."""
    return {**environ, PRIORITY_VARIABLE: BACKGROUND}


def apply_from_environment() -> str:
    """In a worker, before it starts any thread: idle priority where its environment asks
    for it (threads started later inherit it). Returns the priority it runs at."""
    if os.environ.get(PRIORITY_VARIABLE) != BACKGROUND:
        return "normal"
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))  # type: ignore[attr-defined]
        return "idle"
    except (AttributeError, OSError):
        with contextlib.suppress(AttributeError, OSError):
            os.nice(19)  # the next best thing: the lowest normal priority
            return "nice 19"
    return "normal"
