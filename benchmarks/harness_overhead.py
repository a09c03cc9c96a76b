"""What the harness costs on top of the scenarios it runs: bare calls vs the real runner.

Four variants over the same built-in scenarios on cpu, no settings, interleaved:
  bare          each scenario function called twice in this (warm) process, as the worker
                does;
  bare+digests  the same, plus what the worker does per run: scramble the RNGs, flatten the
                outputs and describe them (digest, value sample);
  bare child    the bare calls in one fresh child process, timed from here: what the
                scenarios cost with process start-up and first-call warm-up, no harness;
  runner        `audit.run.runner.Runner` with a `Plan`: one worker child, events, rows.
The runner's child pays process start-up (interpreter, `import torch`, loading the
scenarios), measured separately in fresh children. Target: runner / bare <= 1.15x, given
against the bare child (both pay start-up), the warm bare calls, and the warm bare calls
with one start-up subtracted from the runner.

    python benchmarks/harness_overhead.py [--quick] [--repeats N] [--select GLOB ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections import Counter
from typing import Any, Callable

from _common import ROOT, emit_json, interleaved, median, target_line

TARGET = 1.15
QUICK_SELECT = ["rng.*"]
STARTUP_CHILD = """
import json, sys, time
started = time.perf_counter()
import torch
imported = time.perf_counter()
from audit.scenarios import registry
registry.load_builtin()
loaded = time.perf_counter()
print(json.dumps({"import_torch": imported - started, "load_scenarios": loaded - imported,
                  "scenarios": len(registry.all_scenarios())}))
"""
BARE_CHILD = """
import json, sys, time
started = time.perf_counter()
import torch
from audit.environment.devices import KNOWN_DEVICES, device_status
from audit.run.plan import scenario_devices, unavailable_reason
from audit.scenarios import registry
from audit.scenarios.context import Context
registry.load_builtin()
reasons = {device: device_status(device) for device in KNOWN_DEVICES}
per = {}
for scenario in registry.select(json.loads(sys.argv[1])):
    for device in scenario_devices(scenario, ["cpu"]):
        if unavailable_reason(scenario, device, reasons, torch.__version__):
            continue
        context = Context(device=device, settings={})
        unit_started = time.perf_counter()
        try:
            scenario.function(context)
            scenario.function(context)
        except Exception:
            pass
        per[scenario.name] = time.perf_counter() - unit_started
