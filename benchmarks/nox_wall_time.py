"""Wall time of the default `nox` run: cold (no venvs yet) and warm (`-r`, venvs reused).

Cold uses `--envdir` on a fresh temp folder, warm reuses it with `-r`. Results and reports go
to temp folders through REPRO_AUDIT_RESULTS / REPRO_AUDIT_REPORTS, so the repo's results/
and reports/ stay untouched; the temp reports/ starts with a copy of the repo's kept results
(reports/results/), which the report merges as the README's command does. The uv cache is
the user's unless `--fresh-uv-cache` gives both runs a new one (then cold also means an empty
package cache).

`--select GLOB` limits the audit to matching scenarios (nox posargs of the audit sessions).
The report session forwards posargs to `audit report`, which has no --select, so with a
selection the run is split into `nox -s audit -- --select GLOB` and `nox -s report`, timed
together. Every temp folder (venvs of several GB) is removed at the end.

    python benchmarks/nox_wall_time.py [--select GLOB ...] [--fresh-uv-cache] [--timeout S]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from _common import ROOT, emit_json, tree_size

KEPT = ROOT / "reports" / "results"
SESSION_LINE = re.compile(r"Session (?P<name>\S+) (?P<outcome>was successful|failed|was skipped)"
                          r"(?: in (?P<took>[^.]+))?")
STAMPED = re.compile(r"^nox > \[(?P<stamp>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\] (?P<text>.*)$")
STEPS = (("venv", ("Creating virtual environment", "Reusing existing virtual environment")),
         ("install", ("pip install",)), ("audit run", ("-m audit run",)),
         ("report", ("-m audit report",)), ("import check", ("import torch",)))


def step_seconds(output: str) -> dict[str, dict[str, float]]:
    """Seconds per session and step, from nox's `--add-timestamp` log lines.

    A step lasts from its log line to the next one (nox logs each command as it starts).
    """
    events = []
    for line in output.splitlines():
        match = STAMPED.match(line)
        if match:
            stamp = datetime.strptime(match["stamp"], "%Y-%m-%d %H:%M:%S,%f")
            events.append((stamp, match["text"]))
    steps: dict[str, dict[str, float]] = {}
    session = "?"
    for (stamp, text), (after, _) in zip(events, events[1:]):
        if text.startswith("Running session "):
            session = text[len("Running session "):].strip()
        kind = next((name for name, markers in STEPS
                     if any(marker in text for marker in markers)), "other")
        per = steps.setdefault(session, {})
        per[kind] = per.get(kind, 0.0) + (after - stamp).total_seconds()
    return steps


def nox_commands(envdir: Path, reuse: bool, select: list[str]) -> list[list[str]]:
    """The nox invocations of one run (one, or audit + report when selecting)."""
    base = [sys.executable, "-m", "nox", "--add-timestamp", "--envdir", str(envdir)]
    base += ["-r"] if reuse else []
    if not select:
        return [base]
    posargs = [argument for pattern in select for argument in ("--select", pattern)]
    return [base + ["-s", "audit", "--", *posargs], base + ["-s", "report"]]


def run_nox(label: str, commands: list[list[str]], environ: dict[str, str], log: Path,
            timeout: float) -> dict[str, Any]:
    """Run the invocations in order; wall time, exit codes and per-session outcomes."""
    started = time.perf_counter()
    codes, sessions, text = [], [], ""
    steps: dict[str, dict[str, float]] = {}
    for command in commands:
        try:
            done = subprocess.run(command, cwd=ROOT, env=environ, capture_output=True,
                                  text=True, timeout=timeout, check=False)
            output, code = done.stdout + done.stderr, done.returncode
        except subprocess.TimeoutExpired as expired:
            output = f"{expired.stdout or ''}{expired.stderr or ''}\ntimed out after {timeout} s"
            code = 124
        codes.append(code)
        text += f"$ {' '.join(command)}\n{output}\n"
        sessions += [match.groupdict() for match in SESSION_LINE.finditer(output)]
        steps.update(step_seconds(output))
        if code != 0:
            break
    wall = time.perf_counter() - started
    log.write_text(text, encoding="utf-8")
    ok = all(code == 0 for code in codes)
    print(f"  {label:<5} {wall:8.1f} s  exit {','.join(map(str, codes))}")
    for session in sessions:
        parts = steps.get(session["name"], {})
        detail = ", ".join(f"{kind} {seconds:.1f} s" for kind, seconds in parts.items())
        print(f"        {session['name']}: {session['outcome']}"
              + (f" ({detail})" if detail else ""))
    if not ok:
        print("  --- last lines of the nox output ---")
        print("\n".join(text.strip().splitlines()[-25:]))
    return {"wall_s": wall, "exit_codes": codes, "ok": ok, "sessions": sessions,
            "steps_s": steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--select", action="append", default=[], metavar="GLOB",
                        help="scenario names for the audit sessions (repeatable; default: the "
                             "matrix's selection)")
    parser.add_argument("--fresh-uv-cache", action="store_true",
                        help="an empty UV_CACHE_DIR for these runs (default: the user's cache)")
    parser.add_argument("--timeout", type=float, default=3600.0,
                        help="seconds per nox invocation before giving up")
    parser.add_argument("--tmp", help="folder for the temp folders (default: system temp)")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="repro-audit-nox-bench-", dir=args.tmp))
    envdir, results, reports = root / "nox-envs", root / "results", root / "reports"
    environ = {**os.environ, "REPRO_AUDIT_RESULTS": str(results),
               "REPRO_AUDIT_REPORTS": str(reports),
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    if args.fresh_uv_cache:
        environ["UV_CACHE_DIR"] = str(root / "uv-cache")
    matrix = environ.get("REPRO_AUDIT_MATRIX", "matrices/default.toml")
    uv_cache = environ.get("UV_CACHE_DIR", "the user's default")
    kept = len(list(KEPT.glob("*.jsonl.gz"))) if KEPT.is_dir() else 0
    print(f"nox wall time: matrix {matrix}, selection {' '.join(args.select) or '(matrix)'}, "
          f"uv cache: {uv_cache}, {kept} kept results files merged, temp folder {root}")
    runs: dict[str, Any] = {}
    try:
        for label, reuse in (("cold", False), ("warm", True)):
            shutil.rmtree(results, ignore_errors=True)
            shutil.rmtree(reports, ignore_errors=True)
            if KEPT.is_dir():  # the report merges every machine's kept results, as in the repo
                shutil.copytree(KEPT, reports / "results")
            runs[label] = run_nox(label, nox_commands(envdir, reuse, args.select), environ,
                                  root / f"{label}.log", args.timeout)
            runs[label]["commands"] = [" ".join(command[1:])
                                       for command in nox_commands(envdir, reuse, args.select)]
        result_files = sorted(path.name for path in results.glob("*.jsonl"))
        report_made = (reports / "README.md").exists()
        envs_gb = tree_size(envdir) / 1e9 if envdir.exists() else 0.0
    finally:
        shutil.rmtree(root, ignore_errors=True)
    speedup = runs["cold"]["wall_s"] / runs["warm"]["wall_s"] if runs["warm"]["wall_s"] else 0.0
    print(f"  cold / warm: {speedup:.1f}x; results files: {', '.join(result_files) or 'none'}; "
          f"report written: {report_made}; nox venvs {envs_gb:.1f} GB (apparent, hard links "
          f"counted once)")
    print(f"  removed {root}")
    emit_json("nox_wall_time", {
        "matrix": matrix, "select": args.select, "fresh_uv_cache": args.fresh_uv_cache,
        "cold": runs["cold"], "warm": runs["warm"], "cold_over_warm": speedup,
        "results_files": result_files, "report_written": report_made, "venvs_gb": envs_gb,
    })


if __name__ == "__main__":
    main()
