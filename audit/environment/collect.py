"""The environment of a run: everything not chosen per scenario, and its stable env-id."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import sys
from typing import Any

from audit.environment.cpu import cpu_description
from audit.environment.cpu_x86 import microarchitecture as microarchitecture  # re-exported
from audit.environment.cpu_x86 import ruled_out as ruled_out  # re-exported
from audit.environment.emulation import architecture_family, emulation_label, sve_text

# An older record with one of these vendors for an Arm machine recorded its x86 host.
X86_VENDORS = ("GenuineIntel", "AuthenticAMD", "HygonGenuine")

# Variables that change results or how they are computed; recorded when set.
RESULT_VARIABLES = (
    "ATEN_CPU_CAPABILITY", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
    "OPENBLAS_CORETYPE", "MKL_CBWR", "CUBLAS_WORKSPACE_CONFIG", "CUDA_LAUNCH_BLOCKING",
    "PYTHONHASHSEED", "KMP_AFFINITY", "DNNL_MAX_CPU_ISA", "ONEDNN_MAX_CPU_ISA",
    "NVIDIA_TF32_OVERRIDE", "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE",
)

# Keys that describe where and when, not what: left out of the env-id.
VOLATILE_KEYS = ("hostname", "variables", "cpu_capability", "threads")


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
    from audit.environment.compat import cpu_capability
    from audit.environment.devices import device_properties

    numpy_blas = None
    try:
        config = np.show_config(mode="dicts")  # numpy >= 1.25
        numpy_blas = config.get("Build Dependencies", {}).get("blas", {}).get("name")
    except TypeError:
        pass
    return {
        **host(),
        **math_libraries(torch.__config__.show()),
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


def _build_setting(config: str, name: str) -> str | None:
    match = re.search(rf"\b{name}=([^,\s]+)", config)
    return match.group(1) if match else None


def built_libraries(config: str) -> dict[str, Any]:
    """The BLAS / LAPACK and the MKL / oneDNN versions torch was built with, from
    `torch.__config__.show()` (also what older results files recorded of them)."""
    mkl = re.search(r"Math Kernel Library Version ([^\n]*?) for", config)
    onednn = re.search(r"MKL-DNN (v[\d.]+)", config)
    return {"blas": _build_setting(config, "BLAS_INFO"),
            "lapack": _build_setting(config, "LAPACK_INFO"),
            "mkl_built_with": mkl.group(1).strip() if mkl else None,
            "onednn_built_with": onednn.group(1) if onednn else None}


def math_libraries(config: str) -> dict[str, Any]:
    """The math libraries under torch and what MKL and oneDNN report about themselves here:
    their versions and the code path each dispatches to on this CPU (the usual reason why
    one torch computes a matmul or a convolution differently on two machines). The probes
    run one tiny call each (audit.environment.native)."""
    from audit.environment.native import mkl_report, onednn_report

    built = built_libraries(config)
    mkl, onednn = mkl_report(), onednn_report()
    capped = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    return {
        "blas": built["blas"],
        "lapack": built["lapack"],
        "mkl": None if mkl is None and built["mkl_built_with"] is None else {
            "version": mkl.version if mkl is not None else None,
            "built_with": built["mkl_built_with"],
            "code_path": mkl.code_path if mkl is not None else None,
        },
        "onednn": None if onednn is None and built["onednn_built_with"] is None else {
            "version": (onednn.version if onednn is not None and onednn.version
                        else built["onednn_built_with"]),
            "isa": onednn.isa if onednn is not None else None,
            "isa_capped_by": capped,  # ONEDNN_MAX_CPU_ISA of this process, if set
        },
    }


def env_id(environment: dict[str, Any]) -> str:
    """Stable short hash of what the results depend on (no hostname, no variables)."""
    stable = {key: value for key, value in environment.items() if key not in VOLATILE_KEYS}
    text = json.dumps(stable, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cpu_label(environment: dict[str, Any]) -> str:
    """'AMD EPYC (Zen 5, family 26 model 2)': the CPU's name and what tells two CPUs of one
    vendor and model name apart (cloud VMs often hide the real model) by family / model /
    stepping; 'ARM Neoverse V1 (r1p1, SVE 256)' for Arm; 'aarch64 under qemu 7.2, cpu max,
    SVE 512' for an emulated CPU, never the host's chip. Files written before these were
    recorded give the model name only."""
    cpu = recorded_cpu(environment)
    if isinstance(cpu.get("emulation"), dict):
        return emulation_label(cpu["emulation"], cpu)
    if recorded_the_host(environment, cpu):
        return emulation_label({"guest": environment.get("machine")}, {})
    if "sve_vector_length" in cpu:
        return arm_label(cpu)
    name = cpu.get("model") or environment.get("machine", "?")
    detail = []
    if cpu.get("microarchitecture"):
        detail.append(cpu["microarchitecture"])
    if cpu.get("family") is not None:
        numbers = f"family {cpu['family']} model {cpu.get('model_number')}"
        if not cpu.get("microarchitecture") and cpu.get("stepping") is not None:
            numbers += f" stepping {cpu['stepping']}"
        detail.append(numbers)
    return f"{name} ({', '.join(detail)})" if detail else str(name)


def arm_label(cpu: dict[str, Any]) -> str:
    """'ARM Neoverse N1 (r3p1)': the core, its variant and revision (what tells two
    steppings of one core apart), and SVE's vector length where the CPU has SVE."""
    detail = []
    if cpu.get("variant") is not None and cpu.get("revision") is not None:
        detail.append(f"r{cpu['variant']}p{cpu['revision']}")
    if cpu.get("sve_vector_length") is not None:
        detail.append(sve_text(cpu["sve_vector_length"]))
    name = str(cpu.get("model") or "?")
    return f"{name} ({', '.join(detail)})" if detail else name


def recorded_the_host(environment: dict[str, Any], cpu: dict[str, Any]) -> bool:
    """Whether an older file recorded the host's x86 CPU for an emulated interpreter of
    another architecture (qemu passes the host's /proc/cpuinfo through)."""
    family = architecture_family(str(environment.get("machine") or ""))
    return family not in (None, "x86") and cpu.get("vendor") in X86_VENDORS


def platform_label(environment: dict[str, Any]) -> str:
    """The value of the report's machine axis: 'Linux x86_64, AMD EPYC (Zen 5, family 26
    model 2)'; 'Linux aarch64 under qemu 7.2, cpu max, SVE 512' for an emulated one."""
    system = str(environment.get("os", "?")).split(" ")[0]
    cpu = recorded_cpu(environment)
    if isinstance(cpu.get("emulation"), dict) or recorded_the_host(environment, cpu):
        return f"{system} {cpu_label(environment)}"  # the label starts with the machine
    return f"{system} {environment.get('machine', '?')}, {cpu_label(environment)}"


def recorded_cpu(environment: dict[str, Any]) -> dict[str, Any]:
    cpu = environment.get("cpu")
    return cpu if isinstance(cpu, dict) else {}
