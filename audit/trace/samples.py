"""The small value sample a trace keeps of each op output, so a report can say how far apart.

Smaller than an output's sample in the results (audit.capture.sample): a trace keeps one per
op output. Stored as dtype, bytes and the element count (`of`): the positions follow from it.
Torch-free; numpy is imported only where positions are computed.
"""

from __future__ import annotations

import base64
import functools
import math
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    from audit.capture.hashing import Part
    from audit.capture.sample import Sample

SAMPLE_SIZE = 64  # per output: whole up to this many elements, else this many positions


@functools.lru_cache(maxsize=4096)
def sample_positions(count: int) -> tuple[int, ...] | None:
    """Flat positions a trace keeps of `count` elements (None: all of them)."""
    if count <= SAMPLE_SIZE:
        return None
    import numpy as np

    return tuple(np.unique(np.rint(np.linspace(0, count - 1, SAMPLE_SIZE)).astype(np.int64))
                 .tolist())


def trace_sample(parts: list[Part]) -> dict[str, Any]:
    """The sample an event stores of a tensor's parts (audit.capture.hashing.tensor_parts)."""
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
