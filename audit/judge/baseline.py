"""Baselines: what one environment produced, kept so a later run can be checked against it.

`report` compares environments with each other; a baseline compares an environment with
itself over time, so a scheduled job can re-run the same matrix and fail on a regression.
Values are keyed by (env-id, device, settings, scenario, output): only like is compared
with like, and a new torch, numpy or machine (a new env-id) is listed as "without
baseline", never failed. One JSON file per env-id (`<env_id>.json`) with stable bytes
(sorted keys, sorted outputs, no timestamps, no paths), so baselines can live in git and a
change to one is reviewed as a diff before `--update` is committed.

No torch and no pandas here: the check runs in the torch-free report venv.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from audit.capture.distance import Distance, distance
from audit.capture.distance_text import describe_gap
from audit.capture.sample import Sample
from audit.config.settings import NOT_APPLICABLE, unset_value, with_unset_values
from audit.errors import UserError
from audit.store.atomic import write_text
from audit.store.results import ResultsFile, read_all

FORMAT = "repro-audit/baseline"
SCHEMA = 1
SUFFIX = ".json"
ENVIRONMENT_KEYS = ("torch", "numpy", "python", "os")  # plus "cpu": the CPU model
# An env-id becomes a file name: nothing that could leave the folder or hide the file.
SAFE_ENV_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


# --- keys and labels (shared with audit.judge.diff) --------------------------------------------

def settings_key(settings: dict[str, Any] | None, device: str | None = None) -> str:
    """Settings as sorted JSON: the same combination is the same text whatever its order.

    With `device`, settings a row does not record are taken at their unset value, so a
    baseline saved before rows recorded every setting still keys the same cells."""
    values = dict(settings or {})
    if device is not None:
        values = with_unset_values(values, device)
    return json.dumps(values, sort_keys=True, separators=(",", ":"))


def one_line(text: Any) -> str:
    """`text` with control characters escaped, so a hostile name cannot split a line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def cell_label(scenario: str, output: str, device: str, settings: str) -> str:
    """`rng.randn/large [cpu cpu_capability=avx2 threads=1]`: what a printed line names."""
    values = json.loads(settings)
    shown = [name for name in sorted(values)  # not the settings nobody touched
             if values[name] != NOT_APPLICABLE and values[name] != unset_value(name, device)]
    inside = " ".join([device, *(f"{name}={values[name]}" for name in shown)])
    return one_line(f"{scenario}/{output} [{inside}]")


def has_value(row: dict[str, Any]) -> bool:
    """An `ok` row of one named output with a digest: something that can be compared."""
    return (row.get("status") == "ok" and isinstance(row.get("output"), str)
            and isinstance(row.get("digest"), str))


def comparable(row: dict[str, Any]) -> bool:
    """A value not seen to change run to run: the only kind compared across runs.

    `repeatable` is True when it was run twice and came out the same, False when the two
    runs differed, and None when it was run once (a pytest test without the repeat
    marker): such a value is compared as it is, since nothing showed it unrepeatable.
    """
    return has_value(row) and row.get("repeatable") is not False


def env_of(row: dict[str, Any], item: ResultsFile) -> str:
    """The row's env-id (the header's when a row lacks one)."""
    value = row.get("env_id") or item.header.get("env_id")
    if not isinstance(value, str) or not value:
        raise UserError(f"{item.path}: a row of {row.get('scenario')!r} has no env_id")
    return value


def environment_summary(header: dict[str, Any]) -> dict[str, Any]:
    """The few environment facts a reader of a baseline needs: versions, OS, CPU model."""
    environment = header.get("environment") or {}
    summary = {key: environment.get(key) for key in ENVIRONMENT_KEYS}
    cpu = environment.get("cpu")
    summary["cpu"] = cpu.get("model") if isinstance(cpu, dict) else cpu
    return summary


def describe_environment(summary: dict[str, Any]) -> str:
    """`torch 2.13.0+cpu, python 3.11.7, Linux 6.1, Example CPU`: one line for a listing."""
    parts = [f"{key} {summary[key]}" for key in ("torch", "numpy", "python") if summary.get(key)]
    parts += [str(summary[key]) for key in ("os", "cpu") if summary.get(key)]
    return one_line(", ".join(parts) or "environment unknown")


