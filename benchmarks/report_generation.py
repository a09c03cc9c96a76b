"""How long `audit.publish.report.write_report` takes on a million result rows, and its peak memory.

Writes synthetic results files of a realistic shape into a temp folder: 2 torch versions
(one file each) x cpu x threads 1/2 x cpu_capability default/avx2/avx512 x deterministic
off/on = 24 environment-settings combinations, over enough (scenario, output) pairs to make
`--rows` rows (~42,000 pairs for 1,000,000). Most outputs hold everywhere; some differ along
one axis (torch, CPU capability, threads, determinism) or two, with real digests and real
value samples (`audit.capture.sample.take_sample` of small tensors a few ULP apart), so distances
are computed; a few cells are nondeterministic, raise, or are unavailable. The report then
runs in a child process, timed there; its peak RSS is the children's high-water mark
(`getrusage(RUSAGE_CHILDREN).ru_maxrss`). Targets: under 15 s, under 2 GiB.
The temp folder is removed at the end.

    python benchmarks/report_generation.py [--quick] [--rows N] [--profile] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import ROOT, emit_json, size_label, target_line

from audit.capture.hashing import digest
from audit.capture.sample import take_sample
from audit.environment.collect import collect, env_id
from audit.store.results import Compaction, dumps, make_header, make_row

SECONDS_TARGET = 15.0
MEMORY_TARGET = 2 * 1024**3
TORCH_VERSIONS = ("2.13.0+cpu", "2.14.1")
THREADS = ("1", "2")
CAPABILITIES = ("default", "avx2", "avx512")
DETERMINISTIC = ("off", "on")
FAMILIES = ("data", "init", "numpy", "ops", "python", "rng", "seed", "state", "train")
# dtype shares and the 45% of outputs over 256 elements (sampled, not kept whole) are those
# of the built-in suite on cpu.
DTYPES = ((torch.float32, 0.63), (torch.int64, 0.21), (torch.float64, 0.10),
          (torch.bfloat16, 0.03), (torch.float16, 0.03))
SAMPLED_SHARE = 0.45
BITS = {torch.float32: torch.int32, torch.float64: torch.int64, torch.int64: torch.int64,
        torch.bfloat16: torch.int16, torch.float16: torch.int16}
# How an output varies: hold everywhere, or differ along these axes; nondeterministic cells.
PATTERNS = ((), ("torch",), ("cpu_capability",), ("threads",), ("deterministic",),
            ("torch", "cpu_capability"), ("nondeterministic",))
PATTERN_WEIGHTS = (0.76, 0.08, 0.07, 0.04, 0.02, 0.01, 0.02)
CHECKED_ROWS = 2000  # rows checked against dumps(make_row(...)) before trusting the fast path

REPORT_CHILD = """
import cProfile, io, json, pstats, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
started = time.perf_counter()
from audit.publish.report import write_report
imported = time.perf_counter()
profile = cProfile.Profile() if sys.argv[4] == "1" else None
if profile:
    profile.enable()
target = write_report([sys.argv[2]], Path(sys.argv[3]))
done = time.perf_counter()
if profile:
    profile.disable()
    for order in ("tottime", "cumulative"):
        text = io.StringIO()
        pstats.Stats(profile, stream=text).sort_stats(order).print_stats(15)
        print(f"--- top 15 by {order} ---")
        print(text.getvalue().split("\\n\\n", 2)[-1].strip())
print(json.dumps({"import_s": imported - started, "report_s": done - imported,
                  "report_bytes": target.stat().st_size}))
