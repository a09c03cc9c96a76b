"""The environment of a run: everything not chosen per scenario, and its stable env-id."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import sys
from typing import Any, Iterable

# Variables that change results or how they are computed; recorded when set.
RESULT_VARIABLES = (
    "ATEN_CPU_CAPABILITY", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
    "OPENBLAS_CORETYPE", "MKL_CBWR", "CUBLAS_WORKSPACE_CONFIG", "CUDA_LAUNCH_BLOCKING",
    "PYTHONHASHSEED", "KMP_AFFINITY", "DNNL_MAX_CPU_ISA", "ONEDNN_MAX_CPU_ISA",
    "NVIDIA_TF32_OVERRIDE", "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE",
)

# Keys that describe where and when, not what: left out of the env-id.
VOLATILE_KEYS = ("hostname", "variables", "cpu_capability", "threads")


# x86 (vendor, family) -> [(first model, last model, name)], from the vendors' model lists.
# A CPU this table lacks is still told apart by its family / model / stepping numbers.
MICROARCHITECTURES: dict[tuple[str, int], list[tuple[int, int, str]]] = {
    ("AuthenticAMD", 0x17): [(0x00, 0x07, "Zen"), (0x08, 0x0F, "Zen+"), (0x10, 0x17, "Zen"),
                             (0x18, 0x1F, "Zen+"), (0x20, 0x2F, "Zen"), (0x30, 0xAF, "Zen 2")],
    ("AuthenticAMD", 0x19): [(0x00, 0x0F, "Zen 3"), (0x10, 0x1F, "Zen 4"),
                             (0x20, 0x5F, "Zen 3"), (0x60, 0x7F, "Zen 4"),
                             (0xA0, 0xAF, "Zen 4c")],
    ("AuthenticAMD", 0x1A): [(0x00, 0x4F, "Zen 5"), (0x60, 0x7F, "Zen 5")],
    ("GenuineIntel", 0x06): [
        (0x3C, 0x3C, "Haswell"), (0x3F, 0x3F, "Haswell-EP"), (0x45, 0x46, "Haswell"),
        (0x3D, 0x3D, "Broadwell"), (0x47, 0x47, "Broadwell"), (0x4F, 0x4F, "Broadwell-EP"),
        (0x56, 0x56, "Broadwell-DE"), (0x4E, 0x4E, "Skylake"), (0x5E, 0x5E, "Skylake"),
        (0x55, 0x55, "Skylake-SP"),  # Cascade / Cooper Lake by stepping, see below
        (0x8E, 0x8E, "Kaby Lake"), (0x9E, 0x9E, "Coffee Lake"), (0xA5, 0xA6, "Comet Lake"),
        (0x66, 0x66, "Cannon Lake"), (0x7D, 0x7E, "Ice Lake"), (0x6A, 0x6C, "Ice Lake-SP"),
        (0x8C, 0x8D, "Tiger Lake"), (0xA7, 0xA7, "Rocket Lake"), (0x97, 0x9A, "Alder Lake"),
        (0xB7, 0xB7, "Raptor Lake"), (0xBA, 0xBA, "Raptor Lake"), (0xBF, 0xBF, "Raptor Lake"),
        (0x8F, 0x8F, "Sapphire Rapids"), (0xCF, 0xCF, "Emerald Rapids"),
        (0xAA, 0xAC, "Meteor Lake"), (0xAD, 0xAE, "Granite Rapids"),
        (0xAF, 0xAF, "Sierra Forest"), (0xBD, 0xBD, "Lunar Lake"), (0xC5, 0xC6, "Arrow Lake"),
    ],
}
# Flags that only these microarchitectures have: a CPU that reports one under a model number
# the table gives another name is a virtual CPU showing a model number not its own (seen
# here: AMX under model 167, Rocket Lake's), so the name is left out rather than made up.
ONLY_ON = {
    "amx_tile": ("Sapphire Rapids", "Emerald Rapids", "Granite Rapids"),
    "amx_bf16": ("Sapphire Rapids", "Emerald Rapids", "Granite Rapids"),
}
# Arm: (implementer, part) from /proc/cpuinfo -> core name.
ARM_CORES = {
    (0x41, 0xD0C): "Neoverse N1", (0x41, 0xD40): "Neoverse V1", (0x41, 0xD49): "Neoverse N2",
    (0x41, 0xD4F): "Neoverse V2", (0x41, 0xD8E): "Neoverse N3", (0x41, 0xD84): "Neoverse V3",
    (0x41, 0xD08): "Cortex-A72", (0x41, 0xD0B): "Cortex-A76", (0xC0, 0xAC3): "Ampere-1",
    (0xC0, 0xAC4): "Ampere-1a", (0x61, 0x022): "Apple M1", (0x61, 0x032): "Apple M2",
}
CPU_FLAGS = ("avx", "avx2", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
             "avx512_fp16", "avx_vnni", "amx_bf16", "amx_tile", "fma", "f16c", "sse4_2",
             "asimd", "sve", "sve2", "bf16")


def microarchitecture(vendor: str | None, family: int | None, model: int | None,
                      stepping: int | None, flags: Iterable[str] = ()) -> str | None:
    """The microarchitecture an x86 vendor / family / model names, where the table knows it
    and the CPU's `flags` do not rule it out (see `ruled_out`)."""
    name = model_name(vendor, family, model, stepping)
    return None if name is None or ruled_out(name, flags) else name