def measure(sample_a: Any, sample_b: Any) -> Distance | None:
    """Distance between two kept samples as stored in JSON (None when one was not kept)."""
    if not isinstance(sample_a, dict) or not isinstance(sample_b, dict):
        return None
    try:
        return distance(Sample.from_json(sample_a), Sample.from_json(sample_b))
    except (KeyError, TypeError, ValueError):  # a malformed sample: say so, do not crash
        return None


# --- the baseline file -------------------------------------------------------------------

@dataclass(frozen=True, order=True)
class Key:
    """One baselined value: an output of a scenario on one device, settings and env-id."""

    env_id: str
    device: str
    settings: str  # sorted JSON, see settings_key
    scenario: str
    output: str

    @classmethod
    def of(cls, row: dict[str, Any], env_id: str) -> Key:
        device = str(row.get("device"))
        return cls(env_id, device, settings_key(row.get("settings"), device),
                   str(row["scenario"]), str(row["output"]))

    @property
    def unit(self) -> tuple[str, str, str, str]:
        """(env, device, settings, scenario): what a scenario-level failure row covers."""
        return (self.env_id, self.device, self.settings, self.scenario)

    def label(self) -> str:
        return f"{cell_label(self.scenario, self.output, self.device, self.settings)} " \
               f"env {one_line(self.env_id)}"


@dataclass(frozen=True)
class Entry:
    """What a baseline keeps of one value: enough to tell same or not, and by how much."""

    digest: str
    dtype: str | None
    shape: list[int] | None
    sample: dict[str, Any] | None

    @classmethod
    def of(cls, row: dict[str, Any]) -> Entry:
        return cls(row["digest"], row.get("dtype"), row.get("shape"), row.get("sample"))


@dataclass
class Baseline:
    """One `<env_id>.json`: the environment summary and every baselined value of it."""

    env_id: str
    environment: dict[str, Any]
    entries: dict[Key, Entry] = field(default_factory=dict)

    def by_unit(self) -> dict[tuple[str, str, str, str], list[Key]]:
        units: dict[tuple[str, str, str, str], list[Key]] = {}
        for key in sorted(self.entries):
            units.setdefault(key.unit, []).append(key)
        return units

    def to_json(self) -> dict[str, Any]:
        outputs = []
        for key in sorted(self.entries):
            entry = self.entries[key]
            outputs.append({
                "device": key.device, "settings": json.loads(key.settings),
                "scenario": key.scenario, "output": key.output, "digest": entry.digest,
                "dtype": entry.dtype, "shape": entry.shape, "sample": entry.sample,
            })
        return {"record": FORMAT, "schema": SCHEMA, "env_id": self.env_id,
                "environment": self.environment, "outputs": outputs}


def baseline_path(folder: Path, env_id: str) -> Path:
    if not SAFE_ENV_ID.fullmatch(env_id):
        raise UserError(f"env-id {env_id!r} cannot name a baseline file")
    return folder / f"{env_id}{SUFFIX}"


