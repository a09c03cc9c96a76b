"""The CPU on Windows, from the registry's CentralProcessor\\0 key (ProcessorNameString,
VendorIdentifier, Identifier; on ARM64 'CP 4000', the MIDR), PROCESSOR_IDENTIFIER and
IsProcessorFeaturePresent, and whether an x64 process is emulated on an ARM64 machine.
Pure: the readings are arguments (audit.environment.cpu reads the real ones)."""

from __future__ import annotations

import re
from typing import Any, Mapping

from audit.environment.cpu_arm import arm_cpu, midr_fields
from audit.environment.cpu_x86 import X86_FLAGS, x86_cpu
from audit.environment.emulation import architecture_family

REGISTRY_KEY = r"HARDWARE\DESCRIPTION\System\CentralProcessor\0"
# IsProcessorFeaturePresent's PF_* numbers -> Linux's flag names, per architecture.
X86_FEATURES = {36: "ssse3", 37: "sse4_1", 38: "sse4_2", 39: "avx", 40: "avx2", 41: "avx512f"}
ARM_FEATURES = {19: "asimd", 30: "crypto", 31: "crc32", 34: "atomics", 43: "asimddp",
                44: "jscvt", 45: "lrcpc", 46: "sve", 47: "sve2", 64: "sha3", 65: "sha512",
                66: "i8mm", 67: "fphp", 68: "bf16"}
# IsWow64Process2's native machine (IMAGE_FILE_MACHINE_*) -> Windows's machine name.
IMAGE_MACHINES = {0x014C: "x86", 0x01C4: "ARM", 0x8664: "AMD64", 0xAA64: "ARM64"}
MIDR_VALUE = "CP 4000"  # the registry's copy of MIDR_EL1 on ARM64


def identifier_numbers(identifier: str) -> tuple[int | None, int | None, int | None]:
    """(family, model, stepping) of 'AMD64 Family 25 Model 1 Stepping 1, AuthenticAMD'."""
    match = re.search(r"Family (\d+) Model (\d+) Stepping (\d+)", identifier)
    if not match:
        return None, None, None
    family, model, stepping = (int(group) for group in match.groups())
    return family, model, stepping


def windows_cpu(registry: Mapping[str, Any], identifier: str, machine: str,
                native_machine: str | None, present: list[str],
                cores: int | None) -> dict[str, Any]:
    """The recorded CPU of a Windows process built for `machine` ('AMD64', 'ARM64', 'x86');
    `native_machine` is the machine's own, `present` the features Windows says it has."""
    name = str(registry.get("ProcessorNameString") or "").strip()
    if architecture_family(native_machine) not in (None, architecture_family(machine)):
        emulation = {"by": "Windows on Arm emulation" if native_machine == "ARM64"
                     else "emulation", "guest": machine, "host": native_machine,
                     "host_cpu": name or identifier}
        described = x86_cpu(f"{machine} emulation on {name or native_machine}", None, None,
                            None, None, sorted(set(present) & set(X86_FLAGS)), cores)
        described["emulation"] = emulation
        return described
    if architecture_family(machine) == "arm":
        return windows_arm(registry, name, present, cores)
    family, model, stepping = identifier_numbers(
        str(registry.get("Identifier") or identifier))
    vendor = str(registry.get("VendorIdentifier") or "").strip() or (
        identifier.rpartition(", ")[2].strip() or None)
    return x86_cpu(name or identifier or machine, vendor, family, model, stepping,
                   sorted(set(present) & set(X86_FLAGS)), cores)


def windows_arm(registry: Mapping[str, Any], name: str, present: list[str],
                cores: int | None) -> dict[str, Any]:
    """Windows on Arm: the MIDR from the registry names the core; the features are those
    IsProcessorFeaturePresent knows (Windows has no call for the SVE length)."""
    midr = registry.get(MIDR_VALUE)
    implementer = part = variant = revision = None
    if isinstance(midr, int):
        implementer, part, variant, revision = midr_fields(midr)
    features = sorted(set(present) | {"asimd"})  # Advanced SIMD is part of ARM64
    return arm_cpu(implementer, part, variant, revision, features,
                   "unknown" if "sve" in features else None, cores, name or None)
