"""A unit's runs in the worker: twice audited, or once traced, each after scrambling the RNGs.

Each audited run starts after every global RNG was seeded with fresh entropy, so a
scenario that forgets to seed shows up as not repeatable instead of passing by luck. A
`trace_only` unit is run once more under the op recorder (audit.trace.record), in a pass
after the audited runs. A scenario's failure is a result (a row saying why), not a crash.
Each run ends in the global state the unit started in (audit.run.global_state): a run that
left it changed fails its unit, and the unit's settings are read back after its runs.
"""

from __future__ import annotations

import os
import random
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

from audit.run.apply_settings import RunSettings
from audit.run.global_state import Held, StateChanged
from audit.run.partial_rows import rows_for
from audit.scenarios.registry import Unavailable

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


def describe_error(error: BaseException) -> str:
    """An error in one line: its type and the first line of its message."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".strip()


def held_call(function: Callable[[Any], Any], context: Any, held: Held | None) -> Any:
    """`function(context)`, then every global knob back where `held` found it: a run that
    returned with one changed raises StateChanged (one that raised keeps its own error)."""
    if held is None:
        return function(context)
    try:
        result = function(context)
    except BaseException:
        held.check(raising=False)
        raise
    held.check()
    return result


def run_once(function: Callable[[Any], Any], context: Any, name: str,
             held: Held | None = None) -> dict[str, Any]:
    from audit.capture.outputs import flatten_outputs

    scramble_rng_states()
    return flatten_outputs(name, held_call(function, context, held))


def run_traced(function: Callable[[Any], Any], context: Any, name: str,
               held: Held | None = None) -> tuple[dict[str, Any], Any]:
    """`run_once` under the op recorder: the outputs and the `audit.trace.model.Trace`."""
    from audit.capture.outputs import flatten_outputs
    from audit.trace.record import traced

    scramble_rng_states()
    result, trace = held_call(lambda ctx: traced(function, ctx), context, held)
    return flatten_outputs(name, result), trace


def traced_run(scenario: Any, context: Any, held: Held | None = None) -> Any:
    """A third run with every op recorded, beside the two audited ones: under a dispatch
    mode torch may take other code paths (see audit.trace.record), which must not touch the
    audited digests or the run-to-run verdict. No trace is no finding: None."""
    from audit.trace.record import tracing_unavailable

    if tracing_unavailable() is not None:
        return None
    try:
        return run_traced(scenario.function, context, scenario.name, held)[1]
    except StateChanged:
        raise
    except Exception:  # noqa: BLE001 - the audited rows stand without a trace
        return None


def audited_runs(scenario: Any, context: Any, keep: str | None, held: Held | None = None
                 ) -> list[dict[str, Any]]:
    """Both audited runs of a scenario, as partial rows (audit.run.partial_rows)."""
    first = run_once(scenario.function, context, scenario.name, held)
    try:
        second = run_once(scenario.function, context, scenario.name, held)
    except StateChanged:
        raise
    except Exception as error:  # noqa: BLE001 - the second run's failure is a finding
        second, second_error = None, describe_error(error)
    else:
        second_error = None
    return rows_for(first, second, second_error, keep)


def failure_row(error: Exception, run_settings: dict[str, str]) -> dict[str, Any]:
    """The one partial row of a unit that raised: unavailable, or an error (one that
    determinism caused says so)."""
    if isinstance(error, Unavailable):
        return {"output": None, "status": "unavailable", "error": str(error)}
    if isinstance(error, NotImplementedError):  # an op this device or build lacks
        return {"output": None, "status": "unavailable",
                "error": f"not implemented here: {describe_error(error)}"}
    status = "error"
    if run_settings.get("deterministic") in ("on",) and any(
        marker in str(error) for marker in DETERMINISM_MARKERS
    ):
        status = "raises-when-deterministic"
    detail = describe_error(error)
    if status == "error" and os.environ.get("REPRO_AUDIT_TRACEBACKS"):
        detail += "\n" + traceback.format_exc()
    return {"output": None, "status": status, "error": detail}


@dataclass
class UnitResult:
    """What running one unit gave the parent."""

    rows: list[dict[str, Any]] = field(default_factory=list)  # partial rows
    # run settings and threads as read back after the runs
    effective: dict[str, str] = field(default_factory=dict)
    trace: Any = None  # the op trace of a trace_only unit (audit.trace.model.Trace)


def run_unit(scenario: Any, unit: dict[str, Any], keep: str | None = None) -> UnitResult:
    """One (scenario, device, run settings) unit under its run settings: both audited runs,
    or (`trace_only`) a traced run alone, never one of the audited two. The settings it
    reports are read back after its runs (threads among them: a scenario may set them)."""
    from audit.scenarios.context import Context

    result = UnitResult()
    settings = RunSettings(unit["run_settings"])
    try:
        settings.apply()
        held = Held()
        context = Context(device=unit["device"], settings=dict(unit["settings"]))
        if unit.get("trace_only"):
            result.trace = traced_run(scenario, context, held)
        else:
            result.rows = audited_runs(scenario, context, keep, held)
    except Exception as error:  # noqa: BLE001 - a scenario's failure is a result, not a crash
        result.rows = [failure_row(error, unit["run_settings"])]
    finally:
        result.effective = settings.read_back()  # after the runs, before restoring
        settings.restore()
    return result