print(json.dumps({"seconds": time.perf_counter() - started, "per": per}))
"""


def measure_startup(repeats: int) -> dict[str, float]:
    """Median seconds of a fresh child: whole process, `import torch`, loading scenarios."""
    totals, imports, loads, count = [], [], [], 0
    for _ in range(repeats):
        started = time.perf_counter()
        output = subprocess.run([sys.executable, "-c", STARTUP_CHILD], capture_output=True,
                                text=True, check=True, cwd=ROOT).stdout
        totals.append(time.perf_counter() - started)
        figures = json.loads(output.strip().splitlines()[-1])
        imports.append(figures["import_torch"])
        loads.append(figures["load_scenarios"])
        count = figures["scenarios"]
    return {"child_total": median(totals), "import_torch": median(imports),
            "load_scenarios": median(loads), "scenarios_loaded": count}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"only {' '.join(QUICK_SELECT)}")
    parser.add_argument("--repeats", type=int, help="interleaved rounds (median taken)")
    parser.add_argument("--select", action="append", default=[], metavar="GLOB",
                        help="scenario names to run (repeatable; default: all built-in)")
    args = parser.parse_args()
    repeats = args.repeats or 2
    patterns = args.select or (QUICK_SELECT if args.quick else [])

    import torch

    from audit.environment.collect import collect, env_id
    from audit.environment.devices import KNOWN_DEVICES, device_status
    from audit.run.partial_rows import describe_outputs
    from audit.run.plan import Plan, scenario_devices, unavailable_reason
    from audit.run.runner import Runner
    from audit.run.unit_runs import run_once
    from audit.scenarios import registry
    from audit.scenarios.context import Context

    registry.load_builtin()
    scenarios = registry.select(patterns)
    devices = ["cpu"]
    # Reasons for every known device: a scenario limited to cuda falls back to it.
    reasons = {device: device_status(device) for device in KNOWN_DEVICES}
    units = [(scenario, device) for scenario in scenarios
             for device in scenario_devices(scenario, devices)
             if not unavailable_reason(scenario, device, reasons, torch.__version__)]
    identity = env_id(collect())
    print(f"harness overhead: {len(scenarios)} scenarios selected "
          f"({', '.join(patterns) or 'all built-in'}), {len(units)} runnable units on cpu, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{repeats} interleaved round(s)")

    bare_errors: Counter[str] = Counter()

    def bare() -> float:
        started = time.perf_counter()
        for scenario, device in units:
            context = Context(device=device, settings={})
            try:
                scenario.function(context)
                scenario.function(context)
            except Exception as error:  # noqa: BLE001 - the runner records these as rows
                bare_errors[f"{scenario.name}: {type(error).__name__}"] += 1
        return time.perf_counter() - started

    def with_digests() -> float:
        started = time.perf_counter()
        for scenario, device in units:
            context = Context(device=device, settings={})
            try:
                first = run_once(scenario.function, context, scenario.name)
                second = run_once(scenario.function, context, scenario.name)
                describe_outputs(first)
                describe_outputs(second)
            except Exception:  # noqa: BLE001, S112 - counted in the bare variant already
                continue
        return time.perf_counter() - started

    child_units: dict[str, float] = {}

    def bare_child() -> float:
        started = time.perf_counter()
        output = subprocess.run([sys.executable, "-c", BARE_CHILD, json.dumps(patterns)],
                                check=True, cwd=ROOT, capture_output=True, text=True).stdout
        elapsed = time.perf_counter() - started
        child_units.update(json.loads(output.strip().splitlines()[-1])["per"])
        return elapsed

    runner_rows: list[dict[str, Any]] = []

    def runner() -> float:
        plan = Plan(scenarios=scenarios, devices=devices, settings={})
        started = time.perf_counter()
        rows = Runner(plan, identity, torch.__version__).run(reasons)
        elapsed = time.perf_counter() - started
        runner_rows[:] = rows
        return elapsed

    # One warm-up pass of the in-process variants: lazy imports and first-call kernel set-up
    # happen once per process, and the runner's fresh child is measured separately for them.
    warm_started = time.perf_counter()
    bare()
    warmup = time.perf_counter() - warm_started
    print(f"warm-up pass (bare, not counted): {warmup:.2f} s")
    variants: dict[str, Callable[[], float]] = {
        "bare": bare, "bare + digests": with_digests, "bare child": bare_child,
        "runner": runner}
    samples = interleaved(variants, repeats, warmup=0)
    seconds = {name: median(values) for name, values in samples.items()}
    startup = measure_startup(3)

    ratio = seconds["runner"] / seconds["bare child"]
    warm_ratio = seconds["runner"] / seconds["bare"]
    net_runner = seconds["runner"] - startup["child_total"]
    net_ratio = net_runner / seconds["bare"]
    digest_share = (seconds["bare + digests"] - seconds["bare"]) / seconds["bare"]
    statuses = Counter(row["status"] for row in runner_rows)
    for name, value in seconds.items():
        print(f"  {name:<14} {value:8.2f} s  ({value / seconds['bare']:.3f}x bare)"
              f"  rounds: {', '.join(f'{v:.2f}' for v in samples[name])}")
    print(f"  digests add {100 * digest_share:+.1f}% to bare; runner rows: "
          + ", ".join(f"{count} {status}" for status, count in sorted(statuses.items())))
    print(f"process start-up (fresh child, median of 3): {startup['child_total']:.2f} s total, "
          f"import torch {startup['import_torch']:.2f} s, load scenarios "
          f"{startup['load_scenarios']:.2f} s ({startup['scenarios_loaded']} scenarios)")
    print(f"  runner minus one child start-up: {net_runner:.2f} s ({net_ratio:.3f}x bare)")
    # Per unit, last round: the runner's own time for a unit (child side: two runs, the RNG
    # scrambles, digests and samples) against the same two calls in the bare child.
    runner_units = {row["scenario"]: row["seconds"] for row in runner_rows
                    if row.get("seconds") is not None}
    extra = sorted(((runner_units[name] - child_units[name], name) for name in runner_units
                    if name in child_units), reverse=True)
    unit_overhead = {name: {"runner": runner_units[name], "bare_child": child_units[name]}
                     for _, name in extra[:8]}
    if extra:
        print("  units the runner spends most extra time on (last round, runner vs bare child):")
        for name, times in unit_overhead.items():
            print(f"    {name:<40} {times['runner']:7.3f} s vs {times['bare_child']:7.3f} s")
        print(f"    sum over units: runner {sum(runner_units.values()):.2f} s, bare child "
              f"{sum(child_units[n] for n in runner_units if n in child_units):.2f} s")
    if bare_errors:
        print(f"  bare calls that raised: {dict(bare_errors)}")
    print("targets:")
    print(target_line("runner / bare child (both pay start-up)", f"{ratio:.3f}x",
                      f"<= {TARGET}x", ratio <= TARGET))
    print(target_line("runner / warm bare calls", f"{warm_ratio:.3f}x", f"<= {TARGET}x",
                      warm_ratio <= TARGET))
    print(target_line("runner minus start-up / warm bare calls", f"{net_ratio:.3f}x",
                      f"<= {TARGET}x", net_ratio <= TARGET))
    emit_json("harness_overhead", {
        "select": patterns, "scenarios": len(scenarios), "units": len(units),
        "repeats": repeats, "torch": torch.__version__, "warmup_seconds": warmup,
        "seconds": seconds, "rounds": samples, "startup": startup,
        "ratio_runner_to_bare_child": ratio, "ratio_runner_to_warm_bare": warm_ratio,
        "ratio_net_of_startup": net_ratio,
        "digest_share_of_bare": digest_share, "runner_statuses": dict(statuses),
        "bare_errors": dict(bare_errors), "unit_overhead_top": unit_overhead,
        "targets": {"runner_to_bare_child_le_1.15": ratio <= TARGET,
                    "runner_to_warm_bare_le_1.15": warm_ratio <= TARGET,
                    "net_of_startup_le_1.15": net_ratio <= TARGET},
    })


if __name__ == "__main__":
    main()
