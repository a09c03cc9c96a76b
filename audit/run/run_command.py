"""`repro-audit run`: one audit in this interpreter's torch, written to one results file.

The run is a list of steps (`STEPS`): select the scenarios, open the journal, run the units,
trace the differing ones, write the results, summarise. Rows are journalled as they arrive
(audit.run.journal) and the results file appears only at the end, by an atomic rename. A run
killed half-way leaves no visible results file; `--resume` reads the journal and runs only
what is missing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from audit.errors import UserError
from audit.run.journal import row_unit_key
from audit.store.names import results_name
from audit.store.results import make_header, write_atomic

if TYPE_CHECKING:  # imported where used: `repro-audit --help` imports none of them
    from audit.run.journal import Journal
    from audit.run.pool.pool import Pool
    from audit.run.progress import Progress
    from audit.run.runner import Runner
    from audit.scenarios.registry import Scenario

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


def run_audit(options: RunOptions) -> str:
    """Run the plan and write the results file; returns a one-line summary."""
    from audit.run.pool.pool import Pool
    from audit.run.runner import start_workers

    # One pool for every product and the trace pass: workers run side by side where the
    # cores allow, and those kept idle after the audit serve the trace pass. The first
    # ones start now, importing torch while this process does.
    with interrupted_by_sigterm(), Pool(options.jobs, park=options.trace) as pool:
        start_workers(pool, [options.settings, *options.also], options.scenario_files,
                      str((options.out / "tensors").resolve()) if options.keep_tensors
                      else None)
        return audit_in(pool, options)


@contextlib.contextmanager
def interrupted_by_sigterm() -> Any:
    """SIGTERM ends a run as Ctrl-C does (its workers closed, its journal kept, its lock
    given back), where this is the main thread."""
    import signal

    def interrupt(number: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {number}")

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


@dataclass
class Audit:
    """What the steps of one `run` share: each step reads what the steps before it left."""

    pool: Pool  # shared by every product and the trace pass
    options: RunOptions
    held: contextlib.ExitStack  # the journals and the pool's workers, while units run
    scenarios: list[Scenario] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=dict)
    identity: str = ""  # the env-id
    torch_version: str = ""
    final: Path = Path()  # the results file
    journal: Journal | None = None
    done: set[str] = field(default_factory=set)  # keys of the units with rows already
    rows: list[dict[str, Any]] = field(default_factory=list)
    device_reasons: dict[str, str | None] = field(default_factory=dict)
    runners: list[Runner] = field(default_factory=list)  # one per product
    progress: Progress | None = None
    traced: dict[str, str] = field(default_factory=dict)  # trace key: line, once written
    summary: str = ""


def select(audit: Audit) -> None:
    """The scenarios (this shard's part), this environment, and the results file's name."""
    import torch

    from audit.environment.collect import collect, env_id
    from audit.scenarios import registry

    options = audit.options
    registry.load_builtin()
    for path in options.scenario_files:
        registry.load_file(path)
    scenarios = registry.select(options.select)
    chosen = set(shard_of([item.name for item in scenarios], options.shard))
    audit.scenarios = [item for item in scenarios if item.name in chosen]
    audit.environment = collect()
    audit.identity = env_id(audit.environment)
    audit.torch_version = torch.__version__
    options.out.mkdir(parents=True, exist_ok=True)
    audit.final = options.out / results_name(audit.torch_version, audit.identity, options.shard)


def open_journal(audit: Audit) -> None:
    """Resume from the journal of an interrupted run (`--resume`) or start afresh; rows
    (and traces) are journalled from now on as they come."""
    from audit.run.journal import Journal
    from audit.run.lock import FolderLock

    # The output folder is this run's alone from here on (audit.run.lock); taken once the
    # selection is known good, so bad input leaves no folder behind.
    audit.held.enter_context(FolderLock(audit.options.out))
    audit.journal = Journal(audit.final, traces=audit.options.trace, run=run_identity(audit))
    previous = audit.journal.resume() if audit.options.resume else []
    if not audit.options.resume:
        audit.journal.remove()
    audit.done = {row_unit_key(row) for row in previous}
    audit.rows = list(previous)
    audit.held.enter_context(audit.journal)


def run_identity(audit: Audit) -> dict[str, Any]:
    """What a journal's rows depend on: `--resume` refuses a journal whose run differs."""
    options = audit.options
    return {"env_id": audit.identity, "torch": audit.torch_version,
            "selection": sorted(item.name for item in audit.scenarios),
            "shard": list(options.shard) if options.shard else None,
            "settings": options.settings, "also": options.also,
            "devices": list(options.devices), "scenario_files": list(options.scenario_files),
            "keep_tensors": options.keep_tensors}


def run_units(audit: Audit) -> None:
    """Every product's units (the main one, then each [[settings.also]] one) at once in the
    shared pool, so the cores stay busy; a unit of two products runs once."""
    from audit.environment.devices import device_status
    from audit.run.plan import Plan
    from audit.run.progress import Progress
    from audit.run.runner import Runner

    options = audit.options
    keep = str((options.out / "tensors").resolve()) if options.keep_tensors else None
    audit.device_reasons = {device: device_status(device) for device in options.devices}
    audit.progress = Progress()
    audit.held.enter_context(audit.pool)
    tasks = []
    for settings in [options.settings, *options.also]:
        plan = Plan(scenarios=audit.scenarios, devices=options.devices, settings=settings,
                    scenario_files=options.scenario_files, timeout=options.timeout,
                    keep_tensors=keep, trace=options.trace)
        runner = Runner(plan, audit.identity, audit.torch_version, progress=audit.progress,
                        on_rows=audit.journal.write_rows, skip=audit.done,
                        on_trace=audit.journal.write_trace if options.trace else None,
                        pool=audit.pool)
        tasks += runner.tasks(audit.device_reasons)
        audit.done |= runner.planner.planned
        audit.runners.append(runner)
    audit.pool.run(tasks)
    for runner in audit.runners:
        audit.rows += runner.collected


def trace_differing(audit: Audit) -> None:
    """`--trace`: trace the units whose outputs differ along the run's own settings."""
    from audit.run.trace_command import trace_pass
    from audit.trace.needs import Source

    options = audit.options
    if not options.trace:
        return
    journal = audit.journal
    before = set(journal.traced_lines()) if options.resume else set()
    trace_pass(audit.runners, Source(audit.final.name, audit.environment, audit.rows),
               journal.traces_path, before, options.trace_all, audit.device_reasons)


def write_results(audit: Audit) -> None:
    """The workers and journals put away, the results file (and the traces file) written
    atomically, then the journals removed."""
    from audit.store.traces import traces_path
    from audit.trace.files import write_trace_lines

    audit.held.close()
    audit.progress.close()
    scenarios, options = audit.scenarios, audit.options
    header = make_header(audit.environment, audit.identity,
                         devices=dict(audit.device_reasons),
                         selection=[s.name for s in scenarios], settings=options.settings,
                         **({"also": list(options.also)} if options.also else {}),
                         references={s.name: s.references for s in scenarios if s.references})
    write_atomic(audit.final, header, sorted(audit.rows, key=_row_order))
    audit.traced = audit.journal.traced_lines()
    if audit.traced:  # lines as the workers' traces came, never parsed again
        write_trace_lines(traces_path(audit.final), audit.traced)
    audit.journal.remove()


def summarise(audit: Audit) -> None:
    """The one-line summary: rows by status, those not repeatable, traces, background units."""
    from audit.store.traces import traces_path

    rows = audit.rows
    counts = Counter(row["status"] for row in rows)
    not_repeatable = sum(1 for row in rows if row.get("repeatable") is False)
    parts = ", ".join(f"{count} {status}" for status, count in sorted(counts.items()))
    traced_note = (f"; traces of {len(audit.traced)} units in {traces_path(audit.final).name}"
                   if audit.traced else "")
    background = audit.pool.background_units
    background_note = (f"; {background} units run by background workers "
                       "(audit.run.pool.priority)" if background else "")
    audit.summary = (f"wrote {len(rows)} rows to {audit.final} ({parts}; {not_repeatable} not "
                     f"repeatable run to run{traced_note}{background_note})")


# The steps of `run`, in order; each reads what the steps before it left in the `Audit`.
STEPS: tuple[Callable[[Audit], None], ...] = (
    select, open_journal, run_units, trace_differing, write_results, summarise)


def audit_in(pool: Pool, options: RunOptions) -> str:
    """`run_audit` with its pool of workers: the steps of `run`, one after the other."""
    with contextlib.ExitStack() as held:
        audit = Audit(pool, options, held)
        for step in STEPS:
            step(audit)
    return audit.summary


def _row_order(row: dict[str, Any]) -> str:
    return json.dumps([row["scenario"], row["device"], row["settings"], row["output"] or ""],
                      sort_keys=True)
