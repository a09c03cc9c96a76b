"""The CPU on every platform, from recorded fixtures of each platform's files and command
outputs (tests/data/cpu/): Linux x86-64 and aarch64, macOS (Apple silicon, Intel, Rosetta 2),
Windows, and an aarch64 interpreter emulated by qemu on an x86-64 host, which must never be
recorded as the host's CPU."""

from __future__ import annotations

import json
import platform
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from audit.environment.collect import cpu_label, env_id, host, platform_label
from audit.environment.cpu_arm import auxv_entries, hwcap_features, sve_vector_length
from audit.environment.cpu_linux import auxv_features, cpuinfo_fields, linux_cpu
from audit.environment.cpu_macos import macos_cpu, sysctl_values
from audit.environment.cpu_windows import windows_cpu
from audit.environment.emulation import (
    architecture_family,
    binfmt_interpreter,
    elf_machine,
    foreign_host,
    linux_emulation,
    qemu_version,
    shown_cpu_model,
)

DATA = Path(__file__).resolve().parent.parent / "data" / "cpu"
# What the environment recorded of this x86-64 Linux host's CPU before Arm, macOS, Windows
# and emulation had readers of their own: it must not change, nor the env-ids built on it.
EPYC = {"model": "AMD EPYC", "vendor": "AuthenticAMD", "family": 25, "model_number": 1,
        "stepping": 1, "microarchitecture": "Zen 3",
        "flags": ["avx", "avx2", "f16c", "fma", "sse4_2"], "cores": 2}
X86_KEYS = {"model", "vendor", "family", "model_number", "stepping", "microarchitecture",
            "flags", "cores", "model_number_says"}
QEMU_MAX_FEATURES = [
    "aes", "asimd", "asimddp", "asimdfhm", "asimdhp", "asimdrdm", "atomics", "bf16", "bti",
    "cpuid", "crc32", "dcpodp", "dcpop", "fcma", "flagm", "flagm2", "fp", "fphp", "frint", "i8mm",
    "ilrcpc", "jscvt", "lrcpc", "mte", "paca", "pacg", "pmull", "rng", "sb", "sha1", "sha2",
    "sha3", "sha512", "sm3", "sm4", "sme", "smeb16f32", "smef16f32", "smef32f32", "smef64f64",
    "smefa64", "smei16i64", "smei8i32", "sve", "sve2", "sveaes", "svebf16", "svebitperm",
    "svef32mm", "svef64mm", "svei8mm", "svepmull", "svesha3", "svesm4"]


