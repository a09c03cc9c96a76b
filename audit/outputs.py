"""Flatten what a scenario returned into named output tensors ("params.0.weight").

Scenarios return mappings of names to tensors; nested mappings, lists, tuples and a
module's `state_dict()` are accepted and flattened to dotted names. Anything else (a
float, None, a string) is a user error that names the scenario and the output.
"""

from __future__ import annotations

from typing import Any, Mapping

from audit.errors import UserError


def flatten_outputs(scenario: str, returned: Any) -> dict[str, Any]:
    """Named tensors of one scenario run, in a stable (sorted) order."""
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