def load_baseline(path: Path) -> Baseline:
    """Read and validate one baseline file; anything wrong is a UserError naming the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise UserError(f"{path}: cannot read baseline ({error.strerror or error})") from None
    except ValueError as error:
        raise UserError(f"{path}: corrupt baseline, not valid JSON ({error})") from None
    problem = _problem(data, path)
    if problem:
        raise UserError(f"{path}: corrupt baseline, {problem}")
    baseline = Baseline(data["env_id"], data.get("environment") or {})
    for item in data["outputs"]:
        device = str(item["device"])
        key = Key(baseline.env_id, item["device"], settings_key(item["settings"], device),
                  item["scenario"], item["output"])
        baseline.entries[key] = Entry(item["digest"], item.get("dtype"), item.get("shape"),
                                      item.get("sample"))
    return baseline


def _problem(data: Any, path: Path) -> str | None:
    """What makes `data` no baseline of the env-id its file is named for (None: fine)."""
    if not isinstance(data, dict) or data.get("record") != FORMAT:
        return "not a repro-audit baseline"
    schema = data.get("schema")
    if not isinstance(schema, int) or schema > SCHEMA:
        return f"schema version {schema!r} is newer than this reader's {SCHEMA}"
    if data.get("env_id") != path.name[: -len(SUFFIX)]:
        return f"its env_id {data.get('env_id')!r} does not match its file name"
    if not isinstance(data.get("outputs"), list):
        return "no list of outputs"
    for number, item in enumerate(data["outputs"], start=1):
        if not isinstance(item, dict) or not all(
                isinstance(item.get(name), str)
                for name in ("device", "scenario", "output", "digest")) \
                or not isinstance(item.get("settings"), dict):
            return f"output {number} lacks device, settings, scenario, output or digest"
    return None


def write_baseline(path: Path, baseline: Baseline) -> Path:
    """Written atomically, so a reader never sees half a baseline."""
    text = json.dumps(baseline.to_json(), sort_keys=True, indent=1, allow_nan=False) + "\n"
    return write_text(path, text)


# --- save --------------------------------------------------------------------------------

def save(results_paths: list[str], to: Path, update: bool = False) -> int:
    """Store every `ok` and repeatable value of the results as baselines in `to`.

    Returns how many values were stored. An existing baseline of the same env-id is only
    rewritten with `update` (its values of this run replaced, the others kept): a baseline
    is the reviewed reference, so replacing it must be a decision, not a side effect.
    """
    return save_files(read_all(results_paths), to, update, ", ".join(results_paths))


def refuse_overwrite(folder: Path, env_ids: Iterable[str], update: bool) -> dict[str, Path]:
    """The baseline file of each env-id in `folder`; a UserError when one exists already
    and `update` is not given, or when `folder` is a file (before anything is written)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder}: not a folder")
    targets = {env_id: baseline_path(folder, env_id) for env_id in sorted(env_ids)}
    existing = [path for path in targets.values() if path.exists()]
    if existing and not update:
        raise UserError(f"{existing[0]}: a baseline for this environment already exists "
                        "(--update rewrites after review)")
    return targets


def save_files(files: list[ResultsFile], to: Path, update: bool = False,
               source: str = "results") -> int:
    """`save` of results already read (or built in memory, as the pytest plugin does);
    `source` names them in the error when none holds a value to save."""
    runs: dict[str, Baseline] = {}
    origin: dict[Key, Path] = {}
    for item in files:
        for row in item.rows:
            if not comparable(row):
                continue
            env_id = env_of(row, item)
            run = runs.setdefault(env_id, Baseline(env_id, environment_summary(item.header)))
            key, entry = Key.of(row, env_id), Entry.of(row)
            known = run.entries.get(key)
            if known is not None and known.digest != entry.digest:
                raise UserError(
                    f"{key.label()}: {origin[key]} and {item.path} disagree "
                    f"({known.digest[:12]} vs {entry.digest[:12]}); save them one at a time")
            run.entries[key] = entry
            origin.setdefault(key, item.path)
    if not runs:
        raise UserError(f"{source}: no ok and repeatable outputs to save")
    folder = Path(to)
    targets = refuse_overwrite(folder, runs, update)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"{folder}: cannot create ({error.strerror or error})") from None
    stored = 0
    for env_id, path in targets.items():
        run = runs[env_id]
        stored += len(run.entries)
        if path.exists():
            kept = load_baseline(path).entries
            kept.update(run.entries)
            run.entries = kept
        write_baseline(path, run)
    return stored


# --- check -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Regression:
    """A baselined value that this run did not reproduce.

    `reason` is set when there is no new value to measure (the cell now fails, or no
    longer repeats run to run); otherwise `distance` says how far (None: no sample kept).
    """

    key: Key
    baseline_digest: str
    new_digest: str | None
    distance: Distance | None
    reason: str | None = None
    kind: str = "DIFFERS"  # DIFFERS, FAILS or NONDETERMINISTIC: the first word printed
    shapes: tuple[Any, Any] = (None, None)  # baseline shape, new shape

    def describe(self) -> str:
        detail = self.reason or describe_gap(self.distance, *self.shapes)
        return f"{self.kind} {self.key.label()}: {one_line(detail)}"


