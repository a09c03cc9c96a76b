"""`repro-audit trace --for RESULTS...`: op traces this environment lacks, once results merge.

`run --trace` traces, right after its audit, the units whose outputs differ along the run's
own settings. Whether an output differs across torch versions or machines is known only
once their results files meet. This command reads them all, finds the units of this
interpreter's environment that sit on either side of a differing comparison (the way the
report pairs cells, audit.trace.needs) and have no trace yet, runs each once more under the
op recorder, in workers of its process-settings combination (audit.run.runner.Runner.trace),
and adds the traces to the environment's traces file. Run it under each torch version
(nox's `trace` session does) before `repro-audit report`.

Results of other environments are only read. Finding the work needs no torch: when this
environment has nothing left to trace, the command ends without importing it.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit.errors import UserError
from audit.store.results import ResultsFile, read_all
from audit.trace.needs import Cell, Source, differing, wanted

# What a results file's environment must share with this interpreter to possibly be its
# own (the env-id, which needs torch, decides among those).
HOST_KEYS = ("python", "os", "machine", "platform")


@dataclass
class TraceOptions:
    paths: list[str]  # --for: every results file to compare with
    own: list[str] = field(default_factory=list)  # --in: where this run's results are
    scenario_files: list[str] = field(default_factory=list)
    timeout: float | None = None
    jobs: int | None = None


def on_this_machine(environment: dict[str, Any]) -> bool:
    """Whether results with this environment were made on this machine (any torch)."""
    from audit.environment.collect import host

    here = host()
    return all(environment.get(key) == here.get(key) for key in HOST_KEYS)


def plausibly_here(environment: dict[str, Any]) -> bool:
    """Whether results with this environment may be this interpreter's, without torch."""
    if not on_this_machine(environment):
        return False
    try:
        installed = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return True  # torch from elsewhere (a source build on the path): the env-id decides
    return str(environment.get("torch", "")).split("+")[0] == installed.split("+")[0]


def missing_traces(files: list[ResultsFile], cells: set[Cell], any_torch: bool = False
                   ) -> dict[str, dict[str, str]]:
    """For each file that may be this environment's (`any_torch`: this machine's, whatever
    its torch): {unit key: trace key} it lacks."""
    from audit.store.traces import traces_path
    from audit.trace.files import trace_lines

    found = {}
    for item in files:
        environment = item.header.get("environment", {})
        if not (on_this_machine(environment) if any_torch else plausibly_here(environment)):
            continue
        path = traces_path(item.path)
        done = trace_lines(path) if path.is_file() else {}
        need = wanted(cells, str(item.path), done)
        if need:
            found[str(item.path)] = need
    return found


def current_files(options: TraceOptions) -> tuple[list[ResultsFile], set[str]]:
    """The files to compare, and those that may hold this environment's results (`--in`).

    A file elsewhere of the same machine and torch version as one under `--in` is an older
    run of it (kept results about to be replaced, audit.store.kept): it is left out, as the
    report will leave it out.
    """
    from audit.store.kept import identity_of
    from audit.store.results import expand

    files = read_all([*options.paths, *options.own])
    if not options.own:
        return files, {str(item.path) for item in files}
    own = {str(path) for path in expand(options.own)}
    current = {identity_of(item.header) for item in files if str(item.path) in own}
    return ([item for item in files
             if str(item.path) in own or identity_of(item.header) not in current], own)


def work(options: TraceOptions, any_torch: bool = False
         ) -> tuple[list[ResultsFile], set[str], dict[str, dict[str, str]]]:
    """The files, those to trace in, and what each of those lacks (torch-free)."""
    from audit.store.traces import traces_path
    from audit.trace.files import trace_lines

    files, own_paths = current_files(options)
    sources = [Source(str(item.path), item.header.get("environment", {}), item.rows)
               for item in files]
    traced = {str(item.path): set(trace_lines(traces_path(item.path)))
              for item in files if traces_path(item.path).is_file()}
    # A cell already traced, or one of this machine's results given to trace (by this
    # torch or, in its own `trace` step, another), can be one side of an origin.
    here = {str(item.path) for item in files if str(item.path) in own_paths
            and on_this_machine(item.header.get("environment", {}))}
    cells = differing(sources, lambda cell: cell.source in here
                      or cell.trace in traced.get(cell.source, ()), across=True)
    missing = missing_traces([item for item in files if str(item.path) in own_paths], cells,
                             any_torch)
    return files, own_paths, missing


def pending_torch_versions(options: TraceOptions) -> set[str]:
    """Torch versions (as results record them) of this machine whose results lack traces
    that `trace` would add: nox runs the trace step only under those, and needs no torch
    to find them."""
    files, _, missing = work(options, any_torch=True)
    return {str(item.header.get("environment", {}).get("torch", ""))
            for item in files if str(item.path) in missing}


def retrace(options: TraceOptions) -> str:
    """Trace what this environment lacks; returns a one-line summary."""
    files, own_paths, missing = work(options)
    if not missing:
        return (f"nothing to trace here: {len(files)} results files, every differing unit "
                f"of this environment already traced")
    from audit.environment.collect import collect, env_id

    identity = env_id(collect())
    own = [item for item in files
           if str(item.path) in own_paths and item.header.get("env_id") == identity]
    if not own:
        raise UserError(f"{', '.join(options.paths)}: no results of this environment "
                        f"(env-id {identity}): run `repro-audit run` here first")
    traced = needed = 0
    for item in own:
        need = missing.get(str(item.path), {})
        needed += len(need)
        if need:
            traced += trace_file(item, need, options)
    return (f"traced {traced} of {needed} units of env-id {identity} that differ from the "
            f"{len(files)} results files given")


