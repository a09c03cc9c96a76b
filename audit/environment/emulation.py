"""Whether this interpreter runs on a CPU of another architecture (user-mode emulation:
qemu-user, Rosetta 2, Windows on Arm), and what is known of the emulator. Pure: the
readings are arguments (audit.environment.cpu reads the real ones).

Under qemu-user the process sees its own architecture in `uname` and in its auxiliary vector,
but /proc/cpuinfo and /proc/sys/kernel/arch are the host's (qemu 7 passes cpuinfo through;
later versions make up one of their own). The kernel's architecture, where the kernel says
it, is the firmer witness; /proc/cpuinfo's fields decide where it does not.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

FAMILIES = {"x86_64": "x86", "amd64": "x86", "x86": "x86", "i386": "x86", "i486": "x86",
            "i586": "x86", "i686": "x86", "aarch64": "arm", "arm64": "arm", "aarch64_be": "arm",
            "ppc64le": "power", "ppc64": "power", "ppc": "power", "s390x": "s390",
            "riscv64": "riscv", "loongarch64": "loongarch", "mips64": "mips", "mips": "mips"}
# The name each family's host is given when only /proc/cpuinfo says which it is.
FAMILY_HOSTS = {"x86": "x86_64", "arm": "aarch64", "power": "ppc64le", "s390": "s390x",
                "riscv": "riscv64"}
# ELF e_machine -> machine name, for the interpreter's own binary.
ELF_MACHINES = {3: "i386", 8: "mips", 20: "ppc", 21: "ppc64", 22: "s390x", 40: "arm",
                62: "x86_64", 183: "aarch64", 243: "riscv64", 258: "loongarch64"}
# qemu properties that only set the SVE vector length, which the label gives as 'SVE n'.
SVE_LENGTH_PROPERTY = re.compile(r"sve(\d+)?=|sve-default-vector-length=")


def architecture_family(machine: str | None) -> str | None:
    """'x86', 'arm', ... for a machine name as uname, Windows or an ELF header spell it."""
    name = (machine or "").strip().lower()
    if name in FAMILIES:
        return FAMILIES[name]
    return "arm" if name.startswith("arm") else None


def elf_machine(header: bytes) -> str | None:
    """The machine an ELF file's header (its first 20 bytes) was built for."""
    if len(header) < 20 or header[:4] != b"\x7fELF":
        return None
    order = "little" if header[5] == 1 else "big"
    return ELF_MACHINES.get(int.from_bytes(header[18:20], order))


def cpuinfo_family(fields: Mapping[str, str]) -> str | None:
    """The architecture family whose kernel wrote these /proc/cpuinfo fields."""
    if "CPU implementer" in fields or "Features" in fields:
        return "arm"
    if fields.get("vendor_id", "").startswith("IBM"):
        return "s390"
    if "vendor_id" in fields or "flags" in fields:
        return "x86"
    if fields.get("isa", "").startswith("rv"):
        return "riscv"
    return "power" if "POWER" in fields.get("cpu", "") else None


def foreign_host(guest: str, kernel_arch: str | None,
                 cpuinfo: Mapping[str, str]) -> str | None:
    """The host's architecture when the interpreter (`guest`) is of another family; None
    when it runs natively or nothing says otherwise."""
    family = architecture_family(guest)
    if family is None:
        return None
    kernel = (kernel_arch or "").strip()
    if architecture_family(kernel) is not None:
        return None if architecture_family(kernel) == family else kernel
    found = cpuinfo_family(cpuinfo)
    return None if found in (None, family) else FAMILY_HOSTS.get(str(found), str(found))


def binfmt_interpreter(binfmt: str | None) -> str | None:
    """The interpreter a /proc/sys/fs/binfmt_misc entry names, if the entry is enabled."""
    lines = (binfmt or "").splitlines()
    if not lines or lines[0].strip() != "enabled":
        return None
    for line in lines:
        key, _, value = line.partition(" ")
        if key == "interpreter" and value.strip():
            return value.strip()
    return None


def qemu_version(text: str | None) -> str | None:
    """'7.2.22' from `qemu-aarch64 --version`'s 'qemu-aarch64 version 7.2.22 (Debian ...)'."""
    match = re.search(r"version (\d+(?:\.\d+)+)", text or "")
    return match.group(1) if match else None


def linux_emulation(guest: str, host: str, environ: Mapping[str, str], binfmt: str | None,
                    version_text: str | None) -> dict[str, Any]:
    """The record of a user-mode emulated run on Linux. qemu is named where its binfmt entry
    or its variables say so; its CPU model is QEMU_CPU ('default' unset: qemu's own choice,
    'max' for aarch64 in user mode); its version where `--version` could be read."""
    by_qemu = "qemu" in (binfmt_interpreter(binfmt) or "") or any(
        name.startswith("QEMU_") for name in environ)
    record: dict[str, Any] = {"by": "qemu" if by_qemu else "unknown", "guest": guest,
                              "host": host}
    if by_qemu:
        record["cpu_model"] = environ.get("QEMU_CPU") or "default"
        version = qemu_version(version_text)
        if version:
            record["version"] = version
    return record


def shown_cpu_model(cpu_model: str) -> str:
    """QEMU_CPU without the properties that only set the SVE length ('max,sve=off' ->
    'max'): the label states the length itself."""
    model, *properties = cpu_model.split(",")
    return ",".join([model] + [item for item in properties
                               if not SVE_LENGTH_PROPERTY.match(item)])


def emulation_label(emulation: Mapping[str, Any], cpu: Mapping[str, Any]) -> str:
    """'aarch64 under qemu 7.2, cpu max, SVE 512'; 'x86_64 under Rosetta 2, on Apple M1'."""
    by = str(emulation.get("by") or "unknown")
    name = "emulation" if by == "unknown" else by
    if emulation.get("version"):
        name += " " + ".".join(str(emulation["version"]).split(".")[:2])
    parts = [f"{emulation.get('guest', '?')} under {name}"]
    if emulation.get("cpu_model"):
        parts.append(f"cpu {shown_cpu_model(str(emulation['cpu_model']))}")
    if "sve_vector_length" in cpu:
        parts.append(sve_text(cpu["sve_vector_length"]))
    if emulation.get("host_cpu"):
        parts.append(f"on {emulation['host_cpu']}")
    return ", ".join(parts)


def sve_text(length: Any) -> str:
    """'SVE 512' / 'no SVE' / 'SVE unknown' for a recorded SVE vector length."""
    if length is None:
        return "no SVE"
    return f"SVE {length}"
