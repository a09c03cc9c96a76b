"""The default audit of one torch version: serial against parallel, traced-everything against
trace-on-demand, side by side in one run.

Each variant is one `python -m audit run --matrix M --out TMP` of the whole matrix (all its
scenarios and settings combinations, the [[settings.also]] products included), timed
wall-clock from here; the variants take turns (round robin) so that other load on the
machine falls on all of them alike:
  serial, no traces        --jobs 1 --no-trace: the reference of the target
  serial, trace all        --jobs 1 --trace-all: what every audit did before (a traced
                           third run of every unit, one worker at a time)
  parallel, no traces      --no-trace, workers side by side (--jobs: all cores)
  parallel, trace all      --trace-all
  parallel, on demand      the matrix as it is (trace = true): the default
For each variant: wall time, rows, units traced, and from the report's own comparison
(audit.judge.compare, in this interpreter: it needs pandas) the differing cells (an output at
one axis value against the reference value) and how many got an origin ("first diverges
at ..."). Checked: the digests of every variant equal those of `serial, trace all`, and
trace-on-demand names an origin for every cell the traced-everything run names one for.
Target: parallel, on demand <= 0.85x serial, no traces.

Runtime: one round of the five variants of the default matrix on torch 2.13.0+cpu takes
about 8 minutes on 2 cores (torch 2.14.1: about 10). Run it from the repo root with the
python of a venv that has torch and pandas (the tests venv), or give the audit's python:

    .nox/tests/bin/python benchmarks/audit_schedule.py [--repeats N] [--matrix M]
        [--python .nox/audit-torch-2-14-1/bin/python] [--select GLOB ...] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import ROOT, emit_json, median, target_line

TARGET = 0.85
VARIANTS: dict[str, list[str]] = {
    "serial, no traces": ["--jobs", "1", "--no-trace"],
    "serial, trace all": ["--jobs", "1", "--trace-all"],
    "parallel, no traces": ["--no-trace"],
    "parallel, trace all": ["--trace-all"],
    "parallel, on demand": [],
}
REFERENCE, DEFAULT, EVERYTHING = "serial, no traces", "parallel, on demand", "serial, trace all"


def run_variant(python: str, matrix: str, select: list[str], arguments: list[str],
                out: Path) -> dict[str, Any]:
    shutil.rmtree(out, ignore_errors=True)
    command = [python, "-m", "audit", "run", "--matrix", matrix, "--out", str(out), *arguments]
    command += [item for pattern in select for item in ("--select", pattern)]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False,
                          env={**os.environ, "CI": "1"})  # no progress line
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return {"wall_s": wall, "summary": done.stdout.strip().splitlines()[-1]}


def facts(out: Path) -> dict[str, Any]:
    """Digests, traced units, and the report's differing cells with and without an origin."""
    from audit.judge.compare import compare
    from audit.store.results import read_all
    from audit.trace.files import read_traces

    (results,) = out.glob("*.jsonl")
    digests = {}
    for line in results.read_text(encoding="utf-8").splitlines()[1:]:
        row = json.loads(line)
        digests[(row["scenario"], str(row["output"]),
                 json.dumps(row["settings"], sort_keys=True))] = (
            row["status"], row["digest"], row.get("repeatable"))
    traces = list(out.glob("*.traces.jsonl.gz"))
    traced = len(read_traces(traces[0])) if traces else 0
    comparison = compare(read_all([str(results)]))
    differing, with_origin = set(), set()
    for axis, table in comparison.tables.items():
        for key, cells in table.cells.items():
            for value, cell in cells.items():
                if cell.differing:
                    differing.add((axis, value, *key))
                    if cell.origin:
                        with_origin.add((axis, value, *key))
    return {"digests": digests, "rows": len(digests), "traced_units": traced,
            "differing": differing, "with_origin": with_origin}


