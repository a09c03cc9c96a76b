"""Could the run-to-run check afford its second run in a fresh process?

Per built-in scenario on cpu, in a process that has imported what the fork server preloads
and run no op (the server's state):
  same process   the second run of a unit after its first, as the worker does now;
  forked child   one run in a child forked from that process (a fork server's worker:
                 fork, first-call warm-up, exit), timed from fork to exit;
and once, a fresh interpreter's start-up to a ready worker (`import audit.run.worker`
and torch), what a second run costs where workers cannot be forked (macOS, Windows).

    python benchmarks/second_run_process.py [--select GLOB ...]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from _common import ROOT, emit_json, median

DEFAULT = ["rng.*", "init.*", "train.mlp_sgd", "ops.matmul*"]


def fresh_start() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch, audit.run.worker, torch.optim"],
                   cwd=ROOT, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return time.perf_counter() - started


def forked_run(function, context) -> float:  # noqa: ANN001 - a scenario and its Context
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            function(context)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--select", action="append")
    arguments = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    import torch

    from audit.run.pool.forkserver import PRELOAD
    from audit.scenarios import registry
    from audit.scenarios.context import Context

    torch.set_num_threads(1)  # no OpenMP pool for forked children to inherit mid-use
    for module in PRELOAD:
        __import__(module)
    registry.load_builtin()
    scenarios = registry.select(arguments.select or DEFAULT)
    forked, second = [], []
    for scenario in scenarios:
        context = Context(device="cpu", settings={})
        try:
            forked.append(forked_run(scenario.function, context))
            scenario.function(context)
            started = time.perf_counter()
            scenario.function(context)
            second.append(time.perf_counter() - started)
        except Exception:  # noqa: BLE001, S112 - unavailable here: not timed
            continue
    fresh = median([fresh_start() for _ in range(3)])
    print(f"{len(second)} units; second run in the same process: median "
          f"{median(second) * 1e3:.1f} ms, total {sum(second):.2f} s")
    print(f"one run in a forked child (fork to exit): median {median(forked) * 1e3:.1f} ms, "
          f"total {sum(forked):.2f} s")
    print(f"a fresh worker's start-up (interpreter, torch, the worker): {fresh:.2f} s")
    emit_json("second_run_process", {
               "units": len(second), "second_same_process_total_s": round(sum(second), 3),
               "forked_child_total_s": round(sum(forked), 3),
               "second_same_median_ms": round(median(second) * 1e3, 2),
               "forked_child_median_ms": round(median(forked) * 1e3, 2),
               "fresh_start_s": round(fresh, 2)})


if __name__ == "__main__":
    main()
