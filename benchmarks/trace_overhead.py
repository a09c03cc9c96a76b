"""What recording an op trace costs: built-in scenarios bare vs traced, and the trace size.

Per scenario on cpu, interleaved in one process (median of the repeats):
  bare       the scenario function called as the worker calls it;
  described  bare plus digesting and sampling the outputs (what the worker adds per run);
  traced     the function under `audit.trace.traced` (every op's inputs and outputs hashed).
Printed: traced / bare; what a traced extra run adds to a whole unit (the worker runs
two described runs, and with --trace a third, traced one); the number of events; the
trace's size as stored (gzip'ed JSON line); and whether the outputs are the same bits
traced and bare. Times are CPU seconds with one intra-op thread by default: on a shared
machine wall-clock times swing with other load, CPU time much less.

    python benchmarks/trace_overhead.py [--repeats N] [--threads N] [--select NAME ...]
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from typing import Any, Callable

from _common import emit_json, interleaved, median, size_label

# ops.reductions is there for `same results traced: NO`: prod's gradient takes another path
# under any dispatch mode (see audit/trace/record.py), which is why a traced run is an extra run.
DEFAULT = ["ops.reductions_large", "train.mlp_sgd", "init.linear", "rng.randn", "ops.reductions"]


def variants(scenario: Any) -> tuple[dict[str, Callable[[], float]], dict[str, Any]]:
    from audit.capture.hashing import digest
    from audit.capture.outputs import flatten_outputs
    from audit.run.partial_rows import describe_outputs
    from audit.scenarios.context import Context
    from audit.store.traces import trace_key
    from audit.trace.record import traced

    last: dict[str, Any] = {}

    def bare() -> float:
        started = time.process_time()
        flatten_outputs(scenario.name, scenario.function(Context(device="cpu")))
        return time.process_time() - started

    def described() -> float:
        started = time.process_time()
        describe_outputs(flatten_outputs(scenario.name, scenario.function(Context(device="cpu"))))
        return time.process_time() - started

    def recorded() -> float:
        started = time.process_time()
        result, trace = traced(scenario.function, Context(device="cpu"))
        flatten_outputs(scenario.name, result)
        seconds = time.process_time() - started
        last["trace"], last["result"] = trace, result
        return seconds

    recorded()
    outputs = flatten_outputs(scenario.name, last["result"])
    plain = flatten_outputs(scenario.name, scenario.function(Context(device="cpu")))
    line = json.dumps({"key": trace_key(scenario.name, "cpu", {}), **last["trace"].to_json()},
                      sort_keys=True, separators=(",", ":")).encode()
    facts = {
        "events": len(last["trace"].events),
        "skipped_ops": last["trace"].skipped,
        "trace_bytes": len(gzip.compress(line, mtime=0)),
        "trace_bytes_raw": len(line),
        "same_results": {k: digest(v) for k, v in plain.items()}
        == {k: digest(v) for k, v in outputs.items()},
    }
    return {"bare": bare, "described": described, "traced": recorded}, facts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--select", action="append", default=[], metavar="NAME")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from audit.scenarios import registry

    registry.load_builtin()
    scenarios = registry.all_scenarios()
    figures: dict[str, Any] = {}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"CPU time, median of {args.repeats} (interleaved)")
    for name in args.select or DEFAULT:
        runs, facts = variants(scenarios[name])
        times = {key: median(values) for key, values in interleaved(runs, args.repeats).items()}
        ratio = times["traced"] / times["bare"]
        added = times["traced"] / (2 * times["described"])
        figures[name] = {"seconds": times, "slowdown": ratio, "unit_added": added, **facts}
        print(f"{name}: bare {times['bare'] * 1e3:.1f} ms, traced {times['traced'] * 1e3:.1f} ms"
              f" ({ratio:.1f}x; a traced third run adds {100 * added:.0f}% to a unit),"
              f" {facts['events']} events"
              f" ({facts['skipped_ops']} view/empty calls skipped), trace "
              f"{size_label(facts['trace_bytes'])} gzip'ed ({size_label(facts['trace_bytes_raw'])}"
              f" raw), same results traced: {'yes' if facts['same_results'] else 'NO'}")
    emit_json("trace_overhead", {"repeats": args.repeats, "threads": args.threads,
                                 "torch": torch.__version__, "scenarios": figures})


if __name__ == "__main__":
    main()
