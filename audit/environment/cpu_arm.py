"""An Arm (AArch64) CPU's identity: implementer / part from its main ID register (MIDR), the
kernel's hardware-capability names, and the SVE vector length. Pure: no files read here.

The part numbers are Arm's and the vendors' (Linux arch/arm64/include/asm/cputype.h); the
hwcap bit names are the kernel's (arch/arm64/include/uapi/asm/hwcap.h, in the spelling
/proc/cpuinfo's Features line uses, arch/arm64/kernel/cpuinfo.c).
"""

from __future__ import annotations

import struct
from typing import Any, Iterable

IMPLEMENTERS = {0x41: "ARM", 0x42: "Broadcom", 0x43: "Cavium", 0x46: "Fujitsu",
                0x48: "HiSilicon", 0x4E: "NVIDIA", 0x50: "APM", 0x51: "Qualcomm",
                0x61: "Apple", 0x6D: "Microsoft", 0xC0: "Ampere"}
# (implementer, part) -> core. Cloud chips are these cores: AWS Graviton is a Cortex-A72,
# Graviton2 a Neoverse N1 (as is Ampere Altra), Graviton3 a Neoverse V1, Graviton4 a
# Neoverse V2 (as is NVIDIA Grace); Kunpeng 920 is HiSilicon's TaiShan v110.
ARM_CORES = {
    (0x41, 0xD03): "Cortex-A53", (0x41, 0xD05): "Cortex-A55", (0x41, 0xD07): "Cortex-A57",
    (0x41, 0xD08): "Cortex-A72", (0x41, 0xD09): "Cortex-A73", (0x41, 0xD0A): "Cortex-A75",
    (0x41, 0xD0B): "Cortex-A76", (0x41, 0xD0C): "Neoverse N1", (0x41, 0xD0D): "Cortex-A77",
    (0x41, 0xD40): "Neoverse V1", (0x41, 0xD41): "Cortex-A78", (0x41, 0xD44): "Cortex-X1",
    (0x41, 0xD46): "Cortex-A510", (0x41, 0xD47): "Cortex-A710", (0x41, 0xD48): "Cortex-X2",
    (0x41, 0xD49): "Neoverse N2", (0x41, 0xD4A): "Neoverse E1", (0x41, 0xD4B): "Cortex-A78C",
    (0x41, 0xD4E): "Cortex-X3", (0x41, 0xD4F): "Neoverse V2", (0x41, 0xD81): "Cortex-A720",
    (0x41, 0xD82): "Cortex-X4", (0x41, 0xD84): "Neoverse V3", (0x41, 0xD8E): "Neoverse N3",
    (0x43, 0x0AF): "ThunderX2", (0x46, 0x001): "A64FX", (0x48, 0xD01): "Kunpeng 920",
    (0x4E, 0x004): "Carmel", (0x51, 0x001): "Oryon",
    (0x61, 0x022): "M1", (0x61, 0x023): "M1", (0x61, 0x024): "M1 Pro", (0x61, 0x025): "M1 Pro",
    (0x61, 0x028): "M1 Max", (0x61, 0x029): "M1 Max", (0x61, 0x032): "M2",
    (0x61, 0x033): "M2", (0x61, 0x034): "M2 Pro", (0x61, 0x035): "M2 Pro",
    (0x61, 0x038): "M2 Max", (0x61, 0x039): "M2 Max",
    (0xC0, 0xAC3): "Ampere-1", (0xC0, 0xAC4): "Ampere-1a",
}
# AT_HWCAP and AT_HWCAP2 bits, lowest first.
HWCAP = (
    "fp", "asimd", "evtstrm", "aes", "pmull", "sha1", "sha2", "crc32", "atomics", "fphp", "asimdhp",
    "cpuid", "asimdrdm", "jscvt", "fcma", "lrcpc", "dcpop", "sha3", "sm3", "sm4", "asimddp",
    "sha512", "sve", "asimdfhm", "dit", "uscat", "ilrcpc", "flagm", "ssbs", "sb", "paca", "pacg",
)
HWCAP2 = (
    "dcpodp", "sve2", "sveaes", "svepmull", "svebitperm", "svesha3", "svesm4", "flagm2", "frint",
    "svei8mm", "svef32mm", "svef64mm", "svebf16", "i8mm", "bf16", "dgh", "rng", "bti", "mte", "ecv",
    "afp", "rpres", "mte3", "sme", "smei16i64", "smef64f64", "smei8i32", "smef16f32", "smeb16f32",
    "smef32f32", "smefa64", "wfxt", "ebf16", "sveebf16", "cssc", "rprfm", "sve2p1", "sme2",
    "sme2p1", "smei16i32", "smebi32i32", "smeb16b16", "smef16f16", "mops", "hbc", "sveb16b16",
    "lrcpc3", "lse128", "fpmr", "lut", "faminmax", "f8cvt", "f8fma", "f8dp4", "f8dp2", "f8e4m3",
    "f8e5m2", "smelutv2", "smef8f16", "smef8f32", "smesf8fma", "smesf8dp4", "smesf8dp2", "poe",
)
AT_HWCAP, AT_HWCAP2 = 16, 26
# The features that decide which kernels run (Linux's names).
ARM_FLAGS = ("asimd", "sve", "sve2", "bf16")
PR_SVE_VL_LEN_MASK = 0xFFFF  # prctl(PR_SVE_GET_VL) returns the length in bytes, plus flags


