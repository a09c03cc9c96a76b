"""An x86 CPU's identity: its vendor / family / model / stepping and the microarchitecture they
name, whichever platform reported them (Linux's /proc/cpuinfo, macOS's sysctl, Windows's
registry). Pure: no files read here."""

from __future__ import annotations

from typing import Any, Iterable

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
# The SIMD flags that decide which kernels run, in Linux's spelling (other platforms' names
# are translated to these).
X86_FLAGS = ("avx", "avx2", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
             "avx512_fp16", "avx_vnni", "amx_bf16", "amx_tile", "fma", "f16c", "sse4_2")


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


def number(text: str | None) -> int | None:
    """A number as a platform prints it (decimal or 0x-prefixed); None for anything else."""
    try:
        return int(text or "", 0)
    except ValueError:
        return None


def x86_cpu(model: str, vendor: str | None, family: int | None, model_number: int | None,
            stepping: int | None, flags: list[str], cores: int | None) -> dict[str, Any]:
    """The recorded description of an x86 CPU (the same keys on every platform)."""
    named = model_name(vendor, family, model_number, stepping)
    name = None if named is None or ruled_out(named, flags) else named
    described = {"model": model, "vendor": vendor, "family": family,
                 "model_number": model_number, "stepping": stepping,
                 "microarchitecture": name, "flags": flags, "cores": cores}
    if named is not None and name is None:  # the model number's name, ruled out by flags
        described["model_number_says"] = named
    return described
