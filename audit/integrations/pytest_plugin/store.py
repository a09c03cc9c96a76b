"""The session side of the pytest plugin: rows, baselines and results files of one run.

Each pytest process (one per xdist worker) keeps the rows its tests produced, in the very
schema `repro-audit run` writes (`audit.store.results.make_row`), so everything downstream is
the code the command line uses: `audit.judge.baseline.Checker` checks a test's rows as the test
ends, `audit.judge.baseline.save_files` saves them, `audit.store.results.write_atomic` writes them.
Under pytest-xdist every worker writes its own results file and hands its rows to the
controller, which alone saves baselines (the workers share one file per environment, so
one writer) and prints the summary `repro-audit baseline check` would print.

Nothing here imports torch at import time: the plugin is loaded in every pytest run of
every venv where the package is installed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit.errors import UserError
from audit.store.results import ResultsFile, dumps, make_header, make_row, write_atomic

RESULTS_PREFIX = "pytest-"  # results files of pytest runs: pytest-torch-<v>-<env-id>[-gwN].jsonl
# What a worker hands the controller in `config.workeroutput`.
PAYLOAD = "repro_audit"


@dataclass(frozen=True)
class Options:
    """The command-line options of the plugin, as given."""

    save_to: Path | None = None  # --repro-save DIR
    update: bool = False  # --repro-update
    check_against: Path | None = None  # --repro-check DIR
    results: Path | None = None  # --repro-results DIR
    twice: bool = False  # --repro-twice: every test using the fixture runs twice

    @property
    def records(self) -> bool:
        """Whether rows are kept at all (each needs the environment, collected once)."""
        return bool(self.save_to or self.check_against or self.results)

    def problem(self) -> str | None:
        """What makes the combination unusable, or None."""
        if self.save_to and self.check_against:
            return "--repro-save and --repro-check: give one (save after reviewing a check)"
        if self.update and not self.save_to:
            return "--repro-update rewrites baselines that --repro-save writes: give both"
        for flag, folder in (("--repro-save", self.save_to), ("--repro-results", self.results)):
            if folder is not None and folder.exists() and not folder.is_dir():
                return f"{flag} {folder}: not a folder"
        return None


def results_file_name(torch_version: str, env_id: str, worker: str | None) -> str:
    """`pytest-torch-2.13.0_cpu-<env-id>-gw0.jsonl`: the runner's name, marked as pytest's,
    with the xdist worker's id so that workers never write the same file."""
    from audit.store.names import results_name

    stem = results_name(torch_version, env_id)[: -len(".jsonl")]
    return f"{RESULTS_PREFIX}{stem}{'-' + worker if worker else ''}.jsonl"


@dataclass
class Store:
    """What one pytest process recorded, and the environment it recorded it in."""

    options: Options
    worker: str | None = None  # the xdist worker id ("gw0"); None in a process of its own
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # by scenario
    nodeids: dict[str, str] = field(default_factory=dict)  # scenario -> the test's node id
    _header: dict[str, Any] | None = None
    _process_settings: dict[str, str] | None = None
    _checker: Any = None

    # --- the environment and settings, as the runner records them -----------------------

    def header(self) -> dict[str, Any]:
        """The results header of this process (collected once: it imports torch)."""
        if self._header is None:
            from audit.environment.collect import collect, env_id

            environment = collect()
            self._header = make_header(environment, env_id(environment), source="pytest")
        return self._header

    @property
    def env_id(self) -> str:
        return str(self.header()["env_id"])

    def settings(self, device: str) -> dict[str, str]:
        """Every setting as in effect now, as the runner records a unit with none chosen:
        process settings read once per process, run settings at each call, n/a where a
        setting does not apply to `device`."""
        from audit.config.settings import PROCESS, RUN, for_device, in_effect

        if self._process_settings is None:
            self._process_settings = in_effect(PROCESS)
        return for_device({**self._process_settings, **in_effect(RUN)}, device)

    def row(self, scenario: str, device: str, settings: dict[str, str], **values: Any
            ) -> dict[str, Any]:
        """A results row of this process (the fields the runner's rows have)."""
        import torch

        return make_row(scenario=scenario, device=device, settings=settings,
                        torch_version=str(torch.__version__), env_id=self.env_id, **values)

    def record(self, scenario: str, nodeid: str, rows: list[dict[str, Any]]) -> None:
        """Keep a test's rows; a test run again (a rerun plugin) replaces its earlier rows."""
        owner = self.nodeids.setdefault(scenario, nodeid)
        if owner != nodeid:
            raise UserError(f"{nodeid}: scenario name {scenario!r} is already the name of "
                            f"{owner}; give @pytest.mark.repro(name=...) another name")
        self.rows[scenario] = rows

    def as_file(self, rows: list[dict[str, Any]] | None = None) -> ResultsFile:
        """Rows (this process' by default) as a results file in memory."""
        if rows is None:
            rows = [row for scenario in sorted(self.rows) for row in self.rows[scenario]]
        return ResultsFile(path=Path(f"<pytest{' ' + self.worker if self.worker else ''}>"),
                           header=self.header(), rows=rows)

    # --- baselines ----------------------------------------------------------------------

    @property
    def checker(self) -> Any:
        """The `audit.judge.baseline.Checker` of --repro-check (a UserError when it has none)."""
        if self._checker is None:
            from audit.judge.baseline import Checker

            self._checker = Checker(Path(self.options.check_against))
        return self._checker

    def regressions(self, rows: list[dict[str, Any]]) -> list[str]:
        """Why a test's rows do not match their baselines, one paragraph per output.

        Outputs without a baseline are not regressions: the session summary lists them.
        """
        from audit.judge.baseline import baseline_path, describe_environment, environment_summary

        result = self.checker.check([self.as_file(rows)], whole=False)
        found = [item for item in result.regressions if item.kind == "DIFFERS"]
        if not found:
            return []
        baseline = self.checker.baseline(self.env_id)
        path = baseline_path(Path(self.options.check_against), self.env_id)
        then = describe_environment(baseline.environment if baseline else {})
        now = describe_environment(environment_summary(self.header()))
        by_key = {(row["device"], row["output"]): row for row in rows if row.get("output")}
        lines = [f"repro-audit: {len(found)} output{'s' if len(found) > 1 else ''} "
                 f"differ{'' if len(found) > 1 else 's'} from the baseline in {path}"]
        for item in found:
            expected = baseline.entries[item.key] if baseline else None
            row = by_key.get((item.key.device, item.key.output), {})
            lines += [item.describe(),
                      f"  value: {_dtype_shape(row.get('dtype'), row.get('shape'))}, baseline "
                      f"{_dtype_shape(expected.dtype, expected.shape) if expected else '?'}",
                      f"  baseline environment: env {self.env_id} ({then})",
                      f"  this run's environment: env {self.env_id} ({now})"]
        lines.append(_what_to_do(rows))
        return lines


