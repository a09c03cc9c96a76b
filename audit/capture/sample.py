"""A small deterministic sample of an output's values, kept so a report can say how far.

A digest says only same or different. Outputs of at most `WHOLE_UP_TO` elements are kept
whole; larger ones keep `SAMPLE_SIZE` elements at evenly spaced flat positions, which are
the same positions in every environment for the same shape. Values are kept as their exact
little-endian bytes (base64), so distances in ULP are exact on what was kept.
"""

from __future__ import annotations

import base64
import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from audit.capture.hashing import Part, tensor_parts

WHOLE_UP_TO = 256
SAMPLE_SIZE = 256


@dataclass(frozen=True)
class Sample:
    """Kept values of one output: dtype name, flat positions (None: whole) and bytes.

    `numel` is the element count the standard positions were drawn from: results files
    then store that one number instead of 256 positions (rows a large report parses a
    million times stay small).
    """

    dtype: str
    index: list[int] | None
    data: bytes
    numel: int | None = None

    def to_json(self) -> dict[str, Any]:
        value: dict[str, Any] = {"dtype": self.dtype,
                                 "b64": base64.b64encode(self.data).decode("ascii")}
        if self.index is None:
            value["index"] = None
        elif self.numel is not None and self.index == sample_positions(self.numel):
            value["of"] = self.numel
        else:
            value["index"] = self.index
        return value

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Sample:
        numel = value.get("of")
        index = sample_positions(numel) if isinstance(numel, int) else value.get("index")
        return cls(value["dtype"], index, base64.b64decode(value["b64"]), numel)


def sample_positions(numel: int) -> list[int] | None:
    """Flat positions sampled from an output of `numel` elements (None: keep it whole).

    Evenly spaced, rounded half to even, deduplicated and sorted: the same positions for the
    same element count in every environment and every version of this package.
    """
    if numel <= WHOLE_UP_TO:
        return None
    return list(_positions(numel))


@functools.lru_cache(maxsize=4096)
def _positions(numel: int) -> tuple[int, ...]:
    spaced = np.rint(np.linspace(0, numel - 1, SAMPLE_SIZE)).astype(np.int64)
    return tuple(np.unique(spaced).tolist())


def take_sample(tensor: Any) -> Sample:
    """The sample of a tensor's values part (values of sparse, int_repr of quantized)."""
    _, parts = tensor_parts(tensor)
    return sample_of_parts(parts)


def values_part(parts: list[Part]) -> Part:
    """The part that holds the values: sparse values, a quantized int_repr, dense bytes."""
    return parts[-1] if parts[0].name == "indices" else parts[0]


def sample_of_parts(parts: list[Part]) -> Sample:
    """The sample of already extracted parts (the worker extracts them once per output)."""
    part = values_part(parts)
    width = part.data.nbytes // max(1, _numel(part.shape))
    positions = sample_positions(_numel(part.shape))
    if positions is None:
        return Sample(part.dtype, None, part.data.tobytes())
    elements = part.data.reshape(-1, width) if width else part.data.reshape(0, 1)
    numel = _numel(part.shape)
    return Sample(part.dtype, positions, elements[positions].tobytes(), numel)


def _numel(shape: tuple[int, ...]) -> int:
    count = 1
    for size in shape:
        count *= size
    return count
