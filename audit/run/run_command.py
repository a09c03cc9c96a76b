"""`repro-audit run`: one audit in this interpreter's torch, written to one results file.

Rows are journalled as they arrive (a hidden `.partial` file, fsync'ed per unit) and the
results file appears only at the end, by an atomic rename. A run killed half-way leaves no
visible results file; `--resume` reads the journal and runs only what is missing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit.errors import UserError
from audit.store.results import ROW, dumps, make_header, unit_key, write_atomic
from audit.trace.needs import Source

DEFAULT_DEVICES = ("cpu", "cuda", "mps")


@dataclass
class RunOptions:
    select: list[str] = field(default_factory=list)
    scenario_files: list[str] = field(default_factory=list)
    settings: dict[str, list[str]] = field(default_factory=dict)
    also: list[dict[str, list[str]]] = field(default_factory=list)  # [[settings.also]]
    devices: list[str] = field(default_factory=lambda: list(DEFAULT_DEVICES))
    timeout: float = 300.0
    out: Path = Path("results")
    resume: bool = False
    keep_tensors: bool = False
    trace: bool = False  # --trace: op traces beside the results (<name>.traces.jsonl.gz)
    trace_all: bool = False  # --trace-all: every unit traced, not only those that differ
    jobs: int | None = None  # --jobs: cores to keep busy (None: all this process may use)
    shard: tuple[int, int] | None = None  # (i, n), 1-based

    @classmethod
    def from_arguments(cls, args: argparse.Namespace) -> RunOptions:
        """Matrix file first, then the command line on top of it."""
        from audit.config import matrix as matrix_module
        from audit.config import settings as settings_module
        from audit.config.matrix import KNOWN_DEVICES

        options = cls(out=Path(args.out), resume=bool(getattr(args, "resume", False)),
                      keep_tensors=bool(getattr(args, "keep_tensors", False)),
                      trace=bool(getattr(args, "trace", False)),
                      trace_all=bool(getattr(args, "trace_all", False)),
                      jobs=parse_jobs(getattr(args, "jobs", None)))
        if args.matrix:
            loaded = matrix_module.load(args.matrix)
            options.select = list(loaded.select)
            options.scenario_files = list(loaded.scenario_files)
            options.settings = dict(loaded.settings)
            options.also = [dict(product) for product in loaded.also]
            options.devices = list(loaded.devices)
            options.timeout = loaded.timeout
            options.trace = options.trace or loaded.trace
        if args.select:
            options.select = list(args.select)
        options.scenario_files += [str(Path(path).resolve()) for path in args.scenarios]
        options.settings.update(settings_module.parse_cli(args.settings))
        if args.devices:
            options.devices = [device.strip() for device in args.devices.split(",") if device]
            for device in options.devices:
                if device not in KNOWN_DEVICES:
                    raise UserError(f"--devices: unknown device {device!r} "
                                    f"(known: {', '.join(KNOWN_DEVICES)})")
        options.trace = options.trace or options.trace_all
        if getattr(args, "no_trace", False):
            if options.trace_all or getattr(args, "trace", False):
                raise UserError("--no-trace and --trace / --trace-all contradict each other")
            options.trace = False
        if getattr(args, "shard", None):
            options.shard = parse_shard(args.shard)
        if args.timeout is not None:
            if not (math.isfinite(args.timeout) and 0 < args.timeout <= threading.TIMEOUT_MAX):
                raise UserError(
                    f"--timeout must be a positive number of seconds, not {args.timeout!r}")
            options.timeout = args.timeout
        return options


def parse_jobs(value: Any) -> int | None:
    """`--jobs N`: a positive number of cores; None (absent) means all of them."""
    if value is None:
        return None
    text = str(value).strip()
    if not (text.isascii() and text.isdigit() and 0 < int(text) <= 4096):
        raise UserError(f"--jobs {value!r}: expected a positive number of cores, e.g. --jobs 2")
    return int(text)


def parse_shard(text: str) -> tuple[int, int]:
    """'2/5' -> (2, 5); anything else is a one-line error."""
    index, sep, count = text.partition("/")
    if sep and index.strip().isdigit() and count.strip().isdigit():
        i, n = int(index), int(count)
        if n >= 1 and 1 <= i <= n:
            return i, n
    raise UserError(f"--shard {text!r}: expected I/N with 1 <= I <= N, e.g. 2/4")


def shard_of(names: list[str], shard: tuple[int, int] | None) -> list[str]:
    """Shard i of n: every n-th name of the sorted selection, starting at the i-th.

    Shards 1..n partition the selection exactly and stay balanced in count.
    """
    if shard is None:
        return names
    index, count = shard
    return [name for position, name in enumerate(sorted(names)) if position % count == index - 1]


def row_unit_key(row: dict[str, Any]) -> str:
    """The key of the unit a row came from, by the settings it requested (for --resume)."""
    requested = row["requested"] if row.get("requested") is not None else row["settings"]
    return unit_key(row["scenario"], row["device"], requested)


def results_name(torch_version: str, env_id: str, shard: tuple[int, int] | None = None) -> str:
    suffix = f"-shard{shard[0]}of{shard[1]}" if shard else ""
    return f"torch-{torch_version.replace('+', '_')}-{env_id}{suffix}.jsonl"


def read_journal(path: Path) -> list[dict[str, Any]]:
    """Complete rows of an interrupted run; a torn last line is dropped."""
    rows = []
    if not path.exists():
        return rows
    with open(path, encoding="utf-8", errors="replace") as stream:
        for line in stream:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("record") == ROW:
                rows.append(record)
    return rows


def run_audit(options: RunOptions) -> str:
    """Run the plan and write the results file; returns a one-line summary."""
    from audit.run.pool.pool import Pool
    from audit.run.runner import start_workers

    # One pool for every product and the trace pass: workers run side by side where the
    # cores allow, and those kept idle after the audit serve the trace pass. The first
    # ones start now, importing torch while this process does.
    with Pool(options.jobs, park=options.trace) as pool:
        start_workers(pool, [options.settings, *options.also], options.scenario_files,
                      str((options.out / "tensors").resolve()) if options.keep_tensors
                      else None)
        return audit_in(pool, options)


def audit_in(pool: Any, options: RunOptions) -> str:
    """`run_audit` with its pool of workers."""
    import torch

    from audit.environment.collect import collect, env_id
    from audit.environment.devices import device_status
    from audit.run.progress import Progress
    from audit.run.runner import Plan, Runner
    from audit.run.trace_command import trace_pass
    from audit.scenarios import registry
    from audit.trace.record import journal_line, trace_lines, traces_path, write_trace_lines

    registry.load_builtin()
    for path in options.scenario_files:
        registry.load_file(path)
    scenarios = registry.select(options.select)
    chosen = set(shard_of([item.name for item in scenarios], options.shard))
    scenarios = [item for item in scenarios if item.name in chosen]
    environment = collect()
    identity = env_id(environment)
    out = options.out
    out.mkdir(parents=True, exist_ok=True)
    final = out / results_name(torch.__version__, identity, options.shard)
    journal = out / f".{final.name}.partial"
    # One JSON line per traced unit; only with --trace (the journal above is the run's own).
    trace_journal = out / f".{final.name}.traces-journal"

    previous = read_journal(journal) if options.resume else []
    if not options.resume:
        journal.unlink(missing_ok=True)
        trace_journal.unlink(missing_ok=True)
    done = {row_unit_key(row) for row in previous}
    plans = [Plan(scenarios=scenarios, devices=options.devices, settings=settings,
                  scenario_files=options.scenario_files, timeout=options.timeout,
                  keep_tensors=(str((out / "tensors").resolve()) if options.keep_tensors
                                else None),
                  trace=options.trace)
             for settings in [options.settings, *options.also]]
    device_reasons = {device: device_status(device) for device in options.devices}
    progress = Progress()
    with open(journal, "a", encoding="utf-8", newline="\n") as stream, \
            (open(trace_journal, "a", encoding="utf-8", newline="\n") if options.trace
             else contextlib.nullcontext()) as traces:
        def journal_rows(rows: list[dict[str, Any]]) -> None:
            for row in rows:
                stream.write(dumps(row) + "\n")
            stream.flush()
            os.fsync(stream.fileno())

        def journal_trace(key: str, trace: dict[str, Any]) -> None:
            traces.write(journal_line(key, trace) + "\n")
            traces.flush()

        rows = list(previous)
        with pool:
            runners, tasks = [], []
            for plan in plans:  # the main product, then each [[settings.also]] one
                runner = Runner(plan, identity, torch.__version__, progress=progress,
                                on_rows=journal_rows, skip=done,
                                on_trace=journal_trace if options.trace else None, pool=pool)
                tasks += runner.tasks(device_reasons)
                done |= runner.planner.planned  # a unit of two products runs once
                runners.append(runner)
            pool.run(tasks)  # every product's units at once: the cores stay busy
            for runner in runners:
                rows += runner.collected
            if options.trace:
                before = (set(trace_lines(trace_journal))
                          if options.resume and trace_journal.exists() else set())
                trace_pass(runners, Source(final.name, environment, rows), trace_journal,
                           before, options.trace_all, device_reasons)
    progress.close()
    header = make_header(environment, identity, devices={d: r for d, r in device_reasons.items()},
                         selection=[s.name for s in scenarios], settings=options.settings,
                         **({"also": list(options.also)} if options.also else {}),
                         references={s.name: s.references for s in scenarios if s.references})
    write_atomic(final, header, sorted(rows, key=_row_order))
    traced_units = trace_lines(trace_journal) if trace_journal.exists() else {}
    if traced_units:  # lines as the workers' traces came, never parsed again
        write_trace_lines(traces_path(final), traced_units)
    journal.unlink(missing_ok=True)
    trace_journal.unlink(missing_ok=True)
    counts = Counter(row["status"] for row in rows)
    not_repeatable = sum(1 for row in rows if row.get("repeatable") is False)
    parts = ", ".join(f"{count} {status}" for status, count in sorted(counts.items()))
    traced_note = (f"; traces of {len(traced_units)} units in {traces_path(final).name}"
                   if traced_units else "")
    background_note = (f"; {pool.background_units} units run by background workers "
                       "(audit.run.pool.priority)" if pool.background_units else "")
    return (f"wrote {len(rows)} rows to {final} ({parts}; {not_repeatable} not repeatable "
            f"run to run{traced_note}{background_note})")


def _row_order(row: dict[str, Any]) -> str:
    return json.dumps([row["scenario"], row["device"], row["settings"], row["output"] or ""],
                      sort_keys=True)
