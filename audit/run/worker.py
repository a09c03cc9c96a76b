"""The child process: runs scenario units under one process-settings combination.

The parent (`audit.run.runner`) starts `python -m audit.run.worker` with the process settings in
its environment and a job (one JSON line) on stdin, then units one JSON line each as it
frees up (audit.run.channel). The worker answers on its original stdout, one JSON event per
line, each sealed with a key the job brought (audit.run.pool.events.Seal); whatever scenarios
print goes to stderr instead. Each unit runs under its run settings
(audit.run.apply_settings), twice, or once traced in a pass after the audited runs
(audit.run.unit_runs).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from typing import Any

from audit.run.apply_settings import apply_threads, process_settings
from audit.run.channel import Channel
from audit.run.unit_runs import describe_error, run_unit


class Worker:
    """Runs a job's units and reports each on the channel to the parent."""

    def __init__(self, job: dict[str, Any], channel: Channel, priority: str = "normal") -> None:
        self.job = job
        self.channel = channel
        # what audit.run.pool.priority set (not a setting: no result changes)
        self.priority = priority

    def run(self) -> None:
        from audit.scenarios import registry

        apply_threads()
        effective, missing = process_settings(self.job["process_settings"])
        registry.load_builtin()
        for path in self.job.get("scenario_files", []):
            registry.load_file(path)
        scenarios = registry.all_scenarios()
        self.channel.emit("ready", effective=effective, missing=missing,
                          priority=self.priority)
        for unit in self.channel.units(self.job):
            self.channel.emit("start", unit=unit["id"])
            started = time.perf_counter()
            result = run_unit(scenarios[unit["scenario"]], unit, self.job.get("keep_tensors"))
            extra = {"trace": result.trace.to_json()} if result.trace is not None else {}
            self.channel.emit("finish", unit=unit["id"], rows=result.rows,
                              effective=result.effective,
                              seconds=round(time.perf_counter() - started, 6), **extra)


def _leave_to_parent(_number: int, _frame: Any) -> None:
    """SIGINT in a worker: its parent decides (audit.run.pool.pool.Pool.close)."""


def main() -> None:
    """Entry point of the child: job on stdin, events on the original stdout."""
    from audit.run.pool.priority import apply_from_environment

    priority = apply_from_environment()  # a background worker: before any thread starts
    # Ctrl-C reaches the whole process group: the parent ends the run and kills its
    # workers, so a worker dying of it first is not reported as a crash (a handler, not
    # SIG_IGN, which processes a scenario starts would inherit).
    signal.signal(signal.SIGINT, _leave_to_parent)
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # scenario prints go to stderr
    job = json.loads(sys.stdin.readline())  # the job; then units, one per line (Channel.units)
    key = job.pop("seal", None)  # kept by the channel alone, out of the job scenarios see
    channel = Channel(protocol, more=sys.stdin, key=bytes.fromhex(key) if key else None)
    worker = Worker(job, channel, priority)
    try:
        worker.run()
    except Exception as error:  # noqa: BLE001 - reported to the parent, which decides
        worker.channel.emit("fatal", error=describe_error(error))
        sys.exit(3)
    worker.channel.emit("done")
    # Everything is said and written: skip the interpreter's teardown, which takes seconds
    # once torch (and what a scenario pulled in, such as torch._inductor) is imported.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
