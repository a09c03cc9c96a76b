"""A unit's outputs as partial rows: each output described in both runs, and whether the
two agree. The parent completes each row with the unit's settings (audit.run.rows); the
pytest plugin makes its rows from the same descriptions.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def describe_outputs(outputs: dict[str, Any], keep: str | None = None
                     ) -> dict[str, dict[str, Any]]:
    """Digest, dtype, shape, kind and value sample of each output (bytes extracted once).

    With `keep` (a folder), the values' full bytes are stored there too, named by digest,
    so a report can give exact distances for outputs larger than a sample.
    """
    from audit.capture.hashing import digest_parts, dtype_name, tensor_parts
    from audit.capture.sample import sample_of_parts, values_part

    described = {}
    for output, tensor in outputs.items():
        kind, parts = tensor_parts(tensor)
        dtype, shape = dtype_name(tensor.dtype), tuple(tensor.shape)
        described[output] = {
            "digest": digest_parts(kind, dtype, shape, parts),
            "dtype": dtype,
            "shape": list(shape),
            "kind": kind,
            "sample": sample_of_parts(parts).to_json(),
        }
        if keep is not None:
            described[output]["stored"] = store_values(Path(keep), described[output]["digest"],
                                                       values_part(parts).data)
    return described


def store_values(folder: Path, digest: str, data: Any) -> str:
    """Write the bytes once per digest (content-addressed), atomically; returns the name."""
    name = f"{digest[:32]}.bin"
    target = folder / name
    if not target.exists():
        folder.mkdir(parents=True, exist_ok=True)
        temporary = folder / f".{name}.{os.getpid()}.tmp"
        temporary.write_bytes(memoryview(data))
        os.replace(temporary, target)
    return f"{folder.name}/{name}"


def rows_for(first: dict[str, Any], second: dict[str, Any] | None,
             second_error: str | None, keep: str | None = None) -> list[dict[str, Any]]:
    """Partial rows of a unit's two runs (flattened outputs; `second` None when the second
    run failed with `second_error`); the first run's values are kept in `keep`."""
    described = describe_outputs(first, keep)
    again = describe_outputs(second) if second is not None else {}
    return rows_of_described(described, again, second_error)


def rows_of_described(described: dict[str, dict[str, Any]],
                      again: dict[str, dict[str, Any]], second_error: str | None
                      ) -> list[dict[str, Any]]:
    """`rows_for` of outputs already described (`describe_outputs`) in both runs: the
    pytest plugin describes each value when the test hands it over."""
    rows = []
    for output, values in described.items():
        repeatable = again.get(output, {}).get("digest") == values["digest"]
        rows.append({"output": output, "status": "ok", "repeatable": repeatable,
                     "error": None if second_error is None
                     else f"second run failed: {second_error}", **values})
    for output in sorted(set(again) - set(described)):
        rows.append({"output": output, "status": "ok", "repeatable": False,
                     "error": "output only produced by the second run", **again[output]})
    return rows
