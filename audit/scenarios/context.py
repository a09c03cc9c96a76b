"""What a scenario receives: the device to run on, the settings in effect, fixed inputs.

Inputs for op scenarios come from numpy's legacy `RandomState`, a stream numpy promises
never to change, so that an op's result does not differ only because torch's RNG did.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from audit.scenarios.registry import Unavailable

# Draws of `Context.fixed`, kept per process: every unit runs its scenario two or three
# times and under several run settings, and drawing the same inputs from RandomState
# again showed up in profiles of the audit. Bounded; callers get a cast or a copy.
_DRAWS: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
DRAW_CACHE_BYTES = 256 * 1024 * 1024


@dataclass
class Context:
    """Per-run context handed to every scenario function."""

    device: str  # "cpu", "cuda", "mps", "xpu"
    settings: Mapping[str, Any] = field(default_factory=dict)
    checkpoint_hook: Callable[[str, Any], None] | None = None

    @property
    def torch_device(self) -> Any:
        import torch

        return torch.device(self.device)

    def generator(self, seed: int) -> Any:
        """A `torch.Generator` on this context's device, seeded with `seed`."""
        import torch

        generator = torch.Generator(device=self.device)
        generator.manual_seed(seed)
        return generator

    def fixed(self, *shape: int, dtype: Any = None, seed: int = 0, kind: str = "normal") -> Any:
        """A tensor on this device from numpy's frozen `RandomState(seed)` stream.

        `kind` is "normal" (standard normal), "uniform" ([0, 1)) or "int" (0..9).
        Values are drawn in float64 and cast, so every dtype sees the same stream.
        """
        import torch

        if dtype is None:
            dtype = torch.int64 if kind == "int" else torch.float32
        drawn = torch.from_numpy(_draw(tuple(shape), seed, kind))  # the cache's own bytes
        if drawn.dtype == dtype:  # `to` would hand them out: a copy instead
            drawn = torch.from_numpy(drawn.numpy().copy())
        return drawn.to(dtype=dtype).to(self.device)  # a cast makes a tensor of its own

    def require(self, condition: bool, reason: str) -> None:
        """Mark the cell `unavailable` with `reason` unless `condition` holds."""
        if not condition:
            raise Unavailable(reason)

    def checkpoint(self, name: str, tensor: Any) -> None:
        """Name an intermediate tensor, so traces from two environments align on it."""
        if self.checkpoint_hook is not None:
            self.checkpoint_hook(name, tensor)


def _draw(shape: tuple[int, ...], seed: int, kind: str) -> Any:
    """The values `Context.fixed` casts (the cached array itself: never hand it out)."""
    import numpy as np

    key = (shape, seed, kind)
    cached = _DRAWS.get(key)
    if cached is not None:
        _DRAWS.move_to_end(key)
        return cached
    state = np.random.RandomState(seed)
    if kind == "normal":
        values = state.standard_normal(shape)
    elif kind == "uniform":
        values = state.random_sample(shape)
    elif kind == "int":
        values = state.randint(0, 10, size=shape).astype(np.int64)
    else:
        raise ValueError(f"unknown kind {kind!r}")
    values = np.ascontiguousarray(values)
    if values.nbytes <= DRAW_CACHE_BYTES:
        _DRAWS[key] = values
        while sum(item.nbytes for item in _DRAWS.values()) > DRAW_CACHE_BYTES:
            _DRAWS.popitem(last=False)
    return values