def text(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


def environment(system: str, machine: str, cpu: dict[str, Any]) -> dict[str, Any]:
    return {"os": system, "machine": machine, "cpu": cpu}


# --- Linux x86-64: unchanged ---------------------------------------------------------------

def test_linux_x86_64_records_what_it_always_recorded() -> None:
    cpu = linux_cpu(text("linux-x86_64-amd-epyc.cpuinfo"), "x86_64", "x86_64", 2)
    assert cpu == EPYC and list(cpu) == list(EPYC)
    machine = environment("Linux 6.18.44", "x86_64", cpu)
    assert platform_label(machine) == "Linux x86_64, AMD EPYC (Zen 3, family 25 model 1)"
    assert env_id(machine) == env_id(environment("Linux 6.18.44", "x86_64", dict(EPYC)))


@pytest.mark.skipif(not (sys.platform.startswith("linux") and platform.machine() == "x86_64"),
                    reason="this machine's own record: x86-64 Linux only")
def test_this_x86_64_linux_host_gains_no_keys() -> None:
    cpu = host()["cpu"]
    assert set(cpu) <= X86_KEYS, "new keys would change every existing env-id"
    assert "emulation" not in cpu


# --- Linux aarch64 -------------------------------------------------------------------------

def test_graviton2_neoverse_n1_from_proc_cpuinfo() -> None:
    cpu = linux_cpu(text("linux-aarch64-graviton2.cpuinfo"), "aarch64", "aarch64", 2)
    assert (cpu["model"], cpu["vendor"], cpu["microarchitecture"]) == (
        "ARM Neoverse N1", "ARM", "Neoverse N1")
    assert (cpu["implementer"], cpu["part"], cpu["variant"], cpu["revision"]) == (
        "0x41", "0xd0c", 3, 1)
    assert cpu["flags"] == ["asimd"] and cpu["sve_vector_length"] is None
    assert "ssbs" in cpu["features"] and "sve" not in cpu["features"]
    assert cpu["family"] is None and cpu["model_number"] is None
    assert platform_label(environment("Linux 6.1", "aarch64", cpu)) == (
        "Linux aarch64, ARM Neoverse N1 (r3p1)")


@pytest.mark.parametrize(("prctl", "default", "expected"), [
    (32 | 1 << 17, None, 256),  # this process's length, PR_SVE_VL_INHERIT set
    (None, "32\n", 256),        # the kernel's default where prctl is unavailable
    (-1, None, "unknown"),
])
def test_graviton3_neoverse_v1_with_its_sve_length(prctl, default, expected) -> None:
    cpu = linux_cpu(text("linux-aarch64-graviton3.cpuinfo"), "aarch64", "aarch64", 64,
                    sve_prctl=prctl, sve_default=default)
    assert cpu["microarchitecture"] == "Neoverse V1"
    assert cpu["flags"] == ["asimd", "bf16", "sve"]
    assert cpu["sve_vector_length"] == expected
    assert cpu_label(environment("Linux 6.1", "aarch64", cpu)) == (
        f"ARM Neoverse V1 (r1p1, SVE {expected})")


def test_unknown_arm_parts_are_named_by_their_numbers() -> None:
    cpuinfo = text("linux-aarch64-graviton2.cpuinfo").replace("0xd0c", "0xd8f").replace(
        "0x41", "0x48")
    cpu = linux_cpu(cpuinfo, "aarch64", "aarch64", 2)
    assert cpu["model"] == "HiSilicon part 0xd8f" and cpu["microarchitecture"] is None


def test_hwcaps_from_the_auxiliary_vector() -> None:
    entries = auxv_entries((DATA / "qemu-7.2-aarch64-max.auxv").read_bytes())
    assert (entries[16], entries[26]) == (0xECFFFFFB, 0x7F877FFF)
    assert auxv_entries(bytes(16) + b"\x10" + bytes(15)) == {}  # AT_NULL ends the vector
    assert hwcap_features(1 << 1 | 1 << 22, 1 << 1) == ["asimd", "sve", "sve2"]
    assert hwcap_features(1 << 40) == ["hwcap:bit40"]  # a newer bit is kept, not dropped
    assert sve_vector_length(["asimd"], 64, None) is None


# --- emulation -----------------------------------------------------------------------------

def qemu_record(**environ: str) -> dict[str, Any]:
    return linux_emulation("aarch64", "x86_64", environ, text("binfmt_misc-qemu-aarch64"),
                           text("qemu-aarch64-static--version.txt"))


@pytest.mark.parametrize(("qemu_cpu", "auxv", "prctl", "label"), [
    ("max", "max", 64, "aarch64 under qemu 7.2, cpu max, SVE 512"),
    (None, "max", 64, "aarch64 under qemu 7.2, cpu default, SVE 512"),
    ("max,sve-default-vector-length=32", "max", 32, "aarch64 under qemu 7.2, cpu max, SVE 256"),
    ("max,sve=off", "max-sve-off", -1, "aarch64 under qemu 7.2, cpu max, no SVE"),
    ("neoverse-n1", "neoverse-n1", -1, "aarch64 under qemu 7.2, cpu neoverse-n1, no SVE"),
])
def test_an_emulated_aarch64_is_never_recorded_as_the_x86_host(qemu_cpu, auxv, prctl,
                                                                label) -> None:
    host_cpuinfo = text("linux-x86_64-amd-epyc.cpuinfo")  # qemu 7 passes it through
    guest = elf_machine(b"\x7fELF\x02\x01\x01" + bytes(11) + (183).to_bytes(2, "little"))
    host_arch = foreign_host(str(guest), None, cpuinfo_fields(host_cpuinfo))
    assert (guest, host_arch) == ("aarch64", "x86_64")
    emulation = qemu_record(**({"QEMU_CPU": qemu_cpu} if qemu_cpu else {}))
    assert emulation == {"by": "qemu", "guest": "aarch64", "host": "x86_64",
                         "cpu_model": qemu_cpu or "default", "version": "7.2.22"}
    cpu = linux_cpu(host_cpuinfo, "aarch64", "aarch64", 2, emulation=emulation,
                    auxv=(DATA / f"qemu-7.2-aarch64-{auxv}.auxv").read_bytes(), sve_prctl=prctl)
    recorded = json.dumps(cpu)
    assert not re.search(r"AMD|EPYC|Zen|avx|AuthenticAMD", recorded), recorded
    assert cpu["emulation"] == emulation and cpu["vendor"] is None
    assert cpu_label(environment("Linux 6.18.44", "aarch64", cpu)) == label
    assert platform_label(environment("Linux 6.18.44", "aarch64", cpu)) == f"Linux {label}"


def test_what_qemu_emulates_is_read_from_the_process_not_from_cpuinfo() -> None:
    max_features = auxv_features((DATA / "qemu-7.2-aarch64-max.auxv").read_bytes())
    n1_features = auxv_features((DATA / "qemu-7.2-aarch64-neoverse-n1.auxv").read_bytes())
    assert max_features == QEMU_MAX_FEATURES
    assert n1_features == ["aes", "asimd", "asimddp", "asimdhp", "asimdrdm", "atomics", "cpuid",
                           "crc32", "dcpop", "fp", "fphp", "lrcpc", "pmull", "sha1", "sha2"]


def test_the_kernels_architecture_decides_over_cpuinfo() -> None:
    x86 = cpuinfo_fields(text("linux-x86_64-amd-epyc.cpuinfo"))
    arm = cpuinfo_fields(text("linux-aarch64-graviton2.cpuinfo"))
    assert foreign_host("aarch64", "x86_64\n", x86) == "x86_64"
    assert foreign_host("aarch64", "x86_64\n", arm) == "x86_64"  # qemu's own cpuinfo
    assert foreign_host("aarch64", None, arm) is None
    assert foreign_host("x86_64", "x86_64", x86) is None
    assert foreign_host("i686", None, x86) is None  # 32-bit on a 64-bit kernel: native
    assert foreign_host("x86_64", None, arm) == "aarch64"
    assert foreign_host("aarch64", None, {}) is None  # nothing says otherwise


def test_an_emulator_that_does_not_say_who_it_is() -> None:
    emulation = linux_emulation("aarch64", "x86_64", {}, None, None)
    assert emulation == {"by": "unknown", "guest": "aarch64", "host": "x86_64"}
    cpu = linux_cpu("", "aarch64", "aarch64", 2, emulation=emulation,
                    auxv=(DATA / "qemu-7.2-aarch64-max.auxv").read_bytes(), sve_prctl=64)
    assert cpu_label({"machine": "aarch64", "cpu": cpu}) == "aarch64 under emulation, SVE 512"
    disabled = text("binfmt_misc-qemu-aarch64").replace("enabled", "disabled")
    assert binfmt_interpreter(disabled) is None
    assert binfmt_interpreter(text("binfmt_misc-qemu-aarch64")) == (
        "/usr/libexec/qemu-binfmt/aarch64-binfmt-P")
    assert qemu_version(text("qemu-aarch64-static--version.txt")) == "7.2.22"
    assert shown_cpu_model("max,sve-default-vector-length=32,pauth-impdef=on") == (
        "max,pauth-impdef=on")


def test_files_that_recorded_the_hosts_cpu_for_an_emulated_aarch64() -> None:
    """Written before emulation was detected: the machine says aarch64, the CPU says x86."""
    old = {"os": "Linux 6.18.44", "machine": "aarch64", "cpu": dict(EPYC)}
    assert cpu_label(old) == "aarch64 under emulation"
    assert platform_label(old) == "Linux aarch64 under emulation"


@pytest.mark.parametrize(("name", "family"), [
    ("x86_64", "x86"), ("AMD64", "x86"), ("i686", "x86"), ("aarch64", "arm"), ("arm64", "arm"),
    ("ARM64", "arm"), ("armv7l", "arm"), ("ppc64le", "power"), ("", None), (None, None),
])
def test_architecture_families(name, family) -> None:
    assert architecture_family(name) == family


def test_the_interpreters_own_binary_says_its_machine() -> None:
    assert elf_machine(b"not an ELF header at all") is None
    if sys.platform.startswith("linux"):
        with open(sys.executable, "rb") as handle:
            assert architecture_family(elf_machine(handle.read(20))) == architecture_family(
                platform.machine())


# --- macOS ---------------------------------------------------------------------------------

def test_apple_silicon_from_sysctl() -> None:
    cpu = macos_cpu(sysctl_values(text("macos-arm64-apple-m1.sysctl")), "arm64", 8)
    assert (cpu["model"], cpu["vendor"], cpu["flags"]) == ("Apple M1", "Apple", ["asimd"])
    assert "FEAT_AES" in cpu["features"] and "FEAT_BF16" not in cpu["features"]
    assert cpu["sve_vector_length"] is None and "emulation" not in cpu
    assert platform_label(environment("Darwin 23.4.0", "arm64", cpu)) == "Darwin arm64, Apple M1"


def test_rosetta_2_is_recorded_as_emulation_on_the_apple_chip() -> None:
    cpu = macos_cpu(sysctl_values(text("macos-x86_64-rosetta-apple-m1.sysctl")), "x86_64", 8)
    assert cpu["emulation"] == {"by": "Rosetta 2", "guest": "x86_64", "host": "arm64",
                                "host_cpu": "Apple M1"}
    assert cpu["flags"] == ["sse4_2"] and cpu["microarchitecture"] is None
    assert platform_label(environment("Darwin 23.4.0", "x86_64", cpu)) == (
        "Darwin x86_64 under Rosetta 2, on Apple M1")


def test_an_intel_mac_is_named_like_an_intel_linux_machine() -> None:
    values = sysctl_values(text("macos-x86_64-intel-core-i7-6700k.sysctl"))
    cpu = macos_cpu(values, "x86_64", 8)
    assert (cpu["vendor"], cpu["family"], cpu["model_number"], cpu["stepping"]) == (
        "GenuineIntel", 6, 94, 3)
    assert cpu["flags"] == ["avx", "avx2", "f16c", "fma", "sse4_2"]
    assert cpu_label({"cpu": cpu}) == (
        "Intel(R) Core(TM) i7-6700K CPU @ 4.00GHz (Skylake, family 6 model 94)")


# --- Windows -------------------------------------------------------------------------------

def registry(name: str) -> dict[str, Any]:
    """The values of a `reg query` listing, typed as winreg returns them."""
    values: dict[str, Any] = {}
    for line in text(name).splitlines():
        match = re.match(r" {4}(.+?) {4}(REG_\w+) {4}(.*)$", line)
        if match:
            key, kind, value = match.groups()
            values[key] = (int(value, 16) if kind in ("REG_DWORD", "REG_QWORD") else
                           bytes.fromhex(value) if kind == "REG_BINARY" else value)
    return values


def test_windows_x86_64_from_the_registry() -> None:
    values = registry("windows-amd64-amd-epyc-7763.reg-query.txt")
    cpu = windows_cpu(values, "AMD64 Family 25 Model 1 Stepping 1, AuthenticAMD", "AMD64",
                      "AMD64", ["avx", "avx2", "sse4_1", "sse4_2", "ssse3"], 4)
    assert (cpu["model"], cpu["vendor"], cpu["microarchitecture"]) == (
        "AMD EPYC 7763 64-Core Processor", "AuthenticAMD", "Zen 3")
    assert cpu["flags"] == ["avx", "avx2", "sse4_2"]
    assert platform_label(environment("Windows 2022Server", "AMD64", cpu)) == (
        "Windows AMD64, AMD EPYC 7763 64-Core Processor (Zen 3, family 25 model 1)")
    bare = windows_cpu({}, "AMD64 Family 25 Model 1 Stepping 1, AuthenticAMD", "AMD64", None,
                       [], 4)  # no registry: PROCESSOR_IDENTIFIER alone
    assert (bare["vendor"], bare["microarchitecture"]) == ("AuthenticAMD", "Zen 3")


def test_windows_on_arm_native_and_emulated_x64() -> None:
    """Constructed readings (no recorded Windows on Arm fixture): the MIDR the registry keeps
    as 'CP 4000' names the core; an x64 process on it is emulated."""
    arm = windows_cpu({"CP 4000": 0x410FD490}, "ARMv8 (64-bit) Family 8 Model D49 Revision 0",
                      "ARM64", "ARM64", ["asimddp", "sve", "sve2"], 8)
    assert (arm["model"], arm["flags"], arm["sve_vector_length"]) == (
        "ARM Neoverse N2", ["asimd", "sve", "sve2"], "unknown")
    x64 = windows_cpu({"ProcessorNameString": "Example Arm CPU"}, "", "AMD64", "ARM64",
                      ["sse4_2"], 8)
    assert x64["emulation"]["host"] == "ARM64" and x64["vendor"] is None
    assert platform_label(environment("Windows 11", "AMD64", x64)) == (
        "Windows AMD64 under Windows on Arm emulation, on Example Arm CPU")