@dataclass
class CheckResult:
    """Everything `check` found; `exit_code` is what the CLI returns (0 or 1)."""

    matched: int = 0
    regressions: list[Regression] = field(default_factory=list)
    missing_baseline: list[Key] = field(default_factory=list)  # comparable, never baselined
    new_environments: dict[str, str] = field(default_factory=dict)  # env-id -> description
    without_value: int = 0  # rows with nothing to compare (failed, not repeatable), no baseline
    not_in_results: list[Key] = field(default_factory=list)  # baselined, not run this time
    other_environments: list[str] = field(default_factory=list)  # baseline files not checked

    @property
    def exit_code(self) -> int:
        return 1 if self.regressions else 0


def _baseline_files(folder: Path) -> dict[str, Path]:
    """`<env_id>.json` files of the folder, by env-id (a UserError when it holds none)."""
    if not folder.is_dir():
        raise UserError(f"{folder}: no such baseline folder")
    try:
        found = {path.name[: -len(SUFFIX)]: path for path in sorted(folder.glob("*" + SUFFIX))
                 if not path.name.startswith(".")}
    except OSError as error:
        raise UserError(f"{folder}: cannot read ({error.strerror or error})") from None
    if not found:
        raise UserError(f"{folder}: holds no baselines (*{SUFFIX}); "
                        "create them with `repro-audit baseline save`")
    return found


def _rows(files: Iterable[ResultsFile]) -> Iterator[tuple[ResultsFile, dict[str, Any]]]:
    for item in files:
        for row in item.rows:
            yield item, row


def _failure(row: dict[str, Any]) -> str:
    message = str(row.get("error") or "").strip().splitlines()
    return f"now {row.get('status')}" + (f": {message[0]}" if message else "")


def check(results_paths: list[str], against: Path) -> CheckResult:
    """Check every value of the results against the baselines of its environment.

    A value with a baseline either matches its digest or is a regression; so is a cell
    that now fails or no longer repeats where the baseline had a value. Values without a
    baseline (new outputs, new environments) are listed, never failed.
    """
    checker = Checker(Path(against))
    return checker.check(read_all(results_paths))


class Checker:
    """`check` against one baseline folder, for results already read or built in memory.

    Each baseline file is read once, however many checks use it: the pytest plugin checks
    every test's values as the test ends.
    """

    def __init__(self, against: Path) -> None:
        self.available = _baseline_files(Path(against))
        self._loaded: dict[str, tuple[Baseline | None, dict[Any, list[Key]]]] = {}

    def baseline(self, env_id: str) -> Baseline | None:
        """The baseline of `env_id` (None: the folder has none), read on first use."""
        return self._load(env_id)[0]

    def _load(self, env_id: str) -> tuple[Baseline | None, dict[Any, list[Key]]]:
        if env_id not in self._loaded:
            path = self.available.get(env_id)
            baseline = load_baseline(path) if path is not None else None
            self._loaded[env_id] = (baseline, baseline.by_unit() if baseline else {})
        return self._loaded[env_id]

    def check(self, files: list[ResultsFile], whole: bool = True) -> CheckResult:
        """See `check`. With `whole` False, baselined values the files do not reach are not
        listed (`not_in_results`, `other_environments`): a check of one test's values."""
        return _check(self, files, whole)


