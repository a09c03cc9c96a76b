"""What an op call reads and writes, from its schema, and what its other arguments were.

The recorder asks this once per op overload (`op_info`): which calls it skips (views,
uninitialised memory, profiler markers), which arguments an op writes, and which of those
it overwrites whole, so that their old contents are not counted as inputs. Torch-free: it
reads only the schema an op carries.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Iterable

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


@dataclass
class OpInfo:
    """What the schema says about an op, computed once per overload."""

    name: str
    overload: str
    view: bool
    uninitialising: bool
    overwriting: bool
    writes: tuple[int | str, ...]  # positions and names of arguments it writes
    outs: frozenset[str]  # `out=` arguments: written, never read


def op_info(func: Any) -> OpInfo:
    """`OpInfo` of an op overload (an `OpOverload`, as `__torch_dispatch__` receives it)."""
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
    return OpInfo(name, getattr(func, "_overloadname", ""), view and not writes,
                  name in UNINITIALISING, name in OVERWRITING, tuple(writes), frozenset(outs))


def scalar_digest(value: Any) -> str:
    """The digest of a Python number an op returned (`item()`)."""
    if isinstance(value, float):
        return f"scalar:float:{value.hex()}"
    return f"scalar:{type(value).__name__}:{value!r}"


def arguments_fingerprint(leaves: Iterable[Any]) -> str | None:
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