def _what_to_do(rows: list[dict[str, Any]]) -> str:
    """The last line of a regression: fix the hash seed where this process ran with a
    random one (updating would bake a random value into the baseline), else update."""
    if any((row.get("settings") or {}).get("python_hash_seed") == "random" for row in rows):
        return ("(this process ran with a random hash seed: a value that depends on hash() "
                "of a str or bytes changes from run to run, which may be the cause; fix the "
                "seed with PYTHONHASHSEED=0 pytest ... and save the baseline under it, "
                "rather than --repro-update)")
    return "(reviewed and intended? pytest --repro-save DIR --repro-update rewrites the baseline)"


def _dtype_shape(dtype: Any, shape: Any) -> str:
    return f"{dtype} {list(shape) if shape is not None else '?'}"


# --- the end of a session (the controller's, or that of a process of its own) -----------

def write_results(store: Store) -> Path | None:
    """This process' rows as a results file under --repro-results (None: no rows)."""
    if store.options.results is None or not store.rows:
        return None
    header = store.header()
    item = store.as_file()
    name = results_file_name(str(header["environment"].get("torch")), store.env_id,
                             store.worker)
    folder = Path(store.options.results)
    folder.mkdir(parents=True, exist_ok=True)
    return write_atomic(folder / name, header, sorted(item.rows, key=_row_order))


def _row_order(row: dict[str, Any]) -> tuple[str, str, str]:
    return (row["scenario"], str(row["device"]), row["output"] or "")


def remove_stale_results(folder: Path, written: list[str]) -> list[Path]:
    """Results files of an earlier session on the same environments that this session did
    not write again (a run with more xdist workers leaves gw5 behind): a session's files
    replace the last session's, as `repro-audit run` replaces its own file."""
    removed = []
    prefixes = {name.split("-gw")[0].removesuffix(".jsonl") for name in written}
    for prefix in sorted(prefixes):
        for path in sorted(folder.glob(f"{prefix}*.jsonl")):
            rest = path.name[len(prefix):]
            if path.name not in written and (rest == ".jsonl" or rest.startswith("-gw")):
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def payload(store: Store, results_file: Path | None) -> dict[str, Any]:
    """What a worker sends the controller (plain JSON types, as execnet carries them)."""
    item = store.as_file() if store.rows else None
    handed = {"header": item.header if item else None, "rows": item.rows if item else [],
              "results_file": results_file.name if results_file else None}
    return json.loads(dumps(handed))  # torch.__version__ is a str subclass execnet refuses


def files_of(payloads: list[dict[str, Any]]) -> list[ResultsFile]:
    """The workers' rows as results files in memory, one per worker."""
    return [ResultsFile(path=Path(f"<pytest worker {number}>"), header=item["header"],
                        rows=item["rows"])
            for number, item in enumerate(payloads, start=1) if item.get("rows")]


def finish(options: Options, files: list[ResultsFile]) -> list[str]:
    """Save (--repro-save) or summarise the check (--repro-check) of every row of the
    session; the lines to print. A save that cannot be done is a UserError."""
    from audit.judge.baseline import Checker, comparable, format_check, save_files

    lines: list[str] = []
    rows = [row for item in files for row in item.rows]
    if options.save_to is not None:
        if not any(comparable(row) for row in rows):
            return [f"repro-audit: nothing saved to {options.save_to}: no test handed a value "
                    "to repro.check, or none passed"]
        stored = save_files(files, Path(options.save_to), options.update, "this pytest run")
        lines.append(f"repro-audit: saved {stored} outputs to {options.save_to}")
        left = sum(1 for row in rows if not comparable(row))
        if left:
            lines.append(f"repro-audit: {left} rows not saved: tests that failed, were skipped "
                         "or were not repeatable run to run")
    if options.check_against is not None and rows:
        lines += format_check(Checker(Path(options.check_against)).check(files))
    return lines
