"""Small helpers shared by the benchmark scripts: timing, medians, formatting, the JSON line.

Every benchmark prints readable lines and, as its last line, one JSON object with all its
figures. Ratios are measured side by side: variants run interleaved in one process and the
median of the repetitions is compared. Targets are printed with PASS / MISS; a benchmark is
a measurement, so it exits 0 either way.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # `python benchmarks/x.py` from the repo root imports audit

MiB = 1024 * 1024


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def timed(function: Callable[[], Any]) -> float:
    """Seconds one call of `function` takes (perf_counter)."""
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def calibrate(function: Callable[[], Any], min_seconds: float = 0.02) -> int:
    """How many calls of `function` take at least `min_seconds` (at least 1)."""
    loops = 1
    while True:
        if timed(lambda n=loops: _repeat(function, n)) >= min_seconds or loops >= 1 << 24:
            return loops
        loops *= 4


def _repeat(function: Callable[[], Any], loops: int) -> None:
    for _ in range(loops):
        function()


def per_call(function: Callable[[], Any], loops: int) -> float:
    """Seconds per call, from one batch of `loops` calls."""
    return timed(lambda: _repeat(function, loops)) / loops


def interleaved(variants: dict[str, Callable[[], float]], repeats: int,
                warmup: int = 1) -> dict[str, list[float]]:
    """Run each variant `repeats` times, round robin; each call returns its own seconds.

    Round robin spreads drift (other load on the machine, clock changes) over all variants
    alike, which is what makes the ratio between them fair.
    """
    for _ in range(warmup):
        for run in variants.values():
            run()
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, run in variants.items():
            samples[name].append(run())
    return samples


def gbps(nbytes: int, seconds: float) -> float:
    return nbytes / seconds / 1e9 if seconds > 0 else float("inf")


def size_label(nbytes: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if nbytes >= size:
            value = nbytes / size
            return f"{value:g} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{nbytes} B"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def target_line(label: str, value: str, target: str, ok: bool) -> str:
    return f"  {label}: {value} (target {target}) {verdict(ok)}"


def machine() -> dict[str, Any]:
    """Where the figures came from, and how busy the machine was (other jobs skew timings)."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"python": platform.python_version(), "cores": os.cpu_count(),
            "machine": platform.machine(),
            "loadavg_1m": round(load[0], 2) if load else None}


def tree_size(path: Path) -> int:
    """Bytes of the regular files under `path`, each hard-linked inode counted once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for directory, _, files in os.walk(path):
        for name in files:
            try:
                info = os.lstat(os.path.join(directory, name))
            except OSError:
                continue
            key = (info.st_dev, info.st_ino)
            if key not in seen and not os.path.islink(os.path.join(directory, name)):
                seen.add(key)
                total += info.st_size
    return total


def rounded(value: Any, digits: int = 4) -> Any:
    """Floats rounded to `digits` significant digits for the JSON line (recursively)."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}") if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {key: rounded(item, digits) for key, item in value.items()}
    if isinstance(value, list):
        return [rounded(item, digits) for item in value]
    return value


def emit_json(name: str, figures: dict[str, Any]) -> None:
    """The last line: one JSON object with every figure of the benchmark."""
    record = {"benchmark": name, "machine": machine(), **figures}
    print(json.dumps(rounded(record), sort_keys=True), flush=True)
