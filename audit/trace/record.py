"""Record every aten op a scenario runs, so a divergence can be traced to where it started.

A digest of an output says only that two environments disagree; `audit.trace.origin` says where
the disagreement began. For that, each op call is recorded under a `TorchDispatchMode`: op
name, the canonical digests (`audit.capture.hashing`, first 128 bits) of its tensor inputs and
outputs, output shapes and dtypes, the user line that called it, and a small value sample of
each output (so the report can say how far apart the two sides are at the origin).

What is not recorded, and why:
- ops returning uninitialised memory (`empty*`, `new_empty*`, a growing `resize_`): their
  bytes are garbage. Their outputs are marked `uninitialised` (equal on both sides) until
  an op writes them.
- view ops (`view`, `t`, `expand`, `detach`, ...): a view reads its base's bytes as they
  are, so it can never be where results start to differ, and torch versions add and drop
  views freely. A view is hashed only when an op consumes it; `Trace.views` then maps its
  digest to its base's, so a view one side takes and the other does not is not mistaken
  for a different value.
- `profiler::` ops (`record_function` markers that `optimizer.step` emits): no values.
- the previous contents of a tensor an op overwrites entirely (`copy_`, `fill_`,
  `uniform_`, an `out=` argument): those are not inputs of the op.

Recording itself only reads tensors (audit.trace.digests). But any active dispatch mode
makes torch treat every tensor as a subclass (`isTensorSubclassLike`), and some backward
formulas and composite ops then take another path: `prod`'s gradient, for one, rounds
differently (seen in 1.13 to 2.14). So a traced run is an extra run beside the audited
ones, and `audit.trace.origin` claims no origin for an output whose traced value differs
from the audited one.

This module imports no torch: `recorder_for` imports the recorder (audit.trace.recorder,
which does) only when a trace is recorded. Traces are read and compared without torch
(audit.trace.model, audit.trace.files), and traces files are named by audit.store.traces.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Mapping

from audit.trace.model import Trace

if TYPE_CHECKING:
    from audit.trace.recorder import Recorder

MAX_EVENTS = 100_000  # recording stops here (the trace says it is truncated)
MINIMUM_TORCH = "1.13"


def traced(function: Callable[[Any], Any], context: Any,
           max_events: int = MAX_EVENTS) -> tuple[Any, Trace]:
    """Run `function(context)` under the recorder; its result and the trace.

    `context.checkpoint(name, tensor)` adds a named anchor while it runs; when the result is
    a mapping of outputs, each output is added at the end as an anchor too.
    """
    recorder = recorder_for(max_events)
    previous = getattr(context, "checkpoint_hook", None)
    context.checkpoint_hook = recorder.record_checkpoint
    try:
        with recorder:
            result = function(context)
    finally:
        context.checkpoint_hook = previous
    if isinstance(result, Mapping):
        from audit.capture.outputs import flatten_outputs

        try:
            outputs = flatten_outputs("traced", result)
        except Exception:  # noqa: BLE001 - the caller reports bad outputs its own way
            outputs = {}
        for name, tensor in outputs.items():
            recorder.record_named("output", name, tensor)
    return result, recorder.trace


def tracing_unavailable() -> str | None:
    """Why this torch cannot record op traces (None: it can)."""
    try:
        from torch.utils._python_dispatch import TorchDispatchMode  # noqa: F401
    except ImportError:
        return f"op tracing needs TorchDispatchMode (torch >= {MINIMUM_TORCH})"
    return None


def recorder_for(max_events: int = MAX_EVENTS) -> Recorder:
    """A new recorder (a TorchDispatchMode); Unavailable where this torch has none."""
    from audit.scenarios.registry import Unavailable

    reason = tracing_unavailable()
    if reason is not None:
        raise Unavailable(reason)
    from audit.trace.recorder import Recorder

    return Recorder(max_events)
