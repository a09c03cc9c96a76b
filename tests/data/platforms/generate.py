"""Writes the results files of tests/data/platforms/ (run by hand, not by the tests).

The rows are those of a real run on x86-64 Linux (`python -m audit run --select 'seed.*'
--select 'rng.rand*' --settings threads=1 --devices cpu`, torch 2.13.0+cpu), given the
header each platform's run writes: its CPU as the readers of audit.environment record it
from the recorded files of tests/data/cpu/, its build label, the cpu_capability its torch
picks by itself, and the settings that are n/a there (no MKL on Arm, no oneDNN ISA cap on
macOS). A few outputs get other values on some platforms, as an Arm build's randn does.

    PYTHONPATH=$PWD python tests/data/platforms/generate.py RUN.jsonl
"""

from __future__ import annotations

import base64
import copy
import gzip
import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any

from audit.environment.cpu_linux import linux_cpu
from audit.environment.cpu_macos import macos_cpu, sysctl_values
from audit.environment.cpu_windows import windows_cpu

HERE = Path(__file__).resolve().parent
CPU = HERE.parent / "cpu"
XEON = {"model": "Intel(R) Xeon(R) Processor @ 2.80GHz", "cores": 2,
        "flags": ["avx", "avx2", "avx512bw", "avx512f", "f16c", "fma", "sse4_2"]}


def registry(name: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for line in (CPU / name).read_text(encoding="utf-8").splitlines():
        match = re.match(r" {4}(.+?) {4}(REG_\w+) {4}(.*)$", line)
        if match:
            key, kind, value = match.groups()
            values[key] = (int(value, 16) if kind in ("REG_DWORD", "REG_QWORD") else
                           bytes.fromhex(value) if kind == "REG_BINARY" else value)
    return values


# name: (environment changes, automatic cpu_capability, settings n/a, outputs changed)
PLATFORMS: dict[str, dict[str, Any]] = {
    "linux-x86_64": {
        "env": {"os": "Linux 6.18.44", "machine": "x86_64", "cpu": XEON, "torch": "2.13.0+cu130",
                "torch_cuda": "13.0", "cpu_capability": "AVX512",
                "platform": "Linux-6.18.44-x86_64-with-glibc2.36"},
        "capability": "avx512", "pinned": ["avx2"], "na": [], "changed": []},
    "linux-aarch64": {
        "env": {"os": "Linux 6.1.0", "machine": "aarch64", "torch": "2.13.0+cpu",
                "cpu": linux_cpu((CPU / "linux-aarch64-graviton3.cpuinfo").read_text(),
                                 "aarch64", "aarch64", 4, sve_default="32\n"),
                "cpu_capability": "SVE256", "blas": "open", "lapack": "open", "mkl": None,
                "platform": "Linux-6.1.0-aarch64-with-glibc2.36",
                "onednn": {"isa": "AArch64 SVE (256 bits)", "isa_capped_by": None,
                           "version": "oneDNN v3.7.1"}},
        "capability": "sve256", "pinned": [], "na": ["mkl_cbwr"],
        "changed": [("rng.randn", 2), ("rng.rand", 1)]},
    "macos-arm64": {
        "env": {"os": "Darwin 23.4.0", "machine": "arm64", "torch": "2.13.0",
                "cpu": macos_cpu(sysctl_values(
                    (CPU / "macos-arm64-apple-m1.sysctl").read_text()), "arm64", 8),
                "cpu_capability": "DEFAULT", "blas": "accelerate", "lapack": "accelerate",
                "mkl": None, "libc": None, "platform": "macOS-14.4-arm64-arm-64bit",
                "onednn": None},
        "capability": "default", "pinned": [], "na": ["mkl_cbwr", "onednn_isa"],
        "changed": [("rng.randn", 2)]},
    "windows-x86_64": {
        "env": {"os": "Windows 2022Server", "machine": "AMD64", "torch": "2.13.0+cpu",
                "cpu": windows_cpu(registry("windows-amd64-amd-epyc-7763.reg-query.txt"),
                                   "AMD64 Family 25 Model 1 Stepping 1, AuthenticAMD",
                                   "AMD64", "AMD64",
                                   ["avx", "avx2", "sse4_1", "sse4_2", "ssse3"], 4),
                "cpu_capability": "AVX2", "libc": None,
                "platform": "Windows-2022Server-10.0.20348-SP0"},
        "capability": "avx2", "pinned": [], "na": [], "changed": [("seed.fork_rng", 1)],
        "failed": "rng.randperm"},
}


def flipped(row: dict[str, Any]) -> None:
    """Another value: the last bit of the first kept element, and a digest of its own."""
    raw = bytearray(base64.b64decode(row["sample"]["b64"]))
    raw[0] ^= 1
    row["sample"]["b64"] = base64.b64encode(bytes(raw)).decode()
    row["digest"] = ("f" + row["digest"])[:64]


def rewrite(header: dict[str, Any], rows: list[dict[str, Any]], name: str,
            spec: dict[str, Any]) -> list[dict[str, Any]]:
    env_id = hashlib.sha256(name.encode()).hexdigest()[:16]
    head = copy.deepcopy(header)
    head["environment"].update(spec["env"])
    head["environment"]["hostname"] = name
    head["env_id"] = env_id
    head.pop("references", None)
    if spec["pinned"]:
        head["settings"] = {"cpu_capability": ["auto", *spec["pinned"]], "threads": ["1"]}
    version = spec["env"]["torch"]
    written = [head]
    changed: dict[str, int] = {}
    failed_unit: tuple[str, str] | None = None
    for value in ["auto", *spec["pinned"]]:
        for source in rows:
            row = copy.deepcopy(source)
            settings = row["settings"]
            settings["cpu_capability"] = spec["capability"] if value == "auto" else value
            for setting in spec["na"]:
                settings[setting] = "n/a"
            row.update(env_id=env_id, torch_version=version, seconds=0.01,
                       requested={"threads": "1"} if value == "auto"
                       else {"cpu_capability": value, "threads": "1"})
            if value == "auto" and row["sample"]:
                for scenario, count in spec["changed"]:
                    if row["scenario"] == scenario and changed.get(scenario, 0) < count:
                        changed[scenario] = changed.get(scenario, 0) + 1
                        flipped(row)
            if row["scenario"] == spec.get("failed"):
                if failed_unit == (row["scenario"], value):
                    continue  # a unit that fails writes one row
                failed_unit = (row["scenario"], value)
                row.update(status="error", digest=None, output=None, sample=None,
                           error="RuntimeError: example failure", repeatable=None,
                           dtype=None, shape=None, kind=None)
            written.append(row)
    return written


def main(source: str) -> None:
    lines = Path(source).read_text(encoding="utf-8").splitlines()
    header, rows = json.loads(lines[0]), [json.loads(line) for line in lines[1:]]
    samples: dict[str, Any] = {}  # every row its own sample: a changed digest keeps none
    for row in rows:
        row["sample"] = samples.setdefault(row["digest"], row["sample"]) or row["sample"]
    for name, spec in PLATFORMS.items():
        written = rewrite(header, rows, name, spec)
        target = HERE / f"{name}.jsonl.gz"
        with gzip.open(target, "wt", encoding="utf-8") as handle:
            for row in written:
                handle.write(json.dumps(row, sort_keys=True, separators=(",", ":")) + "\n")
        print(f"wrote {target.name}: {len(written) - 1} rows")


if __name__ == "__main__":
    main(sys.argv[1])
