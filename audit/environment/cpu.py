"""Reads what the platform says about this process's CPU and hands it to that platform's
reader (cpu_linux, cpu_macos, cpu_windows; emulation decides whether the CPU is emulated).
Every read here is small and cheap; the only command run on Linux is an emulator's
`--version`, and only once an emulated run was detected."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import sysconfig
from typing import Any

from audit.environment.cpu_linux import ARM64_MACHINES, cpuinfo_fields, linux_cpu
from audit.environment.cpu_macos import SYSCTL_NAMES, macos_cpu, sysctl_values
from audit.environment.cpu_windows import (
    ARM_FEATURES,
    IMAGE_MACHINES,
    REGISTRY_KEY,
    X86_FEATURES,
    windows_cpu,
)
from audit.environment.emulation import (
    architecture_family,
    binfmt_interpreter,
    elf_machine,
    foreign_host,
    linux_emulation,
)

PR_SVE_GET_VL = 51
WINDOWS_MACHINES = {"win-amd64": "AMD64", "win-arm64": "ARM64", "win32": "x86"}


def cpu_description() -> dict[str, Any]:
    """The CPU this interpreter runs on, as its platform describes it (see each reader)."""
    system = platform.system()
    if system == "Darwin":
        return macos_cpu(sysctl_values(run_quietly(["sysctl", *SYSCTL_NAMES]) or ""),
                         platform.machine(), os.cpu_count())
    if system == "Windows":
        return windows_description()
    return linux_description()


def read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return None


def read_bytes(path: str, size: int = -1) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read(size)
    except OSError:
        return b""


def run_quietly(command: list[str]) -> str | None:
    """A short command's standard output; None where it cannot run. Its exit status is
    ignored: `sysctl` fails on a name an older macOS lacks yet prints the others."""
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def interpreter_machine() -> str:
    """The machine this interpreter's binary is built for (its ELF header), which an
    emulator cannot hide; platform.machine() where the binary cannot be read."""
    machine = elf_machine(read_bytes(sys.executable, 20)) if sys.executable else None
    return machine or platform.machine()


def linux_description() -> dict[str, Any]:
    cpuinfo = read_text("/proc/cpuinfo") or ""
    machine = interpreter_machine()
    host = foreign_host(machine, read_text("/proc/sys/kernel/arch"), cpuinfo_fields(cpuinfo))
    emulation = None
    if host is not None:
        binfmt = read_text(f"/proc/sys/fs/binfmt_misc/qemu-{machine}")
        emulation = linux_emulation(machine, host, os.environ, binfmt,
                                    qemu_version_output(binfmt))
    arm64 = machine in ARM64_MACHINES
    return linux_cpu(cpuinfo, machine, platform.processor() or platform.machine(),
                     os.cpu_count(), emulation=emulation,
                     auxv=read_bytes("/proc/self/auxv") if arm64 else b"",
                     sve_prctl=sve_prctl() if arm64 else None,
                     sve_default=read_text("/proc/sys/abi/sve_default_vector_length")
                     if arm64 else None)


def qemu_version_output(binfmt: str | None) -> str | None:
    """`qemu-<arch> --version` of the emulator a binfmt entry names: run only where the
    entry's interpreter resolves to a qemu binary (Debian names a wrapper link)."""
    interpreter = binfmt_interpreter(binfmt)
    if interpreter is None:
        return None
    path = os.path.realpath(interpreter)
    if not os.path.basename(path).startswith("qemu-") or not os.access(path, os.X_OK):
        return None
    return run_quietly([path, "--version"])


def sve_prctl() -> int | None:
    """prctl(PR_SVE_GET_VL): this thread's SVE vector length in bytes (plus flags); negative
    without SVE. qemu answers it for the CPU it emulates."""
    try:
        import ctypes

        return int(ctypes.CDLL(None, use_errno=True).prctl(PR_SVE_GET_VL, 0, 0, 0, 0))
    except (OSError, AttributeError, TypeError):
        return None


def windows_description() -> dict[str, Any]:
    machine = WINDOWS_MACHINES.get(sysconfig.get_platform(), platform.machine())
    native = native_machine()
    numbers = ARM_FEATURES if architecture_family(machine) == "arm" else X86_FEATURES
    return windows_cpu(registry_values(), os.environ.get("PROCESSOR_IDENTIFIER", ""), machine,
                       native, features_present(numbers), os.cpu_count())


def registry_values() -> dict[str, Any]:
    try:
        import winreg

        values = {}
        with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, REGISTRY_KEY) as key:
            index = 0
            while True:
                try:
                    name, value, _ = winreg.EnumValue(key, index)
                except OSError:
                    return values
                values[name] = value
                index += 1
    except (ImportError, OSError):
        return {}


def features_present(numbers: dict[int, str]) -> list[str]:
    try:
        import ctypes

        present = ctypes.windll.kernel32.IsProcessorFeaturePresent  # type: ignore[attr-defined]
        return sorted(name for number, name in numbers.items() if present(number))
    except (ImportError, OSError, AttributeError):
        return []


def native_machine() -> str | None:
    """The machine's own architecture (IsWow64Process2, Windows 10 1709 and later)."""
    try:
        import ctypes
        from ctypes import wintypes

        process, native = wintypes.USHORT(), wintypes.USHORT()
        kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
        if not kernel32.IsWow64Process2(kernel32.GetCurrentProcess(), ctypes.byref(process),
                                        ctypes.byref(native)):
            return None
        return IMAGE_MACHINES.get(native.value)
    except (ImportError, OSError, AttributeError, ValueError):
        return None