def trace_file(item: ResultsFile, need: dict[str, str], options: TraceOptions) -> int:
    """Run the units of one results file that `need` names, traced; add their traces."""
    import warnings

    import torch

    from audit.environment.devices import device_status
    from audit.run.plan import DEFAULT_TIMEOUT, Plan
    from audit.run.pool.pool import Pool
    from audit.run.progress import Progress
    from audit.run.runner import Runner
    from audit.scenarios import registry
    from audit.store.traces import traces_path
    from audit.trace.files import trace_line, trace_lines, write_trace_lines

    registry.load_builtin()
    for path in options.scenario_files:
        registry.load_file(path)
    known = registry.all_scenarios()
    header = item.header
    selection = [name for name in header.get("selection", []) if name in known]
    lost = sorted(set(header.get("selection", [])) - set(known))
    if lost:
        warnings.warn(f"{item.path}: scenarios not loaded here, not traced: "
                      f"{', '.join(lost[:5])}{' ...' if len(lost) > 5 else ''} "
                      "(pass their files with --scenarios)", stacklevel=2)
    devices = list(header.get("devices") or {"cpu": None})
    device_reasons = {device: device_status(device) for device in devices}
    products = [dict(header.get("settings") or {}), *[dict(p) for p in header.get("also", [])]]
    new: dict[str, str] = {}

    def keep(key: str, trace: dict[str, Any]) -> None:
        new[key] = trace_line(key, trace)

    progress = Progress()
    remaining = dict(need)
    try:
        with Pool(options.jobs) as pool:
            tasks = []
            for settings in products:
                plan = Plan(scenarios=[known[name] for name in selection], devices=devices,
                            settings=settings, scenario_files=options.scenario_files,
                            timeout=options.timeout or DEFAULT_TIMEOUT)
                runner = Runner(plan, str(header.get("env_id")), torch.__version__,
                                progress=progress, on_trace=keep, pool=pool)
                planned = runner.runnable(device_reasons)  # this product's units
                mine = {key: remaining.pop(key) for key in list(remaining) if key in planned}
                tasks += runner.trace_tasks(mine, device_reasons)
            pool.run(tasks)
    finally:
        progress.close()
        if new:
            path = traces_path(Path(item.path))
            merged = trace_lines(path) if path.is_file() else {}
            merged.update(new)
            write_trace_lines(path, merged)
    return len(new)


def trace_pass(runners: list[Any], source: Source, journal: Path, traced: set[str],
               every: bool, device_reasons: dict[str, str | None]) -> int:
    """`run --trace`: after the audit, trace the units of `source` whose outputs differ
    along the run's own axes (every unit with a value when `every`), except those whose
    trace keys are in `traced`; traces go to the runners' `on_trace` (the run's `journal`).
    Returns how many units were traced.

    A pass of its own after the audit: a traced run is never one of the audited two. One
    context per differing pair of values is traced (audit.trace.needs.Selection) and
    checked with the traces themselves (audit.trace.origin); where a pair's traces give no
    origin, every other context of it is traced in a second pass, so the report names an
    origin wherever it would with every unit traced.
    """
    from audit.trace import needs as trace_needs

    if every:
        return run_traces(runners, trace_needs.wanted(trace_needs.every_cell([source]),
                                                      source.name, traced), device_reasons)
    selection = trace_needs.Selection(trace_needs.groups_of([source]))
    done = set(traced)
    count = 0
    checked = Checker(source.name, journal)
    while True:
        need = trace_needs.wanted(selection.cells(), source.name, done)
        count += run_traces(runners, need, device_reasons)
        done |= set(need.values())
        moved = False
        for key, a, b in selection.checks():
            if checked.origin(a, b, key[1]):
                selection.resolved(key)
            else:
                moved = selection.more(key) or moved
        if not moved:
            return count


def run_traces(runners: list[Any], wanted: dict[str, str],
               device_reasons: dict[str, str | None]) -> int:
    """Traced runs of `wanted` ({unit key as requested: trace key}), by the runner of each
    unit's product, in one pass of their shared pool."""
    remaining = dict(wanted)
    tasks = []
    for runner in runners:
        mine = {key: remaining.pop(key) for key in list(remaining)
                if key in runner.planner.by_key}
        tasks += runner.trace_tasks(mine, device_reasons)
    if not tasks:
        return 0
    runners[0].pool.run(tasks)
    return sum(runner.traced for runner in runners)


class Checker:
    """Whether two cells' traces (read from a run's traces journal) give an origin."""

    def __init__(self, source: str, journal: Path) -> None:
        from audit.trace.origin import Origins

        self.source, self.journal = source, journal
        self.origins = Origins()
        self.origins.files[source] = {}
        self.lines: dict[str, str] = {}

    def origin(self, a: Any, b: Any, output: str) -> bool:
        """Cells `a` and `b` (audit.trace.needs.Member) of one output."""

        from audit.trace.files import decode_trace_line, trace_lines

        traces = self.origins.files[self.source]
        for member in (a, b):
            key = member.cell.trace
            if key not in traces:
                if key not in self.lines and self.journal.exists():
                    self.lines = trace_lines(self.journal)
                if key not in self.lines:
                    return False  # not traced (the traced run failed): no origin here
                traces[key] = decode_trace_line(self.lines[key])[1]
        found = self.origins.between((self.source, a.cell.trace), (self.source, b.cell.trace),
                                     output, (a.digest, b.digest))
        return bool(found)
