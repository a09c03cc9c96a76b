"""Flatten what a scenario returned into named output tensors ("params.0.weight").

Scenarios return mappings of names to tensors; nested mappings, lists, tuples and a
module's `state_dict()` are accepted and flattened to dotted names. A numpy array is the
tensor `torch.from_numpy` makes of it (same dtype, shape and bytes). Anything else (a
float, None, a string) is a user error that names the scenario and the output.

Two keys that flatten to one name (`{"a.b": x, "a": {"b": y}}`) and an empty key are user
errors too: one output would silently replace the other, or lose its place in the name.
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
    origins: dict[str, tuple[Any, ...]] = {}  # output name -> the keys that lead to it

    def visit(path: tuple[Any, ...], prefix: str, value: Any) -> None:
        if isinstance(value, (torch.Tensor, np.ndarray)):
            if prefix in flat:
                raise UserError(f"scenario {scenario!r}: output name {prefix!r} comes from both "
                                f"{_keys(origins[prefix])} and {_keys(path)}")
            origins[prefix] = path
            is_tensor = isinstance(value, torch.Tensor)
            flat[prefix] = value if is_tensor else _from_numpy(scenario, prefix, value)
        elif isinstance(value, Mapping):
            if not value:
                raise UserError(f"scenario {scenario!r}: output {prefix!r} is an empty mapping")
            for key, item in value.items():
                part = f"{key}" if path else str(key)  # the names outputs always had
                if not part:
                    raise UserError(_empty_key(scenario, path, key))
                visit((*path, key), f"{prefix}.{part}" if path else part, item)
        elif isinstance(value, (list, tuple)):
            if not value:
                raise UserError(f"scenario {scenario!r}: output {prefix!r} is an empty sequence")
            for position, item in enumerate(value):
                visit((*path, position), f"{prefix}.{position}" if path else str(position), item)
        else:
            raise UserError(
                f"scenario {scenario!r}: output {prefix!r} is a {type(value).__name__}, "
                "not a tensor"
            )

    visit((), "", returned)
    if not flat:
        raise UserError(f"scenario {scenario!r} returned no outputs")
    return dict(sorted(flat.items()))


def _keys(path: tuple[Any, ...]) -> str:
    """The keys and positions that lead to an output, as the scenario wrote them: 'a' → 0."""
    return " → ".join(repr(key) for key in path)


def _empty_key(scenario: str, path: tuple[Any, ...], key: Any) -> str:
    """Why an empty key is refused: at the top it is an empty name; below, the name would
    lose a part ('a.' or, for `{"": {"b": x}}`, plain 'b', which another key may also make)."""
    if not path:
        return f"scenario {scenario!r}: an output name is empty (key {key!r})"
    return (f"scenario {scenario!r}: output {_keys(path)} holds an empty key ({key!r}); "
            "every part of an output name must be non-empty")


def _from_numpy(scenario: str, output: str, array: Any) -> Any:
    """The array as a tensor of the same dtype and values (native byte order, contiguous)."""
    import torch

    native = array.astype(array.dtype.newbyteorder("="), copy=False)
    try:
        return torch.from_numpy(native.copy() if not native.flags.writeable else native)
    except TypeError as error:  # object, string, datetime arrays; uint16 on an old torch
        raise UserError(f"scenario {scenario!r}: output {output!r} is a numpy array of "
                        f"dtype {array.dtype}, which torch cannot hold ({error})") from None