def ruled_out(name: str, flags: Iterable[str]) -> list[str]:
    """The flags that `name` (a microarchitecture) cannot have: the model number lies."""
    return sorted(flag for flag in set(flags) if flag in ONLY_ON and name not in ONLY_ON[flag])


def model_name(vendor: str | None, family: int | None, model: int | None,
               stepping: int | None) -> str | None:
    """The microarchitecture the table gives a vendor / family / model, flags unchecked."""
    if vendor is None or family is None or model is None:
        return None
    for first, last, name in MICROARCHITECTURES.get((vendor, family), []):
        if first <= model <= last:
            if name == "Skylake-SP" and stepping is not None:  # one model, three generations
                return ("Cooper Lake" if stepping >= 10 else
                        "Cascade Lake" if stepping >= 5 else name)
            return name
    return None


def _number(text: str) -> int | None:
    try:
        return int(text, 0)
    except ValueError:
        return None


def _sysctl(name: str) -> str | None:
    import subprocess

    try:
        return subprocess.run(["sysctl", "-n", name], capture_output=True, text=True,
                              timeout=5, check=True).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def cpu_description() -> dict[str, Any]:
    """The CPU: vendor, family / model / stepping and microarchitecture (what explains why
    two machines with one model name compute differently), and the SIMD flags that decide
    which kernels run."""
    model, flags = platform.processor() or platform.machine(), []
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                key = key.strip()
                if not key and fields:
                    break  # the first processor is enough
                fields.setdefault(key, value.strip())
    except OSError:
        pass  # not Linux
    if not fields and platform.system() == "Darwin":
        fields["model name"] = _sysctl("machdep.cpu.brand_string") or ""
    if fields.get("model name"):
        model = fields["model name"]
    flag_text = fields.get("flags") or fields.get("Features") or ""
    flags = sorted(set(flag_text.split()) & set(CPU_FLAGS))
    vendor = fields.get("vendor_id")
    family, number = _number(fields.get("cpu family", "")), _number(fields.get("model", ""))
    stepping = _number(fields.get("stepping", ""))
    named = model_name(vendor, family, number, stepping)
    name = None if named is None or ruled_out(named, flags) else named
    if vendor is None and fields.get("CPU implementer"):  # Arm
        implementer = _number(fields["CPU implementer"])
        part = _number(fields.get("CPU part", ""))
        vendor = {0x41: "ARM", 0x61: "Apple", 0xC0: "Ampere", 0x48: "HiSilicon",
                  0x51: "Qualcomm"}.get(implementer or -1, fields["CPU implementer"])
        name = ARM_CORES.get((implementer or -1, part or -1))
        number, stepping = part, _number(fields.get("CPU variant", ""))
    described = {"model": model, "vendor": vendor, "family": family, "model_number": number,
                 "stepping": stepping, "microarchitecture": name, "flags": flags,
                 "cores": os.cpu_count()}
    if named is not None and name is None:  # the model number's name, ruled out by flags
        described["model_number_says"] = named
    return described


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
    stepping. Files written before these were recorded give the model name only."""
    cpu = environment.get("cpu") if isinstance(environment.get("cpu"), dict) else {}
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


def platform_label(environment: dict[str, Any]) -> str:
    """The value of the report's machine axis: 'Linux x86_64, AMD EPYC (Zen 5, family 26
    model 2)'."""
    system = str(environment.get("os", "?")).split(" ")[0]
    return f"{system} {environment.get('machine', '?')}, {cpu_label(environment)}"
