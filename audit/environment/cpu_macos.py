"""The CPU on macOS, from `sysctl machdep.cpu hw.optional sysctl.proc_translated`: the brand
string, the hw.optional feature flags (hw.optional.arm.FEAT_* on Apple silicon,
hw.optional.avx512f etc. on Intel) and whether Rosetta 2 translates this process. Pure: the
command's output is the argument (audit.environment.cpu runs it)."""

from __future__ import annotations

from typing import Any

from audit.environment.cpu_arm import arm_cpu
from audit.environment.cpu_x86 import number, x86_cpu

SYSCTL_NAMES = ("machdep.cpu", "hw.optional", "sysctl.proc_translated")
ARM_PREFIX = "hw.optional.arm."
# Linux's flag name -> the hw.optional names that say it (any one set is enough).
ARM_FLAG_NAMES = {"asimd": ("hw.optional.AdvSIMD", "hw.optional.arm.AdvSIMD",
                            "hw.optional.neon"),
                  "bf16": ("hw.optional.arm.FEAT_BF16",), "sve": ("hw.optional.arm.FEAT_SVE",),
                  "sve2": ("hw.optional.arm.FEAT_SVE2",)}
X86_FLAG_NAMES = {"avx": "avx1_0", "avx2": "avx2_0", "avx512f": "avx512f",
                  "avx512bw": "avx512bw", "avx512vl": "avx512vl", "fma": "fma", "f16c": "f16c",
                  "sse4_2": "sse4_2"}


def sysctl_values(text: str) -> dict[str, str]:
    """`sysctl NAME...`'s 'name: value' lines as a mapping."""
    values = {}
    for line in text.splitlines():
        name, separator, value = line.partition(":")
        if separator and name.strip():
            values[name.strip()] = value.strip()
    return values


def macos_cpu(values: dict[str, str], machine: str, cores: int | None) -> dict[str, Any]:
    """The recorded CPU of a macOS process built for `machine` (arm64 or x86_64)."""
    brand = values.get("machdep.cpu.brand_string") or machine
    if values.get("sysctl.proc_translated") == "1":
        return rosetta_cpu(values, machine, brand, cores)
    if machine == "arm64":
        return apple_silicon_cpu(values, brand, cores)
    return x86_cpu(brand, values.get("machdep.cpu.vendor"),
                   number(values.get("machdep.cpu.family")),
                   number(values.get("machdep.cpu.model")),
                   number(values.get("machdep.cpu.stepping")), x86_flags(values), cores)


def apple_silicon_cpu(values: dict[str, str], brand: str, cores: int | None) -> dict[str, Any]:
    """Apple silicon: the brand string names the chip; features are the hw.optional.arm.*
    flags that are set. No Apple core has SVE; SME's streaming length is not SVE's."""
    features = sorted(name[len(ARM_PREFIX):] for name, value in values.items()
                      if name.startswith(ARM_PREFIX) and value == "1")
    flags = [flag for flag, names in ARM_FLAG_NAMES.items()
             if any(values.get(name) == "1" for name in names)]
    described = arm_cpu(None, None, None, None, features,
                        "unknown" if "sve" in flags else None, cores, brand)
    described["vendor"] = "Apple" if brand.startswith("Apple") else None
    described["flags"] = sorted(flags)
    return described


def rosetta_cpu(values: dict[str, str], machine: str, brand: str,
                cores: int | None) -> dict[str, Any]:
    """An x86_64 process translated by Rosetta 2: the x86 features Rosetta offers, and the
    Apple chip it runs on (the brand string), never as an x86 CPU of that name."""
    emulation = {"by": "Rosetta 2", "guest": machine, "host": "arm64", "host_cpu": brand}
    described = x86_cpu(f"Rosetta 2 on {brand}", None, None, None, None, x86_flags(values),
                        cores)
    described["emulation"] = emulation
    return described


def x86_flags(values: dict[str, str]) -> list[str]:
    return sorted(flag for flag, name in X86_FLAG_NAMES.items()
                  if values.get(f"hw.optional.{name}") == "1")
