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

Recording itself only reads tensors: in place through ctypes for dense CPU tensors (never
through `Tensor.numpy()`, which would make a storage unresizable for good), from a copy
otherwise. But any active dispatch mode makes torch treat every tensor as a subclass
(`isTensorSubclassLike`), and some backward formulas and composite ops then take another
path: `prod`'s gradient, for one, rounds differently (seen in 1.13 to 2.14). So a traced
run is an extra run beside the audited ones, and `audit.trace.origin` claims no origin for an
output whose traced value differs from the audited one.

A digest is reused for a tensor of the same storage, offset, shape, strides and dtype while
the tensor first hashed lives and no op has written that storage. Writes that bypass the
dispatcher (through `.numpy()`, another process) are not seen.
Non-materialisable tensors (meta, some subclasses) get the digest None.

This module imports torch (and numpy) only to record: traces are read and compared without
them, and traces files are found and sorted with nothing but the standard library.
"""

from __future__ import annotations

import base64
import ctypes
import functools
import gzip
import hashlib
import json
import math
import os
import re
import sys
import sysconfig
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

from audit.store.results import TRACES_SUFFIX, unit_key

if TYPE_CHECKING:
    from audit.capture.sample import Sample

FORMAT = "repro-audit-trace/1"
DIGEST_CHARS = 32  # 128 bits of the canonical BLAKE3 digest: ample to tell values apart
SAMPLE_SIZE = 64  # per output: whole up to this many elements, else this many positions
MAX_EVENTS = 100_000  # recording stops here (the trace says it is truncated)
UNINITIALISED = "uninitialised"
UNINITIALISING = frozenset({
    "aten::empty", "aten::empty_like", "aten::empty_strided", "aten::empty_permuted",
    "aten::new_empty", "aten::new_empty_strided", "aten::resize_", "aten::resize_as_",
})
# Ops that replace every element of `self`: its old contents are not an input.
OVERWRITING = frozenset({
    "aten::fill_", "aten::zero_", "aten::copy_", "aten::uniform_", "aten::normal_",
    "aten::random_", "aten::bernoulli_", "aten::exponential_", "aten::geometric_",
    "aten::cauchy_", "aten::log_normal_",
})
# Ops that write arguments their schema does not mark as written (torch's schema says
# `Tensor? running_mean`, yet training updates it in place, without a version bump): their
# new values would otherwise be cached stale and have no producer.
UNDECLARED_WRITES: dict[str, tuple[int | str, ...]] = {
    name: (3, "running_mean", 4, "running_var")
    for name in ("aten::native_batch_norm", "aten::cudnn_batch_norm",
                 "aten::miopen_batch_norm")}
IGNORED_NAMESPACES = ("profiler::",)  # record_function markers (optimizer.step): no values
MINIMUM_TORCH = "1.13"
ANCHORS = ("checkpoint", "output")  # event kinds that name a value (alignment anchors)


@dataclass
class Event:
    """One recorded op call, checkpoint or scenario output.

    For an op, `inputs` are the digests of the tensors it read and `outputs` of those it
    returned (or, for an in-place op returning nothing, those it wrote); `shapes`, `dtypes`
    and `samples` describe the outputs. A checkpoint or output names one tensor: `op` is the
    name, and inputs and outputs are both its digest. Python numbers an op returns (`item()`)
    are recorded as `scalar:` digests. `args` fingerprints the non-tensor arguments.
    """

    index: int
    kind: str  # "op", "checkpoint" or "output"
    op: str
    overload: str = ""
    source: str | None = None  # "file.py:41", the first frame outside torch and audit
    inputs: list[str | None] = field(default_factory=list)
    outputs: list[str | None] = field(default_factory=list)
    shapes: list[list[int]] = field(default_factory=list)
    dtypes: list[str] = field(default_factory=list)
    samples: list[dict[str, Any] | None] = field(default_factory=list)
    args: str | None = None

    def to_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {"index": self.index, "kind": self.kind, "op": self.op}
        for name in ("overload", "source", "inputs", "outputs", "shapes", "dtypes", "samples",
                     "args"):
            value = getattr(self, name)
            if value:
                record[name] = value
        return record

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Event:
        return cls(index=int(value["index"]), kind=str(value["kind"]), op=str(value["op"]),
                   overload=value.get("overload", ""), source=value.get("source"),
                   inputs=list(value.get("inputs", [])), outputs=list(value.get("outputs", [])),
                   shapes=[list(shape) for shape in value.get("shapes", [])],
                   dtypes=list(value.get("dtypes", [])), samples=list(value.get("samples", [])),
                   args=value.get("args"))


@dataclass
class Trace:
    """Everything one run of one scenario unit did, in call order."""

    events: list[Event] = field(default_factory=list)
    views: dict[str, str] = field(default_factory=dict)  # view digest -> its base's digest
    torch: str = ""
    truncated: bool = False
    skipped: int = 0  # view and uninitialised-memory op calls, not recorded
    # (events counted, producers, anchors): built on first use by `producers`/`anchor`
    _index: tuple[int, dict[str, list[int]], dict[str, Event]] | None = field(
        default=None, repr=False, compare=False)

    def _indexed(self) -> tuple[int, dict[str, list[int]], dict[str, Event]]:
        """Producers and output anchors, built once per trace (the origin of every output
        of a unit is asked of the same two traces)."""
        if self._index is None or self._index[0] != len(self.events):
            producers: dict[str, list[int]] = {}
            anchors: dict[str, Event] = {}
            for event in self.events:
                if event.kind == "op":
                    for digest in event.outputs:
                        if digest is not None:
                            producers.setdefault(digest, []).append(event.index)
                elif event.kind == "output":
                    anchors[event.op] = event  # the last one of a name
            self._index = (len(self.events), producers, anchors)
        return self._index

    def producers(self) -> dict[str, list[int]]:
        """digest -> positions of the ops that output it, in call order."""
        return self._indexed()[1]

    def anchor(self, output: str) -> Event | None:
        """The last `output` event of that name."""
        return self._indexed()[2].get(output)

    def digests(self) -> set[str]:
        """Every value this run saw: read, produced or named."""
        seen: set[str] = set()
        for event in self.events:
            seen.update(d for d in event.inputs if d is not None)
            seen.update(d for d in event.outputs if d is not None)
        return seen

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "torch": self.torch, "truncated": self.truncated,
                "skipped": self.skipped, "views": self.views,
                "events": [event.to_json() for event in self.events]}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Trace:
        if value.get("format") != FORMAT:
            raise ValueError(f"not a trace of format {FORMAT}: {value.get('format')!r}")
        return cls(events=[Event.from_json(item) for item in value.get("events", [])],
                   views=dict(value.get("views", {})), torch=str(value.get("torch", "")),
                   truncated=bool(value.get("truncated", False)),
                   skipped=int(value.get("skipped", 0)))


# A unit's trace is stored under its unit key, made from the settings in effect.
trace_key = unit_key




def traces_path(results: Path) -> Path:
    """The traces beside a results file: `x.jsonl` (or `x.jsonl.gz`) -> `x.traces.jsonl.gz`."""
    name = Path(results).name
    for suffix in (".jsonl.gz", ".jsonl"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return Path(results).with_name(name + TRACES_SUFFIX)


# --- storage ----------------------------------------------------------------------------

COMPRESS_LEVEL = 6  # gzip's default 9 took twice as long for a file 2% smaller
_KEY = re.compile(r'"format":"[^"]*","key":("(?:[^"\\]|\\.)*")')


def trace_line(key: str, trace: Mapping[str, Any]) -> str:
    """A trace as one line of a traces file: its JSON with its key, compact, keys sorted."""
    return json.dumps({"key": key, **trace}, sort_keys=True, separators=(",", ":"))


def journal_line(key: str, trace: Mapping[str, Any]) -> str:
    """A line of a run's traces journal: the key (JSON), a tab, then `trace_line`, so the
    traces file is made from the journal without parsing a single trace again."""
    return json.dumps(key) + "\t" + trace_line(key, trace)


def write_traces(path: Path, traces: Mapping[str, Trace]) -> None:
    """Gzip'ed JSON Lines, one trace per line, sorted by key; atomic, byte-stable (mtime 0)."""
    write_trace_lines(path, {key: trace_line(key, trace.to_json())
                             for key, trace in traces.items()})


