"""Flatten what a scenario returned into named output tensors ("params.0.weight").

Scenarios return mappings of names to tensors; nested mappings, lists, tuples and a
module's `state_dict()` are accepted and flattened to dotted names. A numpy array is the
tensor `torch.from_numpy` makes of it (same dtype, shape and bytes). Anything else (a
float, None, a string) is a user error that names the scenario and the output.
"""

from __future__ import annotations

from typing import Any, Mapping

from audit.errors import UserError


def flatten_outputs(scenario: str, returned: Any) -> dict[str, Any]:
    """Named tensors of one scenario run, in a stable (sorted) order."""
    import numpy as np
    import torch

    if not isinstance(returned, Mapping):
        raise UserError(
            f"scenario {scenario!r} returned {type(returned).__name__}; "
            "it must return a mapping of output names to tensors"
        )
    flat: dict[str, Any] = {}

    def visit(prefix: str, value: Any) -> None:
        if isinstance(value, torch.Tensor):
            flat[prefix] = value
        elif isinstance(value, np.ndarray):
            flat[prefix] = _from_numpy(scenario, prefix, value)
        elif isinstance(value, Mapping):
            if not value:
                raise UserError(f"scenario {scenario!r}: output {prefix!r} is an empty mapping")
            for key, item in value.items():
                visit(f"{prefix}.{key}" if prefix else str(key), item)
        elif isinstance(value, (list, tuple)):
            if not value:
                raise UserError(f"scenario {scenario!r}: output {prefix!r} is an empty sequence")
            for position, item in enumerate(value):
                visit(f"{prefix}.{position}" if prefix else str(position), item)
        else:
            raise UserError(
                f"scenario {scenario!r}: output {prefix!r} is a {type(value).__name__}, "
                "not a tensor"
            )

    visit("", returned)
    if not flat:
        raise UserError(f"scenario {scenario!r} returned no outputs")
    return dict(sorted(flat.items()))


def _from_numpy(scenario: str, output: str, array: Any) -> Any:
    """The array as a tensor of the same dtype and values (native byte order, contiguous)."""
    import torch

    native = array.astype(array.dtype.newbyteorder("="), copy=False)
    try:
        return torch.from_numpy(native.copy() if not native.flags.writeable else native)
    except TypeError as error:  # object, string, datetime arrays; uint16 on an old torch
        raise UserError(f"scenario {scenario!r}: output {output!r} is a numpy array of "
                        f"dtype {array.dtype}, which torch cannot hold ({error})") from None
