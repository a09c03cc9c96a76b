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
FAILURE = "repro-audit: FAILED"  # how a summary line that fails the session starts


@dataclass(frozen=True)
class Options:
    """The command-line options of the plugin, as given."""

    save_to: Path | None = None  # --repro-save DIR
    update: bool = False  # --repro-update
    check_against: Path | None = None  # --repro-check DIR
    results: Path | None = None  # --repro-results DIR
    twice: bool = False  # --repro-twice: every test using the fixture runs twice
    allow: frozenset[str] = frozenset()  # --repro-allow / ini repro_allow: axes that may differ
    strict: bool = False  # --repro-strict / ini repro_strict: fail on outputs without baseline

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

            self._checker = Checker(Path(self.options.check_against), self.options.allow,
                                    self.options.strict)
        return self._checker

    def regressions(self, rows: list[dict[str, Any]]) -> list[str]:
        """Why a test's rows do not match their baselines, one paragraph per output.

        Outputs without a baseline are not regressions: the session summary lists them.
        """
        from audit.judge.baseline import grouped_lines

        result = self.checker.check([self.as_file(rows)], whole=False)
        found = [item for item in result.regressions if item.kind == "DIFFERS"]
        if not found:
            return []
        folder = Path(self.options.check_against)
        files = sorted({f"{folder / item.baseline_env}.json" for item in found})
        lines = [f"repro-audit: {len(found)} output{'s' if len(found) > 1 else ''} "
                 f"differ{'' if len(found) > 1 else 's'} from the baseline in {', '.join(files)}"]
        lines += grouped_lines(found)
        crossed = sorted({axis for item in found for axis, _, _ in item.axes})
        if crossed:
            lines.append(f"(expected to differ along these axes? --repro-allow "
                         f"{','.join(crossed)})")
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
        checker = Checker(Path(options.check_against), options.allow, options.strict)
        result = checker.check(files)
        lines += format_check(result)
        lines += _unchecked(options, result)
        lines += _unmatched(options, checker, rows)
    return lines


def _unmatched(options: Options, checker: Any, rows: list[dict[str, Any]]) -> list[str]:
    """Baselined outputs that no test of the session produced: renamed tests (another
    rootdir, a moved file) or tests not run; none at all matching fails the session."""
    saved = {scenario for scenario, _ in checker.references.by_output}
    ran = {str(row.get("scenario")) for row in rows}
    missing = sorted(saved - ran)
    if not saved or not missing:
        return []
    if not saved & ran:
        return [f"{FAILURE}: no test of this session matches any of the {len(saved)} tests "
                f"baselined in {options.check_against} (renamed? e.g. {missing[0]}): "
                "nothing was checked"]
    return [f"repro-audit: WARNING: {len(missing)} baselined test"
            f"{'s' if len(missing) > 1 else ''} in {options.check_against} matched no test of "
            f"this session (not run, or renamed): {', '.join(missing[:3])}"
            f"{', ...' if len(missing) > 3 else ''}"]


def _unchecked(options: Options, result: Any) -> list[str]:
    """What went unchecked, and why; under --repro-strict, that it fails the session."""
    count = len(result.missing_baseline)
    if not count:
        return []
    why = (f"{count} output{'s' if count > 1 else ''} unchecked: no environment in "
           f"{options.check_against} has a baseline of {'them' if count > 1 else 'it'}")
    if options.strict:
        return [f"{FAILURE} (--repro-strict): {why}"]
    return [f"repro-audit: {why} (--repro-strict fails on them)"]
