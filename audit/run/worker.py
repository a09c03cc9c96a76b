"""The child process: runs scenario units under one process-settings combination.

The parent (`audit.run.runner`) starts `python -m audit.run.worker` with the process settings in
its environment and a job (one JSON line) on stdin, then units one JSON line each as it
frees up. The worker answers on its original stdout, one JSON event per line; whatever
scenarios print goes to stderr instead. Each unit is run twice, each time after
scrambling every global RNG with fresh entropy, so a scenario that forgets to seed shows
up as not repeatable instead of passing by luck. A `trace_only` unit is run once more
under the op recorder (audit.trace.record), in a pass after the audited runs.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Iterable, TextIO

# Words torch uses when an op has no deterministic implementation and determinism is on.
DETERMINISM_MARKERS = ("does not have a deterministic implementation", "deterministic algorithm")


def scramble_rng_states() -> None:
    """Seed every global RNG from os.urandom: state left by a previous run must not leak."""
    import numpy as np
    import torch

    entropy = int.from_bytes(os.urandom(8), "little")
    torch.manual_seed(entropy & 0x7FFF_FFFF_FFFF_FFFF)
    np.random.seed(entropy & 0xFFFF_FFFF)
    random.seed(os.urandom(16))
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(entropy & 0xFFFF_FFFF)


def _describe(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".strip()


def run_once(function: Callable[[Any], Any], context: Any, name: str) -> dict[str, Any]:
    from audit.capture.outputs import flatten_outputs

    scramble_rng_states()
    return flatten_outputs(name, function(context))


def run_traced(function: Callable[[Any], Any], context: Any, name: str
               ) -> tuple[dict[str, Any], Any]:
    """`run_once` under the op recorder: the outputs and the `audit.trace.model.Trace`."""
    from audit.capture.outputs import flatten_outputs
    from audit.trace.record import traced

    scramble_rng_states()
    result, trace = traced(function, context)
    return flatten_outputs(name, result), trace


def describe_outputs(outputs: dict[str, Any], keep: str | None = None
                     ) -> dict[str, dict[str, Any]]:
    """Digest, dtype, shape, kind and value sample of each output (bytes extracted once).

    With `keep` (a folder), the values' full bytes are stored there too, named by digest,
    so a report can give exact distances for outputs larger than a sample.
    """
    from audit.capture.hashing import digest_parts, dtype_name, tensor_parts
    from audit.capture.sample import sample_of_parts, values_part

    described = {}
    for output, tensor in outputs.items():
        kind, parts = tensor_parts(tensor)
        dtype, shape = dtype_name(tensor.dtype), tuple(tensor.shape)
        described[output] = {
            "digest": digest_parts(kind, dtype, shape, parts),
            "dtype": dtype,
            "shape": list(shape),
            "kind": kind,
            "sample": sample_of_parts(parts).to_json(),
        }
        if keep is not None:
            described[output]["stored"] = store_values(Path(keep), described[output]["digest"],
                                                       values_part(parts).data)
    return described


def store_values(folder: Path, digest: str, data: Any) -> str:
    """Write the bytes once per digest (content-addressed), atomically; returns the name."""
    name = f"{digest[:32]}.bin"
    target = folder / name
    if not target.exists():
        folder.mkdir(parents=True, exist_ok=True)
        temporary = folder / f".{name}.{os.getpid()}.tmp"
        temporary.write_bytes(memoryview(data))
        os.replace(temporary, target)
    return f"{folder.name}/{name}"


class Worker:
    """Runs units and reports events on the protocol stream."""

    def __init__(self, job: dict[str, Any], protocol: TextIO) -> None:
        self.job = job
        self.protocol = protocol
        self.trace: Any = None  # the op trace of the unit being run (a trace_only unit)
        self.more: Iterable[str] = ()  # further units, one JSON line each (main: stdin)
        self.run_effective: dict[str, str] = {}  # run settings in effect for that unit
        # what audit.run.pool.priority set (not a setting: no result changes)
        self.priority = "normal"

    def emit(self, event: str, **payload: Any) -> None:
        self.protocol.write(json.dumps({"event": event, **payload}, sort_keys=True) + "\n")
        self.protocol.flush()

    def run(self) -> None:
        from audit.config.settings import PROCESS, SETTINGS, in_effect
        from audit.scenarios import registry

        self.apply_threads()
        # Process settings as in effect, read before any scenario runs (oneDNN tells its
        # ISA only once per process), with why a setting's library is missing here.
        effective = in_effect(PROCESS, self.job["process_settings"])
        missing = {name: SETTINGS[name].needs() for name in effective
                   if effective[name] == "n/a" and SETTINGS[name].needs is not None}
        registry.load_builtin()
        for path in self.job.get("scenario_files", []):
            registry.load_file(path)
        scenarios = registry.all_scenarios()
        self.emit("ready", effective=effective, missing=missing, priority=self.priority)
        for unit in self.units():
            self.emit("start", unit=unit["id"])
            started = time.perf_counter()
            self.trace = None
            self.run_effective = {}
            rows = self.run_unit(scenarios[unit["scenario"]], unit)
            extra = {"trace": self.trace.to_json()} if self.trace is not None else {}
            self.emit("finish", unit=unit["id"], rows=rows, effective=self.run_effective,
                      seconds=round(time.perf_counter() - started, 6), **extra)

    def units(self) -> Any:
        """The job's units, then one unit per line of `self.more` until it closes: the
        parent hands out units as workers free up (audit.run.pool.pool), so one worker per process
        combination serves every run-settings combination, and a second one can share the
        same queue."""
        yield from self.job.get("units", [])
        for line in self.more:
            if line.strip():
                yield json.loads(line)

    def apply_threads(self) -> None:
        import torch

        threads = os.environ.get("REPRO_AUDIT_THREADS")
        if threads:
            torch.set_num_threads(int(threads))

    def run_unit(self, scenario: Any, unit: dict[str, Any]) -> list[dict[str, Any]]:
        """Both runs of one (scenario, device, run settings) unit, as partial rows."""
        from audit.config.settings import RUN, SETTINGS, in_effect
        from audit.scenarios.context import Context
        from audit.scenarios.registry import Unavailable

        restores: list[Callable[[], None]] = []
        try:
            for name, value in unit["run_settings"].items():
                setting = SETTINGS[name]
                if value != "n/a" and setting.apply is not None:
                    restore = setting.apply(value)
                    if restore is not None:
                        restores.append(restore)
            # Read back after all are applied (one may undo another), chosen or not.
            self.run_effective = in_effect(RUN, unit["run_settings"])
            for name, value in unit["run_settings"].items():
                if value != "n/a" and self.run_effective[name] != value:
                    raise Unavailable(f"{name}={value} did not take effect "
                                      f"(torch reports {self.run_effective[name]})")
            context = Context(device=unit["device"], settings=dict(unit["settings"]))
            if unit.get("trace_only"):  # a traced run alone, never one of the audited two
                self.trace = self.traced_run(scenario, context)
                return []
            first = run_once(scenario.function, context, scenario.name)
            try:
                second = run_once(scenario.function, context, scenario.name)
            except Exception as error:  # noqa: BLE001 - the second run's failure is a finding
                second, second_error = None, _describe(error)
            else:
                second_error = None
            return self.rows_for(first, second, second_error, self.job.get("keep_tensors"))
        except Unavailable as reason:
            return [{"output": None, "status": "unavailable", "error": str(reason)}]
        except NotImplementedError as error:  # an op this device or build lacks
            return [{"output": None, "status": "unavailable",
                     "error": f"not implemented here: {_describe(error)}"}]
        except Exception as error:  # noqa: BLE001 - a scenario's failure is a result, not a crash
            status = "error"
            if unit["run_settings"].get("deterministic") in ("on",) and any(
                marker in str(error) for marker in DETERMINISM_MARKERS
            ):
                status = "raises-when-deterministic"
            detail = _describe(error)
            if status == "error" and os.environ.get("REPRO_AUDIT_TRACEBACKS"):
                detail += "\n" + traceback.format_exc()
            return [{"output": None, "status": status, "error": detail}]
        finally:
            for restore in reversed(restores):
                restore()

    @staticmethod
    def traced_run(scenario: Any, context: Any) -> Any:
        """A third run with every op recorded, beside the two audited ones: under a dispatch
        mode torch may take other code paths (see audit.trace.record), which must not touch the
        audited digests or the run-to-run verdict. No trace is no finding: None."""
        from audit.trace.record import tracing_unavailable

        if tracing_unavailable() is not None:
            return None
        try:
            return run_traced(scenario.function, context, scenario.name)[1]
        except Exception:  # noqa: BLE001 - the audited rows stand without a trace
            return None

    @staticmethod
    def rows_for(first: dict[str, Any], second: dict[str, Any] | None,
                 second_error: str | None, keep: str | None = None) -> list[dict[str, Any]]:
        described = describe_outputs(first, keep)
        again = describe_outputs(second) if second is not None else {}
        return Worker.rows_of_described(described, again, second_error)

    @staticmethod
    def rows_of_described(described: dict[str, dict[str, Any]],
                          again: dict[str, dict[str, Any]], second_error: str | None
                          ) -> list[dict[str, Any]]:
        """`rows_for` of outputs already described (`describe_outputs`) in both runs: the
        pytest plugin describes each value when the test hands it over."""
        rows = []
        for output, values in described.items():
            repeatable = again.get(output, {}).get("digest") == values["digest"]
            rows.append({"output": output, "status": "ok", "repeatable": repeatable,
                         "error": None if second_error is None
                         else f"second run failed: {second_error}", **values})
        for output in sorted(set(again) - set(described)):
            rows.append({"output": output, "status": "ok", "repeatable": False,
                         "error": "output only produced by the second run", **again[output]})
        return rows


def main() -> None:
    """Entry point of the child: job on stdin, events on the original stdout."""
    from audit.run.pool.priority import apply_from_environment

    priority = apply_from_environment()  # a background worker: before any thread starts
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # scenario prints go to stderr
    job = json.loads(sys.stdin.readline())  # the job; then units, one per line (Worker.units)
    worker = Worker(job, protocol)
    worker.priority = priority
    worker.more = sys.stdin
    try:
        worker.run()
    except Exception as error:  # noqa: BLE001 - reported to the parent, which decides
        worker.emit("fatal", error=_describe(error))
        sys.exit(3)
    worker.emit("done")
    # Everything is said and written: skip the interpreter's teardown, which takes seconds
    # once torch (and what a scenario pulled in, such as torch._inductor) is imported.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