def write_trace_lines(path: Path, lines: Mapping[str, str]) -> None:
    """`write_traces` from lines made by `trace_line` (or read by `trace_lines`)."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as raw, \
                gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0,
                              compresslevel=COMPRESS_LEVEL) as stream:
            for key in sorted(lines):
                stream.write(lines[key].encode("utf-8") + b"\n")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def trace_lines(path: Path) -> dict[str, str]:
    """{key: line} of a traces file or journal, the traces left unparsed (a later line with
    the same key wins; a line that is not whole is skipped)."""
    lines: dict[str, str] = {}
    with open(path, "rb") as probe:
        compressed = probe.read(2) == b"\x1f\x8b"
    opener: Any = gzip.open if compressed else open
    try:
        with opener(path, "rt", encoding="utf-8", errors="replace") as stream:
            for line in stream:
                line = line.rstrip("\n")
                if not line.endswith("}"):
                    continue  # torn
                try:
                    if line.startswith('"'):  # a journal line: key, tab, trace line
                        key_text, _, line = line.partition("\t")
                        key = json.loads(key_text)
                    else:
                        found = _KEY.search(line)
                        key = json.loads(found.group(1)) if found else json.loads(line)["key"]
                except (ValueError, KeyError, TypeError):
                    continue
                lines[str(key)] = line
    except (EOFError, OSError):
        pass  # a torn end: what was whole is kept
    return lines


@dataclass
class _TraceLine:
    """A traces file line as msgspec decodes it (typed, in C): the key and the trace."""

    key: Any
    format: str = ""
    torch: str = ""
    truncated: bool = False
    skipped: int = 0
    views: dict[str, str] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)

    def trace(self) -> Trace:
        if self.format != FORMAT:
            raise ValueError(f"not a trace of format {FORMAT}: {self.format!r}")
        return Trace(events=self.events, views=self.views, torch=self.torch,
                     truncated=self.truncated, skipped=self.skipped)


@functools.cache
def _line_decoder() -> Callable[[str], tuple[str, Trace]] | None:
    """A typed msgspec decoder of trace lines (in C: 10x faster than json plus `from_json`,
    which took 3 of the report's 8 s), None without msgspec (the `report` extra) or where
    it cannot read the annotations (Python < 3.10)."""
    try:
        import msgspec

        decoder = msgspec.json.Decoder(_TraceLine)
    except Exception:  # noqa: BLE001 - the standard library reads the same lines
        return None

    def decode(line: str) -> tuple[str, Trace]:
        try:
            record = decoder.decode(line)
        except msgspec.MsgspecError as error:
            raise ValueError(str(error)) from error
        return str(record.key), record.trace()

    return decode


def decode_trace_line(line: str) -> tuple[str, Trace]:
    """(key, trace) of one line of a traces file (`trace_line`); ValueError if it is none."""
    decode = _line_decoder()
    if decode is not None:
        return decode(line)
    record = json.loads(line)
    return str(record["key"]), Trace.from_json(record)


def read_traces(path: Path) -> dict[str, Trace]:
    """Traces by key, from a traces file or a plain JSON Lines journal of them.

    A corrupt line, or a torn end of the file, is skipped with a warning; a later line
    with the same key replaces an earlier one.
    """
    import warnings

    traces: dict[str, Trace] = {}
    number = 0
    try:
        with open(path, "rb") as probe:
            compressed = probe.read(2) == b"\x1f\x8b"
        opener: Any = gzip.open if compressed else open
        with opener(path, "rt", encoding="utf-8", errors="replace") as stream:
            for number, line in enumerate(stream, start=1):
                try:
                    if line.startswith('"'):  # a journal line (journal_line)
                        line = line.partition("\t")[2]
                    key, trace = decode_trace_line(line)
                    traces[key] = trace
                except (ValueError, KeyError, TypeError) as error:
                    warnings.warn(f"{path}: line {number} skipped ({error})", stacklevel=2)
    except (EOFError, OSError) as error:
        warnings.warn(f"{path}: unreadable after line {number} ({error})", stacklevel=2)
    return traces


# --- recording ----------------------------------------------------------------------------

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


def recorder_for(max_events: int = MAX_EVENTS) -> Any:
    """A new recorder (a TorchDispatchMode); Unavailable where this torch has none."""
    from audit.scenarios.registry import Unavailable

    reason = tracing_unavailable()
    if reason is not None:
        raise Unavailable(reason)
    from torch.utils._python_dispatch import TorchDispatchMode

    global _RECORDER
    if _RECORDER is None:
        _RECORDER = _make_recorder_class(TorchDispatchMode)
    return _RECORDER(max_events)


_RECORDER: Any = None


@dataclass
class _OpInfo:
    """What the schema says about an op, computed once per overload."""

    name: str
    overload: str
    view: bool
    uninitialising: bool
    overwriting: bool
    writes: tuple[int | str, ...]  # positions and names of arguments it writes
    outs: frozenset[str]  # `out=` arguments: written, never read


def _op_info(func: Any) -> _OpInfo:
    schema = func._schema
    name = schema.name
    writes: list[int | str] = []
    outs = set()
    for position, argument in enumerate(schema.arguments):
        alias = argument.alias_info
        if alias is not None and alias.is_write:
            writes += [argument.name] if argument.kwarg_only else [position, argument.name]
            if argument.kwarg_only:
                outs.add(argument.name)
    writes += [where for where in UNDECLARED_WRITES.get(name, ()) if where not in writes]
    view = any(r.alias_info is not None and not r.alias_info.is_write for r in schema.returns)
    view = view or name.startswith(IGNORED_NAMESPACES)
    return _OpInfo(name, getattr(func, "_overloadname", ""), view and not writes,
                   name in UNINITIALISING, name in OVERWRITING, tuple(writes), frozenset(outs))


def _internal_prefixes() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Folders whose frames are not user code (torch, audit, the standard library)."""
    import torch

    audit = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    scenarios = os.path.join(audit, "scenarios")
    internal = [os.path.dirname(os.path.abspath(torch.__file__)) + os.sep, audit + os.sep]
    for key in ("stdlib", "platstdlib"):
        path = sysconfig.get_paths().get(key)
        if path:
            internal.append(os.path.abspath(path) + os.sep)
    # Built-in scenarios are user code, except the plumbing they call.
    user = [scenarios + os.sep]
    return tuple(internal), tuple(user)


_PLUMBING = ("context.py", "registry.py", "__init__.py")


def _scalar_digest(value: Any) -> str:
    if isinstance(value, float):
        return f"scalar:float:{value.hex()}"
    return f"scalar:{type(value).__name__}:{value!r}"


def _fingerprint(leaves: Iterable[Any]) -> str | None:
    """Short hash of the non-tensor arguments (devices and generators left out)."""
    parts = []
    for leaf in leaves:
        kind = type(leaf).__name__
        if isinstance(leaf, float):
            parts.append(leaf.hex())
        elif kind in ("device", "Generator"):
            parts.append(kind)
        elif isinstance(leaf, (bool, int, str)) or leaf is None:
            parts.append(repr(leaf))
        else:
            parts.append(f"{kind}:{leaf}")
    if not parts:
        return None
    return hashlib.blake2b("|".join(parts).encode(), digest_size=8).hexdigest()


@functools.lru_cache(maxsize=4096)
def sample_positions(count: int) -> tuple[int, ...] | None:
    """Flat positions a trace keeps of `count` elements (None: all of them)."""
    if count <= SAMPLE_SIZE:
        return None
    import numpy as np

    return tuple(np.unique(np.rint(np.linspace(0, count - 1, SAMPLE_SIZE)).astype(np.int64))
                 .tolist())


def _sample(parts: list[Any]) -> dict[str, Any]:
    """Like `audit.capture.sample.sample_of_parts`, smaller: a trace keeps one per op output.

    Stored as dtype, bytes and the element count (`of`): the positions follow from it.
    """
    from audit.capture.sample import values_part

    part = values_part(parts)
    count = math.prod(part.shape)
    positions = sample_positions(count)
    if positions is None:
        data = part.data.tobytes()
    else:
        data = part.data.reshape(-1, part.data.nbytes // count)[list(positions)].tobytes()
    return {"dtype": part.dtype, "of": count, "b64": base64.b64encode(data).decode("ascii")}


def sample_of(stored: Any) -> Sample | None:
    """The `audit.capture.sample.Sample` a trace event stored (None where it kept none)."""
    from audit.capture.sample import Sample
    if not isinstance(stored, Mapping):
        return None
    positions = sample_positions(int(stored["of"]))
    return Sample(str(stored["dtype"]), None if positions is None else list(positions),
                  base64.b64decode(stored["b64"]))


def _make_recorder_class(base: type) -> type:
    import numpy as np
    import torch
    from torch.utils._pytree import tree_flatten

    def leaves_of(value: Any) -> list[Any]:
        """`tree_flatten(value)[0]`, without its generic machinery for the plain lists,
        tuples and dicts ops take and return (a tenth of a traced run went to it); any
        other container (named tuples, torch.return_types, ...) still goes through it, so
        the leaves and their order are the same."""
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

    _LEAF_TYPES = frozenset({torch.Tensor, torch.nn.Parameter, int, float, bool, str,
                             type(None), complex, torch.dtype, torch.device, torch.layout,
                             torch.memory_format})

    from audit.capture.hashing import Part, digest_parts, dtype_name, tensor_parts

    internal, user = _internal_prefixes()
    little = sys.byteorder == "little"

    def parts_of(tensor: Any) -> tuple[str, list[Part]]:
        """`tensor_parts`, but never handing the tensor's own storage to numpy.

        `Tensor.numpy()` marks a storage as not resizable, for good: a later `resize_`, or
        an `out=` op that resizes, would then fail where it ran before. Dense CPU bytes are
        read in place through ctypes instead; anything else is hashed from a copy.
        """
        if (tensor.layout == torch.strided and not tensor.is_quantized and little
                and tensor.device.type == "cpu" and tensor.is_contiguous()
                and not tensor.is_conj() and not tensor.is_neg()):
            nbytes = tensor.numel() * tensor.element_size()
            data = (np.frombuffer((ctypes.c_ubyte * nbytes).from_address(tensor.data_ptr()),
                                  dtype=np.uint8) if nbytes else np.zeros(0, dtype=np.uint8))
            return "dense", [Part("values", dtype_name(tensor.dtype), tuple(tensor.shape), data)]
        moved = tensor.device.type != "cpu" and tensor.layout == torch.strided
        return tensor_parts(tensor if moved and not tensor.is_quantized else tensor.clone())

    inference_mode = getattr(torch, "is_inference_mode_enabled", lambda: False)

    def storage_key(tensor: Any) -> tuple[str, int] | None:
        """(device, address of the storage's first byte): what a write changes."""
        try:
            start = int(tensor.data_ptr()) - tensor.storage_offset() * tensor.element_size()
            return str(tensor.device), start
        except Exception:  # noqa: BLE001 - sparse, meta, subclasses: not cached
            return None

    def geometry(tensor: Any) -> tuple[Any, ...] | None:
        """Tensors with the same geometry on an unwritten storage hold the same values."""
        storage = storage_key(tensor)
        if storage is None:
            return None
        return (storage, tensor.storage_offset(), tuple(tensor.shape), tuple(tensor.stride()),
                tensor.dtype, tensor.is_conj(), tensor.is_neg())

    try:
        from torch.multiprocessing.reductions import StorageWeakRef
    except ImportError:  # pragma: no cover - every audited torch has it
        StorageWeakRef = None  # noqa: N806

    def storage_reference(tensor: Any) -> Any:
        """A weak reference to the tensor's storage (None where torch gives none)."""
        if StorageWeakRef is None:
            return None
        try:
            storage = (tensor.untyped_storage() if hasattr(tensor, "untyped_storage")
                       else tensor.storage())  # torch < 2.0
            return StorageWeakRef(storage)
        except Exception:  # noqa: BLE001 - sparse, meta, subclasses: no link
            return None

    def version(tensor: Any) -> int | None:
        try:
            return int(tensor._version)
        except Exception:  # noqa: BLE001 - inference tensors have no version counter
            return None

    class Recorder(base):  # type: ignore[misc, valid-type]
        """Records op calls into `self.trace` while active (`with recorder:`)."""

        leaves = staticmethod(leaves_of)  # for the tests: the same as tree_flatten's

        @classmethod
        def _should_skip_dynamo(cls) -> bool:
            """No: torch >= 2.3 otherwise wraps `__torch_dispatch__` in torch._dynamo.disable,
            which imports torch._dynamo on the first op (1.1 s in every traced worker) and
            adds a frame hook to every op call. A recorded run compiles nothing."""
            return False

        def __init__(self, max_events: int) -> None:
            super().__init__()
            self.trace = Trace(torch=torch.__version__)
            self.max_events = max_events
            self.busy = False  # our own reads of tensors are not recorded
            self.infos: dict[Any, _OpInfo] = {}
            self.frames: dict[str, str | None] = {}  # file -> its name, None: not user code
            # geometry -> (weakref to the tensor hashed, its version, digest, sample, in-place)
            self.cache: dict[tuple[Any, ...], tuple[Any, int, str | None, Any, bool]] = {}
            self.by_storage: dict[tuple[str, int], set[tuple[Any, ...]]] = {}
            # storage -> (weak reference to it, elements, digest) of its largest value
            self.roots: dict[tuple[str, int], tuple[Any, int, str | None]] = {}

        # -- the dispatch hook ---------------------------------------------------------
        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (),
                               kwargs: Any = None) -> Any:
            kwargs = kwargs or {}
            if self.busy or self.trace.truncated:
                return func(*args, **kwargs)
            info = self.infos.get(func)
            if info is None:
                info = self.infos[func] = _op_info(func)
            if info.view:
                self.trace.skipped += 1
                return func(*args, **kwargs)
            if info.uninitialising:
                return self.uninitialising(func, info, args, kwargs)
            self.busy = True
            try:
                prepared = self.prepare(info, args, kwargs)
            except Exception:  # noqa: BLE001 - recording must never break the scenario
                prepared = None
            finally:
                self.busy = False
            result = func(*args, **kwargs)
            self.busy = True
            try:
                if prepared is None:
                    self.forget_all()
                    self.trace.skipped += 1
                else:
                    self.record_op(info, result, *prepared)
            except Exception:  # noqa: BLE001 - recording must never break the scenario
                self.forget_all()
                self.trace.skipped += 1
            finally:
                self.busy = False
            return result

        def prepare(self, info: _OpInfo, args: Any, kwargs: Any) -> tuple[Any, ...]:
            """Before the call: digests of what it reads, arguments, what it will write."""
            read = list(args[1:]) if info.overwriting else list(args)
            read += [value for name, value in kwargs.items()
                     if name not in info.outs and not (info.overwriting and name == "self")]
            leaves = leaves_of(read)
            inputs = [self.digest(leaf)[0] for leaf in leaves if isinstance(leaf, torch.Tensor)]
            fingerprint = _fingerprint(leaf for leaf in leaves
                                       if not isinstance(leaf, torch.Tensor))
            written = self.written(info, args, kwargs)
            return inputs, fingerprint, written, [storage_key(t) for t in written]

        def uninitialising(self, func: Any, info: _OpInfo, args: Any, kwargs: Any) -> Any:
            written = self.written(info, args, kwargs)
            before = [(storage_key(t), t.numel()) for t in written]
            result = func(*args, **kwargs)
            self.trace.skipped += 1
            self.busy = True
            try:
                self.invalidate(written, [key for key, _ in before])
                grown = not before or result.numel() > before[0][1]
                if isinstance(result, torch.Tensor) and result.numel() and grown:
                    self.remember(result, UNINITIALISED, None, bool(written))
            except Exception:  # noqa: BLE001 - recording must never break the scenario
                self.forget_all()
            finally:
                self.busy = False
            return result

        def record_op(self, info: _OpInfo, result: Any, inputs: list[str | None],
                      fingerprint: str | None, written: list[Any],
                      before: list[tuple[str, int] | None]) -> None:
            self.invalidate(written, before)
            leaves = leaves_of(result)
            if written:  # what it wrote and did not return (`_foreach_add_`, running stats)
                returned = {geometry(leaf) for leaf in leaves if isinstance(leaf, torch.Tensor)}
                leaves = list(leaves) + [tensor for tensor in written
                                         if geometry(tensor) not in returned]
            event = Event(index=len(self.trace.events), kind="op", op=info.name,
                          overload=info.overload, source=self.caller(), inputs=inputs,
                          args=fingerprint)
            for leaf in leaves:
                if isinstance(leaf, torch.Tensor):
                    digest, sample = self.digest(leaf, in_place=bool(info.writes))
                    event.outputs.append(digest)
                    event.shapes.append(list(leaf.shape))
                    event.dtypes.append(dtype_name(leaf.dtype))
                    event.samples.append(sample)
                elif isinstance(leaf, (bool, int, float, complex)):
                    event.outputs.append(_scalar_digest(leaf))
                    event.shapes.append([])
                    event.dtypes.append(f"python {type(leaf).__name__}")
                    event.samples.append(None)
            self.append(event)

        def written(self, info: _OpInfo, args: Any, kwargs: Any) -> list[Any]:
            found = []
            for where in info.writes:
                if isinstance(where, int):
                    value = args[where] if where < len(args) else None
                else:
                    value = kwargs.get(where)
                found += [leaf for leaf in leaves_of(value)
                          if isinstance(leaf, torch.Tensor)]
            return found

        # -- named values --------------------------------------------------------------
        def record_checkpoint(self, name: str, tensor: Any) -> None:
            """`ctx.checkpoint(name, tensor)`: a named value both traces can align on."""
            self.record_named("checkpoint", str(name), tensor)

        def record_named(self, kind: str, name: str, tensor: Any) -> None:
            if self.trace.truncated or not isinstance(tensor, torch.Tensor):
                return
            was_busy, self.busy = self.busy, True
            try:
                digest, sample = self.digest(tensor)
                source = self.caller() if kind == "checkpoint" else None
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

        # -- digests -------------------------------------------------------------------
        def digest(self, tensor: Any, in_place: bool = False) -> tuple[str | None, Any]:
            """Digest and sample of a tensor, from the cache while its storage is unwritten."""
            try:
                where = geometry(tensor)
                entry = self.cache.get(where) if where is not None else None
                if entry is not None:
                    hashed = entry[0]()
                    now = version(hashed) if hashed is not None else None
                    if now is not None and (now == entry[1] or (entry[4] and now == entry[1] + 1)):
                        return entry[2], entry[3]
                base = tensor._base if tensor._is_view() else None
                root = self.digest(base)[0] if base is not None else self.alias_of(where)
                if root == UNINITIALISED:
                    return UNINITIALISED, None
                if tensor.device.type == "meta":
                    raise ValueError("meta tensors have no values")
                kind, parts = parts_of(tensor)
                digest = digest_parts(kind, dtype_name(tensor.dtype), tuple(tensor.shape),
                                      parts)[:DIGEST_CHARS]
                sample = _sample(parts)
            except Exception:  # noqa: BLE001 - a value we cannot read is unknown, not fatal
                return None, None
            if root is not None and root != digest:
                self.trace.views[digest] = root
            self.remember(tensor, digest, sample, in_place)
            return digest, sample

        def alias_of(self, where: tuple[Any, ...] | None) -> str | None:
            """The digest of the largest tensor hashed on this storage, unwritten since.

            A detached alias (`detach()`, `.data`, the gradient autograd hands a leaf after
            `sum_to_size`'s view) has no `_base`, but reads bytes an op made: without the
            link the value would seem to come from nowhere (the origin of every bias after
            an optimizer step went unnamed). The cache's entry of that op's output is gone
            by then (its Python object dies when autograd takes the tensor), so each
            storage keeps its root apart, with a weak reference to the storage itself:
            while that lives, its address is not reused.
            """
            root = self.roots.get(where[0]) if where is not None else None
            if root is None:
                return None
            if root[0].expired():
                del self.roots[where[0]]
                return None
            return root[2]

        def remember(self, tensor: Any, digest: str | None, sample: Any,
                     in_place: bool) -> None:
            now, where = version(tensor), geometry(tensor)
            if now is None or where is None:
                return
            self.forget(where)

            def dropped(_: Any, where: tuple[Any, ...] = where) -> None:
                entry = self.cache.get(where)
                if entry is not None and entry[0]() is None:
                    self.forget(where)

            in_place = in_place and not inference_mode()
            self.cache[where] = (weakref.ref(tensor, dropped), now, digest, sample, in_place)
            self.by_storage.setdefault(where[0], set()).add(where)
            size = tensor.numel()
            root = self.roots.get(where[0])
            if root is None or root[0].expired() or size > root[1]:
                reference = storage_reference(tensor)
                if reference is not None:
                    self.roots[where[0]] = (reference, size, digest)

        def forget(self, where: tuple[Any, ...]) -> None:
            if self.cache.pop(where, None) is not None:
                owners = self.by_storage.get(where[0])
                if owners is not None:
                    owners.discard(where)
                    if not owners:
                        del self.by_storage[where[0]]

        def invalidate(self, written: list[Any], before: list[tuple[str, int] | None]) -> None:
            """Every cached tensor on a storage just written is stale (views, `.data`).

            `before` are the storages the written tensors had before the call: an op that
            resizes its output moves it to a new storage.
            """
            for key in before + [storage_key(tensor) for tensor in written]:
                self.roots.pop(key, None)
                for where in list(self.by_storage.get(key, ())) if key is not None else ():
                    self.forget(where)

        def forget_all(self) -> None:
            """When it is unknown what an op wrote, nothing cached can be trusted."""
            self.cache.clear()
            self.by_storage.clear()
            self.roots.clear()

        # -- where in the user's code --------------------------------------------------
        def caller(self) -> str | None:
            frame: Any = sys._getframe(1)
            while frame is not None:
                filename = frame.f_code.co_filename
                name = self.frames.get(filename, "")
                if name == "":  # not seen yet
                    path = os.path.abspath(filename)
                    skip = path.startswith(internal) and not (
                        path.startswith(user) and os.path.basename(path) not in _PLUMBING)
                    name = self.frames[filename] = None if skip else Path(filename).name
                if name is not None:
                    return f"{name}:{frame.f_lineno}"
                frame = frame.f_back
            return None

    return Recorder