def _check(checker: Checker, files: list[ResultsFile], whole: bool) -> CheckResult:
    available = checker.available
    result = CheckResult()
    baselines: dict[str, Baseline | None] = {}
    units: dict[str, dict[tuple[str, str, str, str], list[Key]]] = {}
    seen: set[tuple[Any, ...]] = set()
    reached: set[Key] = set()  # baselined keys this run said something about
    covered: set[tuple[str, str, str, str]] = set()  # units a scenario-level row covers
    for item, row in _rows(files):
        env_id = env_of(row, item)
        if env_id not in baselines:
            baseline, units[env_id] = checker._load(env_id)
            baselines[env_id] = baseline
            if baseline is None:
                result.new_environments[env_id] = describe_environment(
                    environment_summary(item.header))
        baseline = baselines[env_id]
        entries = baseline.entries if baseline else {}
        if not isinstance(row.get("output"), str):  # a scenario-level row: it failed whole
            device = str(row.get("device"))
            unit = (env_id, device, settings_key(row.get("settings"), device),
                    str(row.get("scenario")))
            if unit in covered:
                continue
            covered.add(unit)
            affected = units[env_id].get(unit, [])
            if not affected:
                result.without_value += 1
            for key in affected:
                reached.add(key)
                result.regressions.append(Regression(
                    key, entries[key].digest, None, None, _failure(row), "FAILS"))
            continue
        key = Key.of(row, env_id)
        signature = (key, row.get("status"), row.get("digest"), row.get("repeatable"))
        if signature in seen:  # the same row in two files (a copy, a merged folder)
            continue
        seen.add(signature)
        expected = entries.get(key)
        if expected is not None:
            reached.add(key)
        if comparable(row):
            if expected is None:
                result.missing_baseline.append(key)
            elif expected.digest == row["digest"]:
                result.matched += 1
            else:
                result.regressions.append(Regression(
                    key, expected.digest, row["digest"],
                    measure(expected.sample, row.get("sample")),
                    shapes=(expected.shape, row.get("shape"))))
        elif expected is None:
            result.without_value += 1
        elif row.get("status") != "ok":
            result.regressions.append(Regression(
                key, expected.digest, row.get("digest"), None, _failure(row), "FAILS"))
        else:
            result.regressions.append(Regression(
                key, expected.digest, row.get("digest"), None,
                "no longer repeatable run to run", "NONDETERMINISTIC"))
    for baseline in baselines.values() if whole else ():
        if baseline is not None:
            result.not_in_results.extend(
                key for key in sorted(baseline.entries)
                if key not in reached and key.unit not in covered)
    if whole:
        result.other_environments = sorted(set(available) - set(baselines))
    result.regressions.sort(key=lambda item: (item.key, item.kind))
    result.missing_baseline.sort()
    return result


def _count(number: int, one: str, many: str) -> str:
    return f"{number} {one if number == 1 else many}"


def format_check(result: CheckResult) -> list[str]:
    """The lines `baseline check` prints: regressions, what has no baseline, a summary.

    Outputs of an environment without any baseline are listed as one line for the
    environment, not one per output.
    """
    lines = [regression.describe() for regression in result.regressions]
    per_environment: dict[str, int] = {}
    for key in result.missing_baseline:
        if key.env_id in result.new_environments:
            per_environment[key.env_id] = per_environment.get(key.env_id, 0) + 1
        else:
            lines.append(f"NO BASELINE {key.label()}")
    for env_id in sorted(result.new_environments):
        count = per_environment.get(env_id, 0)
        lines.append(f"NO BASELINE env {one_line(env_id)} "
                     f"({result.new_environments[env_id]}): {_count(count, 'output', 'outputs')}")
    kinds = [regression.kind for regression in result.regressions]
    parts = [f"{result.matched} matched", _count(kinds.count("DIFFERS"), "differs", "differ")]
    if kinds.count("FAILS"):
        parts.append(f"{kinds.count('FAILS')} now failing")
    if kinds.count("NONDETERMINISTIC"):
        parts.append(f"{kinds.count('NONDETERMINISTIC')} no longer repeatable")
    parts.append(f"{len(result.missing_baseline)} without baseline")
    if result.without_value:
        parts.append(f"{result.without_value} without a value to compare")
    if result.not_in_results:
        parts.append(_count(len(result.not_in_results), "baselined output not in these results",
                            "baselined outputs not in these results"))
    if result.other_environments:
        parts.append(_count(len(result.other_environments),
                            "baseline environment not in these results",
                            "baseline environments not in these results"))
    lines.append("baseline check: " + ", ".join(parts))
    return lines
