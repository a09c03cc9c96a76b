"""The op recorder: a `TorchDispatchMode` that records every op call into a `Trace`.

It imports torch at its top: audit.trace.record imports it only when a trace is recorded
(`recorder_for`), so that reading and comparing traces never needs torch. Each call's
inputs are digested before it runs and its outputs after (audit.trace.digests); views,
uninitialised memory and profiler markers are skipped (audit.trace.ops); `source` is the
user's line that called it (audit.trace.frames).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from audit.capture.hashing import dtype_name
from audit.trace.digests import DigestCache, geometry, storage_key
from audit.trace.frames import CallerLocator
from audit.trace.model import UNINITIALISED, Event, Trace
from audit.trace.ops import OpInfo, arguments_fingerprint, op_info, scalar_digest

_LEAF_TYPES = frozenset({torch.Tensor, torch.nn.Parameter, int, float, bool, str,
                         type(None), complex, torch.dtype, torch.device, torch.layout,
                         torch.memory_format})


def leaves_of(value: Any) -> list[Any]:
    """`tree_flatten(value)[0]`, without its generic machinery for the plain lists, tuples
    and dicts ops take and return (a large share of a traced run went to it); any other
    container (named tuples, torch.return_types, ...) still goes through it, so the leaves
    and their order are the same."""
    kind = type(value)
    if kind is list or kind is tuple:
        found: list[Any] = []
        for item in value:
            inner = type(item)
            if inner is list or inner is tuple or inner is dict:
                found += leaves_of(item)
            elif inner in _LEAF_TYPES:
                found.append(item)
            else:
                found += tree_flatten(item)[0]
        return found
    if kind is dict:
        return leaves_of(list(value.values()))
    if kind in _LEAF_TYPES:
        return [value]
    return tree_flatten(value)[0]


def written_tensors(info: OpInfo, args: Any, kwargs: Any) -> list[Any]:
    """The tensors a call of this op writes."""
    found = []
    for where in info.writes:
        if isinstance(where, int):
            value = args[where] if where < len(args) else None
        else:
            value = kwargs.get(where)
        found += [leaf for leaf in leaves_of(value) if isinstance(leaf, torch.Tensor)]
    return found


def before_call(info: OpInfo, args: Any, kwargs: Any, digests: DigestCache
                ) -> tuple[Any, ...]:
    """Before an op's call: digests of what it reads, the fingerprint of its other
    arguments, the tensors it will write and their storages."""
    read = list(args[1:]) if info.overwriting else list(args)
    read += [value for name, value in kwargs.items()
             if name not in info.outs and not (info.overwriting and name == "self")]
    leaves = leaves_of(read)
    inputs = [digests.digest(leaf)[0] for leaf in leaves if isinstance(leaf, torch.Tensor)]
    fingerprint = arguments_fingerprint(leaf for leaf in leaves
                                        if not isinstance(leaf, torch.Tensor))
    written = written_tensors(info, args, kwargs)
    return inputs, fingerprint, written, [storage_key(t) for t in written]


def add_outputs(event: Event, leaves: list[Any], digests: DigestCache, in_place: bool) -> None:
    """Each tensor or Python number an op returned or wrote, as an output of its event."""
    for leaf in leaves:
        if isinstance(leaf, torch.Tensor):
            digest, sample = digests.digest(leaf, in_place=in_place)
            event.outputs.append(digest)
            event.shapes.append(list(leaf.shape))
            event.dtypes.append(dtype_name(leaf.dtype))
            event.samples.append(sample)
        elif isinstance(leaf, (bool, int, float, complex)):
            event.outputs.append(scalar_digest(leaf))
            event.shapes.append([])
            event.dtypes.append(f"python {type(leaf).__name__}")
            event.samples.append(None)


class Recorder(TorchDispatchMode):
    """Records op calls into `self.trace` while active (`with recorder:`)."""

    leaves = staticmethod(leaves_of)  # for the tests: the same as tree_flatten's

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        """No: torch >= 2.3 otherwise wraps `__torch_dispatch__` in torch._dynamo.disable,
        which imports torch._dynamo on the first op (slow, in every traced worker) and
        adds a frame hook to every op call. A recorded run compiles nothing."""
        return False

    def __init__(self, max_events: int) -> None:
        super().__init__()
        self.trace = Trace(torch=torch.__version__)
        self.max_events = max_events
        self.busy = False  # our own reads of tensors are not recorded
        self.infos: dict[Any, OpInfo] = {}
        self.digests = DigestCache(self.trace.views)
        self.callers = CallerLocator(os.path.dirname(os.path.abspath(torch.__file__)))

    # -- the dispatch hook -------------------------------------------------------------
    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (),
                           kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if self.busy or self.trace.truncated:
            return func(*args, **kwargs)
        info = self.infos.get(func)
        if info is None:
            info = self.infos[func] = op_info(func)
        if info.view:
            self.trace.skipped += 1
            return func(*args, **kwargs)
        if info.uninitialising:
            return self.uninitialising(func, info, args, kwargs)
        self.busy = True
        try:
            prepared = before_call(info, args, kwargs, self.digests)
        except Exception:  # noqa: BLE001 - recording must never break the scenario
            prepared = None
        finally:
            self.busy = False
        result = func(*args, **kwargs)
        self.busy = True
        try:
            if prepared is None:
                self.digests.forget_all()
                self.trace.skipped += 1
            else:
                self.record_op(info, result, *prepared)
        except Exception:  # noqa: BLE001 - recording must never break the scenario
            self.digests.forget_all()
            self.trace.skipped += 1
        finally:
            self.busy = False
        return result

    def uninitialising(self, func: Any, info: OpInfo, args: Any, kwargs: Any) -> Any:
        written = written_tensors(info, args, kwargs)
        before = [(storage_key(t), t.numel()) for t in written]
        result = func(*args, **kwargs)
        self.trace.skipped += 1
        self.busy = True
        try:
            self.digests.invalidate(written, [key for key, _ in before])
            grown = not before or result.numel() > before[0][1]
            if isinstance(result, torch.Tensor) and result.numel() and grown:
                self.digests.remember(result, UNINITIALISED, None, bool(written))
        except Exception:  # noqa: BLE001 - recording must never break the scenario
            self.digests.forget_all()
        finally:
            self.busy = False
        return result

    def record_op(self, info: OpInfo, result: Any, inputs: list[str | None],
                  fingerprint: str | None, written: list[Any],
                  before: list[tuple[str, int] | None]) -> None:
        self.digests.invalidate(written, before)
        leaves = leaves_of(result)
        if written:  # what it wrote and did not return (`_foreach_add_`, running stats)
            returned = {geometry(leaf) for leaf in leaves if isinstance(leaf, torch.Tensor)}
            leaves = list(leaves) + [tensor for tensor in written
                                     if geometry(tensor) not in returned]
        event = Event(index=len(self.trace.events), kind="op", op=info.name,
                      overload=info.overload, source=self.callers.locate(sys._getframe()),
                      inputs=inputs, args=fingerprint)
        add_outputs(event, leaves, self.digests, in_place=bool(info.writes))
        self.append(event)

    # -- named values ------------------------------------------------------------------
    def record_checkpoint(self, name: str, tensor: Any) -> None:
        """`ctx.checkpoint(name, tensor)`: a named value both traces can align on."""
        self.record_named("checkpoint", str(name), tensor)

    def record_named(self, kind: str, name: str, tensor: Any) -> None:
        if self.trace.truncated or not isinstance(tensor, torch.Tensor):
            return
        was_busy, self.busy = self.busy, True
        try:
            digest, sample = self.digests.digest(tensor)
            source = self.callers.locate(sys._getframe()) if kind == "checkpoint" else None
            self.append(Event(index=len(self.trace.events), kind=kind, op=name,
                              source=source, inputs=[digest], outputs=[digest],
                              shapes=[list(tensor.shape)],
                              dtypes=[dtype_name(tensor.dtype)], samples=[sample]))
        finally:
            self.busy = was_busy

    def append(self, event: Event) -> None:
        if len(self.trace.events) >= self.max_events:
            self.trace.truncated = True
            return
        self.trace.events.append(event)