def auxv_entries(data: bytes, word: int = 8, byteorder: str = "little") -> dict[int, int]:
    """The (type -> value) pairs of an auxiliary vector (/proc/self/auxv), up to AT_NULL."""
    layout = ("<" if byteorder == "little" else ">") + ("QQ" if word == 8 else "II")
    whole = len(data) - len(data) % (2 * word)
    entries: dict[int, int] = {}
    for kind, value in struct.iter_unpack(layout, data[:whole]):
        if kind == 0:
            break
        entries[kind] = value
    return entries


def hwcap_features(hwcap: int, hwcap2: int = 0) -> list[str]:
    """The kernel's names of the bits set in AT_HWCAP / AT_HWCAP2; a bit this table lacks
    is kept as 'hwcap:bit<N>' ('hwcap2:bit<N>') rather than dropped."""
    names = []
    for index, (value, table) in enumerate(((hwcap, HWCAP), (hwcap2, HWCAP2))):
        for bit in range(64):
            if value >> bit & 1:
                names.append(table[bit] if bit < len(table)
                             else f"hwcap{'2' if index else ''}:bit{bit}")
    return sorted(names)


def sve_vector_length(features: Iterable[str], prctl_value: int | None,
                      default_text: str | None) -> int | str | None:
    """SVE's vector length in bits: None without SVE, 'unknown' where neither this
    process's length (prctl) nor the kernel's default (/proc/sys/abi) could be read."""
    if "sve" not in set(features):
        return None
    if prctl_value is not None and prctl_value >= 0:
        return (prctl_value & PR_SVE_VL_LEN_MASK) * 8
    try:
        return int((default_text or "").strip()) * 8
    except ValueError:
        return "unknown"


def arm_cpu(implementer: int | None, part: int | None, variant: int | None,
            revision: int | None, features: list[str], sve: int | str | None,
            cores: int | None, model: str | None = None) -> dict[str, Any]:
    """The recorded description of an Arm CPU. x86's family / model / stepping keys stay
    (None) so every platform's record has them; the Arm numbers have their own keys."""
    vendor = (IMPLEMENTERS.get(implementer, f"implementer 0x{implementer:02x}")
              if implementer is not None else None)
    core = ARM_CORES.get((implementer, part)) if implementer is not None else None
    if model is None:
        named = core or (f"part 0x{part:03x}" if part is not None else None)
        # 'Ampere-1', not 'Ampere Ampere-1'
        prefix = None if vendor and named and named.startswith(vendor) else vendor
        model = " ".join(piece for piece in (prefix, named) if piece) or "aarch64"
    return {"model": model, "vendor": vendor, "family": None, "model_number": None,
            "stepping": None, "microarchitecture": core,
            "flags": sorted(set(features) & set(ARM_FLAGS)), "cores": cores,
            "implementer": None if implementer is None else f"0x{implementer:02x}",
            "part": None if part is None else f"0x{part:03x}",
            "variant": variant, "revision": revision,
            "features": sorted(features), "sve_vector_length": sve}


def midr_fields(midr: int) -> tuple[int, int, int, int]:
    """(implementer, part, variant, revision) of a MIDR_EL1 value."""
    return midr >> 24 & 0xFF, midr >> 4 & 0xFFF, midr >> 20 & 0xF, midr & 0xF
