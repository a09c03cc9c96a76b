"""What the judge tests share: results files built from real tensors (real digests, real
samples), so the distances the judges print come from the code path a real run takes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from audit.capture.hashing import digest
from audit.capture.sample import take_sample
from audit.store.results import make_header, make_row, write_atomic


def environment(torch_version: str = "2.13.0+cpu") -> dict[str, Any]:
    """The environment of a results file's header: one machine, this torch version."""
    return {"torch": torch_version, "numpy": "2.4.6", "python": "3.11.7", "os": "Linux 6.1",
            "cpu": {"model": "Example CPU @ 2.80GHz", "cores": 2}, "machine": "x86_64"}


def value_row(scenario: str, output: str, tensor: torch.Tensor, env_id: str,
              repeatable: bool = True, *, settings: dict[str, str]) -> dict[str, Any]:
    """The row of an output whose value is `tensor`, run on CPU under `settings`."""
    return make_row(scenario=scenario, output=output, status="ok", digest=digest(tensor),
                    repeatable=repeatable, device="cpu", torch_version="2.13.0+cpu",
                    settings=dict(settings), env_id=env_id,
                    dtype=str(tensor.dtype).replace("torch.", ""), shape=list(tensor.shape),
                    kind="dense", sample=take_sample(tensor).to_json())


def results(folder: Path, env_id: str, rows: list[dict[str, Any]],
            torch_version: str = "2.13.0+cpu") -> str:
    """A results file of `rows` in `folder`, named as a run names it; returns its path."""
    path = folder / f"torch-{torch_version}-{env_id}.jsonl"
    write_atomic(path, make_header(environment(torch_version), env_id), rows)
    return str(path)


def shifted(tensor: torch.Tensor, positions: list[int], ulps: int) -> torch.Tensor:
    """float32 `tensor` with the values at `positions` moved `ulps` representable floats
    away from zero."""
    copy = tensor.clone()
    bits = copy.view(torch.int32)
    for position in positions:
        value = float(copy[position])
        bits[position] += ulps if value > 0 else -ulps  # away from zero: `ulps` steps
    return copy
