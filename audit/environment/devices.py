"""Which devices this torch can run on, and why the others are unavailable."""

from __future__ import annotations

import contextlib
from typing import Any


def device_status(device: str) -> str | None:
    """None when `device` can run here, otherwise the reason it cannot."""
    import torch

    if device == "cpu":
        return None
    if device == "cuda":
        if not torch.cuda.is_available():
            build = getattr(torch.version, "cuda", None)
            return "no CUDA device" if build else "this torch is built without CUDA"
        return None
    if device == "mps":
        backend = getattr(torch.backends, "mps", None)
        if backend is None:
            return "this torch has no MPS backend"
        return None if backend.is_available() else "no MPS device (Apple silicon only)"
    if device == "xpu":
        xpu = getattr(torch, "xpu", None)
        if xpu is None:
            return "this torch has no XPU backend"
        return None if xpu.is_available() else "no XPU device"
    return f"unknown device {device!r}"


def device_properties() -> dict[str, Any]:
    """What a device's results depend on (CUDA samplers depend on the SM count)."""
    import torch

    found: dict[str, Any] = {}
    if torch.cuda.is_available():
        cuda = []
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            cuda.append({
                "name": props.name,
                "capability": f"{props.major}.{props.minor}",
                "sm_count": props.multi_processor_count,
                "max_threads_per_sm": getattr(props, "max_threads_per_multi_processor", None),
                "memory_bytes": props.total_memory,
            })
        cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
        nccl = None
        with contextlib.suppress(Exception):  # NCCL absent or not built: simply not recorded
            nccl = ".".join(map(str, torch.cuda.nccl.version()))
        found["cuda"] = {"devices": cuda, "cuda_version": torch.version.cuda,
                         "cudnn_version": cudnn, "nccl_version": nccl}
    backend = getattr(torch.backends, "mps", None)
    if backend is not None and backend.is_available():
        found["mps"] = {"available": True}
    return found
