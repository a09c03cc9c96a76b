"""The environment of a run: everything not chosen per scenario, and its stable env-id."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
from typing import Any

# Variables that change results or how they are computed; recorded when set.
RESULT_VARIABLES = (
    "ATEN_CPU_CAPABILITY", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
    "OPENBLAS_CORETYPE", "MKL_CBWR", "CUBLAS_WORKSPACE_CONFIG", "CUDA_LAUNCH_BLOCKING",
    "PYTHONHASHSEED", "KMP_AFFINITY", "DNNL_MAX_CPU_ISA", "ONEDNN_MAX_CPU_ISA",
    "NVIDIA_TF32_OVERRIDE", "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE",
)

# Keys that describe where and when, not what: left out of the env-id.
VOLATILE_KEYS = ("hostname", "variables", "cpu_capability", "threads")


def cpu_description() -> dict[str, Any]:
    """CPU model and the SIMD flags that decide which kernels run."""
    model, flags = platform.processor() or platform.machine(), []
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model in ("", platform.machine()):
                    model = value.strip()
                elif key.strip() in ("flags", "Features") and not flags:
                    interesting = ("avx", "avx2", "avx512f", "avx512bw", "avx512_bf16",
                                   "avx512_fp16", "amx_bf16", "fma", "f16c", "sse4_2",
                                   "asimd", "sve", "sve2", "bf16")
                    flags = sorted(set(value.split()) & set(interesting))
    except OSError:
        pass  # not Linux: platform.processor() is what there is
    return {"model": model, "flags": flags, "cores": os.cpu_count()}


def host() -> dict[str, Any]:
    """The machine alone, without torch: what a failed install can still record."""
    libc = platform.libc_ver()
    return {
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "os": f"{platform.system()} {platform.release()}",
        "platform": platform.platform(),
        "libc": " ".join(part for part in libc if part) or None,
        "machine": platform.machine(),
        "byteorder": sys.byteorder,
        "cpu": cpu_description(),
        "hostname": platform.node(),
    }


def collect() -> dict[str, Any]:
    """The full environment of this interpreter (imports torch and numpy)."""
    import numpy as np
    import torch

    from audit import __version__
    from audit.compat import cpu_capability
    from audit.devices import device_properties

    numpy_blas = None
    try:
        config = np.show_config(mode="dicts")  # numpy >= 1.25
        numpy_blas = config.get("Build Dependencies", {}).get("blas", {}).get("name")
    except TypeError:
        pass
    return {
        **host(),
        "audit_version": __version__,
        "torch": torch.__version__,
        "torch_git": getattr(torch.version, "git_version", None),
        "torch_cuda": getattr(torch.version, "cuda", None),
        "torch_config": torch.__config__.show(),
        "parallel_info": torch.__config__.parallel_info(),
        "numpy": np.__version__,
        "numpy_blas": numpy_blas,
        "cpu_capability": cpu_capability(),
        "threads": torch.get_num_threads(),
        "devices": device_properties(),
        "variables": {name: os.environ[name] for name in RESULT_VARIABLES if name in os.environ},
    }


def env_id(environment: dict[str, Any]) -> str:
    """Stable short hash of what the results depend on (no hostname, no variables)."""
    stable = {key: value for key, value in environment.items() if key not in VOLATILE_KEYS}
    text = json.dumps(stable, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def platform_label(environment: dict[str, Any]) -> str:
    """A short human label for the machine: 'Linux x86_64, Intel Xeon ...'."""
    cpu = environment.get("cpu", {}).get("model") or environment.get("machine", "?")
    system = str(environment.get("os", "?")).split(" ")[0]
    return f"{system} {environment.get('machine', '?')}, {cpu}"