"""


@dataclass
class Output:
    """One synthetic (scenario, output): its variants and how cells pick one."""

    name: str
    dtype: str
    shape: list[int]
    kind: str
    pattern: tuple[str, ...]
    variants: list[tuple[str, dict[str, Any]]]  # (digest, sample JSON)

    def __post_init__(self) -> None:
        # Pieces of the row line serialized once (see ok_line).
        self.pieces = (json.dumps(self.dtype), json.dumps(self.name), dumps(self.shape))
        self.variant_pieces = [(json.dumps(value_digest), dumps(sample))
                               for value_digest, sample in self.variants]


def perturbed(tensor: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """The tensor with some elements a few ULP (integers: a few units) away."""
    copy = tensor.clone()
    bits = copy.view(BITS[copy.dtype]).reshape(-1)
    share = rng.choice([0.01, 0.1, 1.0])
    count = max(1, int(bits.numel() * share))
    positions = torch.from_numpy(rng.choice(bits.numel(), size=count, replace=False))
    bits[positions] += int(rng.integers(1, 50))
    return copy


def make_output(name: str, rng: np.random.Generator) -> Output:
    dtype = DTYPES[rng.choice(len(DTYPES), p=[weight for _, weight in DTYPES])][0]
    sampled = rng.random() < SAMPLED_SHARE
    numel = int(rng.integers(257, 4097)) if sampled else int(rng.integers(1, 257))
    shape = [numel] if numel < 16 or numel % 4 else [4, numel // 4]
    if dtype == torch.int64:
        base = torch.from_numpy(rng.integers(-1000, 1000, size=numel)).reshape(shape)
    else:
        base = torch.from_numpy(rng.standard_normal(numel)).to(dtype).reshape(shape)
    pattern = PATTERNS[rng.choice(len(PATTERNS), p=PATTERN_WEIGHTS)]
    tensors = [base] + [perturbed(base, rng) for _ in range(3 if pattern else 0)]
    variants = [(digest(item), take_sample(item).to_json()) for item in tensors]
    return Output(name, str(dtype).replace("torch.", ""), shape, "dense", pattern, variants)


def variant_of(output: Output, torch_index: int, threads: int, capability: int,
               deterministic: int) -> int:
    """Which variant a cell holds: the axes an output breaks on pick it."""
    if not output.pattern or output.pattern == ("nondeterministic",):
        return 0
    index = 0
    for axis in output.pattern:
        index += {"torch": torch_index, "cpu_capability": capability, "threads": threads,
                  "deterministic": deterministic}[axis]
    return min(index, len(output.variants) - 1)


def ok_line(output: Output, variant: int, repeatable: bool, seconds: float,
            cell: tuple[str, str, str, str], with_sample: bool) -> str:
    """`dumps(make_row(...))` of an ok row, assembled from pieces serialized once.

    Keys in sorted order, separators as `dumps` writes them; checked against `dumps` for
    the first rows of every run (see `generate`). As `audit.store.results.Compaction` writes
    it: no `requested` (it equals `settings` here), and a sample only on the first row of
    its digest in the file (`with_sample`).
    """
    scenario, env, settings, version = cell
    dtype, name, shape = output.pieces
    value_digest, sample = output.variant_pieces[variant]
    sample = sample if with_sample else "null"
    return ('{"device":"cpu","digest":' + value_digest + ',"dtype":' + dtype + ',"env_id":'
            + env + ',"error":null,"kind":"dense","output":' + name
            + ',"record":"repro-audit/row","repeatable":' + ("true" if repeatable else "false")
            + ',"sample":' + sample + ',"scenario":' + scenario
            + ',"seconds":' + repr(seconds) + ',"settings":' + settings + ',"shape":' + shape
            + ',"status":"ok","torch_version":' + version + "}")


def generate(folder: Path, rows_wanted: int, seed: int = 20260101) -> dict[str, Any]:
    """Write one results file per torch version; returns what was written."""
    rng = np.random.default_rng(seed)
    environment = collect()
    cells = len(TORCH_VERSIONS) * len(THREADS) * len(CAPABILITIES) * len(DETERMINISTIC)
    pairs_wanted = rows_wanted // cells
    scenarios: list[tuple[str, list[Output]]] = []
    pairs = 0
    while pairs < pairs_wanted:
        family = FAMILIES[len(scenarios) % len(FAMILIES)]
        name = f"{family}.synthetic_{len(scenarios):05d}"
        count = min(int(rng.integers(1, 24)), pairs_wanted - pairs)
        outputs = [make_output(f"params.layer{j}.weight", rng) for j in range(count)]
        scenarios.append((name, outputs))
        pairs += count
    failing = {name for name, _ in scenarios if rng.random() < 0.005}
    too_new = {name for name, _ in scenarios if rng.random() < 0.003}

    written = {"rows": 0, "bytes": 0, "pairs": pairs, "scenarios": len(scenarios),
               "files": len(TORCH_VERSIONS)}
    for torch_index, version in enumerate(TORCH_VERSIONS):
        seen: set[str] = set()  # digests whose sample this file has (schema 2)
        compact = Compaction()  # the writer's rules, for the rows checked against dumps()
        env = {**environment, "torch": version}
        identity = env_id(env)
        header = make_header(env, identity, devices={"cpu": None},
                             selection=[name for name, _ in scenarios],
                             settings={"threads": list(THREADS),
                                       "cpu_capability": list(CAPABILITIES),
                                       "deterministic": list(DETERMINISTIC)})
        path = folder / f"torch-{version.replace('+', '_')}-{identity}.jsonl"
        with open(path, "w", encoding="utf-8", newline="\n") as stream:
            stream.write(dumps(header) + "\n")
            for name, outputs in scenarios:
                for cap_index, capability in enumerate(CAPABILITIES):
                    for det_index, determinism in enumerate(DETERMINISTIC):
                        for thr_index, threads in enumerate(THREADS):
                            settings = {"cpu_capability": capability,
                                        "deterministic": determinism, "threads": threads}
                            common = {"scenario": name, "device": "cpu",
                                      "torch_version": version, "env_id": identity,
                                      "settings": settings, "requested": settings}
                            if name in too_new and torch_index == 0:
                                rows = [make_row(output=None, status="unavailable",
                                                 error="needs torch >= 2.14", **common)]
                            elif name in failing and det_index == 1:
                                rows = [make_row(
                                    output=None, status="raises-when-deterministic",
                                    error="RuntimeError: index_add_cpu_ does not have a "
                                          "deterministic implementation", **common)]
                            else:
                                rows = []
                                cell = (json.dumps(name), json.dumps(identity), dumps(settings),
                                        json.dumps(version))
                                for output in outputs:
                                    line = cell_line(output, common, cell, rng, torch_index,
                                                     thr_index, cap_index, det_index, seen,
                                                     compact if written["rows"] < CHECKED_ROWS
                                                     else None)
                                    stream.write(line)
                                    written["rows"] += 1
                                    written["bytes"] += len(line)
                            for row in rows:
                                line = dumps(compact(row)) + "\n"
                                stream.write(line)
                                written["rows"] += 1
                                written["bytes"] += len(line)
    return written


def cell_line(output: Output, common: dict[str, Any], cell: tuple[str, str, str, str],
              rng: np.random.Generator, torch_index: int, thr_index: int, cap_index: int,
              det_index: int, seen: set[str], check: Compaction | None) -> str:
    """The results line of one ok cell (`check`: compare it with the writer's)."""
    repeatable = True
    if output.pattern == ("nondeterministic",) and thr_index == 1:
        variant, repeatable = int(rng.integers(0, len(output.variants))), False
    else:
        variant = variant_of(output, torch_index, thr_index, cap_index, det_index)
    seconds = round(float(rng.random()), 6)
    value_digest, sample = output.variants[variant]
    line = ok_line(output, variant, repeatable, seconds, cell, value_digest not in seen)
    seen.add(value_digest)
    if check is not None:
        expected = dumps(check(make_row(
            output=output.name, status="ok", digest=value_digest, repeatable=repeatable,
            dtype=output.dtype, shape=output.shape, kind=output.kind, sample=sample,
            seconds=seconds, **common)))
        if line != expected:
            raise AssertionError(f"row assembly differs from dumps():\n{line}\n{expected}")
    return line + "\n"


def run_report(results: Path, out: Path, profile: bool) -> tuple[dict[str, Any], float, str]:
    """Run write_report in a child; (its figures, its wall time, its printed profile)."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", REPORT_CHILD, str(ROOT), str(results), str(out),
         "1" if profile else "0"], capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"report_generation: the report failed ({done.returncode})")
    lines = done.stdout.strip().splitlines()
    return json.loads(lines[-1]), wall, "\n".join(lines[:-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="100,000 rows")
    parser.add_argument("--profile", action="store_true",
                        help="also run the report under cProfile (after the timed run)")
    parser.add_argument("--keep", help="write the synthetic files here and keep them")
    args = parser.parse_args()
    rows = 100_000 if args.quick else args.rows

    folder = Path(args.keep) if args.keep else Path(
        tempfile.mkdtemp(prefix="repro-audit-report-bench-"))
    results, out = folder / "results", folder / "reports"
    results.mkdir(parents=True, exist_ok=True)
    try:
        started = time.perf_counter()
        written = generate(results, rows)
        generation = time.perf_counter() - started
        print(f"report generation: {written['rows']:,} rows ({written['pairs']:,} outputs of "
              f"{written['scenarios']:,} scenarios x 24 combinations) in {written['files']} "
              f"files, {size_label(written['bytes'])}, generated in {generation:.1f} s")
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        figures, wall, _ = run_report(results, out, profile=False)
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # KiB on Linux
        if peak <= before * 1024:
            print("  (warning: an earlier child had a higher RSS; the peak may not be the "
                  "report's)")
        print(f"  write_report: {figures['report_s']:.2f} s (child wall {wall:.2f} s, of which "
              f"imports {figures['import_s']:.2f} s); report {size_label(figures['report_bytes'])}")
        print(f"  peak RSS of the report process: {peak / 1024**3:.2f} GiB")
        time_ok = figures["report_s"] < SECONDS_TARGET
        memory_ok = peak < MEMORY_TARGET
        print("targets:")
        print(target_line("write_report time", f"{figures['report_s']:.2f} s",
                          f"< {SECONDS_TARGET:g} s", time_ok))
        print(target_line("peak RSS", f"{peak / 1024**3:.2f} GiB", "< 2 GiB", memory_ok))
        profile_text = ""
        if args.profile:
            _, profiled_wall, profile_text = run_report(results, out, profile=True)
            print(f"cProfile of write_report (wall {profiled_wall:.1f} s with profiling):")
            print(profile_text)
        elif not (time_ok and memory_ok):
            print("  (run with --profile for the report's hot spots)")
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    emit_json("report_generation", {
        "rows": written["rows"], "pairs": written["pairs"], "scenarios": written["scenarios"],
        "results_bytes": written["bytes"], "generation_s": generation,
        "report_s": figures["report_s"], "import_s": figures["import_s"],
        "child_wall_s": wall, "peak_rss_bytes": peak, "report_bytes": figures["report_bytes"],
        "targets": {"under_15s": time_ok, "under_2GiB": memory_ok},
    })


if __name__ == "__main__":
    main()
