"""The CPU on Linux, from /proc/cpuinfo, the auxiliary vector and the SVE vector length.
Pure: the file texts are arguments (audit.environment.cpu reads the real ones)."""

from __future__ import annotations

import sys
from typing import Any

from audit.environment.cpu_arm import (
    AT_HWCAP,
    AT_HWCAP2,
    arm_cpu,
    auxv_entries,
    hwcap_features,
    sve_vector_length,
)
from audit.environment.cpu_x86 import X86_FLAGS, number, x86_cpu

ARM64_MACHINES = ("aarch64", "arm64", "aarch64_be")


def cpuinfo_fields(text: str) -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (the first is enough: the others
    repeat them, big.LITTLE cores aside)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if not key and fields:
            break
        fields.setdefault(key, value.strip())
    return fields


def auxv_features(auxv: bytes, byteorder: str = sys.byteorder) -> list[str]:
    """The hwcap names of a 64-bit Arm process's auxiliary vector (/proc/self/auxv)."""
    entries = auxv_entries(auxv, 8, byteorder)
    if AT_HWCAP not in entries:
        return []
    return hwcap_features(entries[AT_HWCAP], entries.get(AT_HWCAP2, 0))


def linux_x86(fields: dict[str, str], processor: str, cores: int | None) -> dict[str, Any]:
    """An x86 CPU (or one of an architecture without its own reader) from cpuinfo's fields:
    vendor, family / model / stepping and microarchitecture (what explains why two machines
    with one model name compute differently), and the SIMD flags that decide which kernels
    run."""
    flag_text = fields.get("flags") or ""
    flags = sorted(set(flag_text.split()) & set(X86_FLAGS))
    return x86_cpu(fields.get("model name") or processor, fields.get("vendor_id"),
                   number(fields.get("cpu family")), number(fields.get("model")),
                   number(fields.get("stepping")), flags, cores)


def linux_arm(fields: dict[str, str], processor: str, cores: int | None, auxv: bytes,
              sve_prctl: int | None, sve_default: str | None) -> dict[str, Any]:
    """An Arm CPU from cpuinfo's implementer / part and the kernel's hwcaps (the Features
    line; the auxiliary vector where the line is missing)."""
    features = fields.get("Features", "").split() or auxv_features(auxv)
    implementer = number(fields.get("CPU implementer"))
    model = None if implementer is not None else (fields.get("model name") or processor)
    return arm_cpu(implementer, number(fields.get("CPU part")),
                   number(fields.get("CPU variant")), number(fields.get("CPU revision")),
                   features, sve_vector_length(features, sve_prctl, sve_default), cores, model)


def emulated_cpu(machine: str, emulation: dict[str, Any], cores: int | None, auxv: bytes,
                 sve_prctl: int | None) -> dict[str, Any]:
    """The CPU an emulator presents. /proc/cpuinfo is left unread: under qemu it is the
    host's file or qemu's own invention. The emulated features come from the process's
    auxiliary vector and prctl, which qemu answers for the CPU it emulates."""
    model = (f"qemu {emulation['cpu_model']}" if emulation.get("by") == "qemu"
             else f"{machine} under emulation")
    if machine in ARM64_MACHINES:
        features = auxv_features(auxv)
        described = arm_cpu(None, None, None, None, features,
                            sve_vector_length(features, sve_prctl, None), cores, model)
    else:
        described = x86_cpu(model, None, None, None, None, [], cores)
    described["emulation"] = emulation
    return described


def linux_cpu(cpuinfo: str, machine: str, processor: str, cores: int | None, *,
              emulation: dict[str, Any] | None = None, auxv: bytes = b"",
              sve_prctl: int | None = None, sve_default: str | None = None) -> dict[str, Any]:
    """The recorded CPU of a Linux process whose interpreter is built for `machine`."""
    if emulation is not None:
        return emulated_cpu(machine, emulation, cores, auxv, sve_prctl)
    fields = cpuinfo_fields(cpuinfo)
    if machine in ARM64_MACHINES or "CPU implementer" in fields:
        return linux_arm(fields, processor, cores, auxv, sve_prctl, sve_default)
    return linux_x86(fields, processor, cores)