def same_digests(a: dict[Any, Any], b: dict[Any, Any]) -> tuple[bool, int]:
    """Whether every cell has the same status and, where it repeated in both runs, the same
    digest (a value not repeatable run to run may differ between runs too); and how many
    cells were not repeatable in one of them."""
    if a.keys() != b.keys():
        return False, 0
    loose = 0
    for key, (status, digest, repeatable) in a.items():
        other = b[key]
        if status != other[0]:
            return False, loose
        if repeatable is True and other[2] is True:
            if digest != other[1]:
                return False, loose
        elif status == "ok":
            loose += 1
    return True, loose


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--matrix", default="matrices/default.toml")
    parser.add_argument("--python", default=sys.executable,
                        help="the interpreter (venv) whose torch is audited")
    parser.add_argument("--repeats", type=int, default=1, help="rounds of all variants")
    parser.add_argument("--select", action="append", default=[], metavar="GLOB",
                        help="scenarios (default: the matrix's selection)")
    parser.add_argument("--only", action="append", default=[], choices=list(VARIANTS),
                        help="run only these variants (the reference ones are always run)")
    args = parser.parse_args()

    names = [name for name in VARIANTS
             if not args.only or name in args.only or name in (REFERENCE, EVERYTHING)]
    version = subprocess.run([args.python, "-c", "import torch; print(torch.__version__)"],
                             capture_output=True, text=True, check=True).stdout.strip()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    print(f"audit schedule: {args.matrix} under torch {version}, {os.cpu_count()} cores, "
          f"{args.repeats} round(s), variants in turn; load average before: {load}")
    root = Path(tempfile.mkdtemp(prefix="repro-audit-schedule-"))
    walls: dict[str, list[float]] = {name: [] for name in names}
    found: dict[str, dict[str, Any]] = {}
    try:
        for round_number in range(args.repeats):
            for name in names:
                out = root / name.replace(", ", "-").replace(" ", "_")
                result = run_variant(args.python, args.matrix, args.select, VARIANTS[name], out)
                walls[name].append(result["wall_s"])
                if round_number == 0:
                    found[name] = facts(out)
                print(f"  round {round_number + 1} {name:<20} {result['wall_s']:7.1f} s",
                      flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    reference = median(walls[REFERENCE])
    everything = found[EVERYTHING]
    figures: dict[str, Any] = {"torch": version, "matrix": args.matrix, "select": args.select,
                               "repeats": args.repeats, "variants": {}}
    print(f"{'variant':<22} {'wall':>8} {'x serial':>9} {'traced':>7} {'differing':>10} "
          f"{'origin':>7}  digests")
    for name in names:
        item = found[name]
        same, loose = same_digests(item["digests"], everything["digests"])
        wall = median(walls[name])
        print(f"{name:<22} {wall:7.1f}s {wall / reference:8.2f}x {item['traced_units']:7d} "
              f"{len(item['differing']):10d} {len(item['with_origin']):7d}  "
              f"{'= serial, trace all' if same else 'DIFFER'}"
              + (f" ({loose} not repeatable)" if loose else ""))
        figures["variants"][name] = {
            "wall_s": walls[name], "median_s": wall, "over_serial_no_traces": wall / reference,
            "rows": item["rows"], "traced_units": item["traced_units"],
            "differing_cells": len(item["differing"]),
            "with_origin": len(item["with_origin"]), "digests_equal_serial_trace_all": same,
        }
    ratio = median(walls[DEFAULT]) / reference if DEFAULT in walls else float("nan")
    lost = (everything["with_origin"] - found[DEFAULT]["with_origin"]) if DEFAULT in found \
        else set()
    print(target_line("parallel, on demand / serial, no traces", f"{ratio:.2f}x",
                      f"<= {TARGET}x", ratio <= TARGET))
    print(target_line("origins named with traces on demand", f"{len(lost)} of "
                      f"{len(everything['with_origin'])} missing", "none missing", not lost))
    figures["target"] = {"ratio": ratio, "met": ratio <= TARGET, "origins_missing": len(lost)}
    emit_json("audit_schedule", figures)


if __name__ == "__main__":
    main()
