"""Checking results against baselines: what matched, what regressed, what has none.

A value with a baseline either matches its digest or is a regression; so is a cell that
now fails or no longer repeats where the baseline had a value. Values without a baseline
(new outputs, new environments) are compared with the nearest reference the folder holds
(`audit.judge.baseline.nearest`): a difference there fails unless each axis it crosses is
allowed; a value with no reference at all is listed, and fails only a strict check.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from audit.capture.distance import Distance
from audit.judge.baseline.files import (
    Baseline,
    Key,
    baseline_files,
    environment_summary,
    load_baseline,
)
from audit.judge.baseline.messages import describe_environment, regression_line
from audit.judge.baseline.nearest import Reference, References
from audit.judge.rows import comparable, env_of, measure, settings_key
from audit.store.results import ResultsFile, read_all


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
    reference: Reference | None = None  # set when compared across environments or settings

    @property
    def baseline_env(self) -> str:
        """The env-id of the baseline it was compared with."""
        return self.reference.key.env_id if self.reference else self.key.env_id

    @property
    def axes(self) -> tuple[tuple[str, str, str], ...]:
        return self.reference.axes if self.reference else ()

    def describe(self) -> str:
        """`DIFFERS <label> env <env-id>: <how far>`: the line printed for it."""
        return regression_line(self)


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
    matched_elsewhere: int = 0  # of `matched`: against another environment's or settings'
    allowed: list[Regression] = field(default_factory=list)  # differ along allowed axes only
    strict: bool = False  # an output without any baseline fails

    @property
    def exit_code(self) -> int:
        return 1 if self.regressions or (self.strict and self.missing_baseline) else 0


def _rows(files: Iterable[ResultsFile]) -> Iterator[tuple[ResultsFile, dict[str, Any]]]:
    for item in files:
        for row in item.rows:
            yield item, row


def _failure(row: dict[str, Any]) -> str:
    message = str(row.get("error") or "").strip().splitlines()
    return f"now {row.get('status')}" + (f": {message[0]}" if message else "")


def check(results_paths: list[str], against: Path, allow: frozenset[str] = frozenset(),
          strict: bool = False) -> CheckResult:
    """Check every value of the results against the baselines of its environment.

    A value with a baseline either matches its digest or is a regression; so is a cell
    that now fails or no longer repeats where the baseline had a value. Values without a
    baseline (new outputs, new environments) are listed, never failed.
    """
    checker = Checker(Path(against), allow, strict)
    return checker.check(read_all(results_paths))


class Checker:
    """`check` against one baseline folder, for results already read or built in memory.

    Each baseline file is read once, however many checks use it: the pytest plugin checks
    every test's values as the test ends.
    """

    def __init__(self, against: Path, allow: frozenset[str] = frozenset(),
                 strict: bool = False) -> None:
        self.available = baseline_files(Path(against))
        self.allow = frozenset(allow)
        self.strict = strict
        self._loaded: dict[str, tuple[Baseline | None, dict[Any, list[Key]]]] = {}
        self._references: References | None = None

    @property
    def references(self) -> References:
        """Every baselined value of the folder, for values without a baseline of their own."""
        if self._references is None:
            loaded = [self.baseline(env_id) for env_id in sorted(self.available)]
            self._references = References([item for item in loaded if item is not None])
        return self._references

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
    check = _Check(checker)
    for item, row in _rows(files):
        env_id = check.environment(item, row)
        if isinstance(row.get("output"), str):
            check.output_row(env_id, row)
        else:  # a scenario-level row: the unit failed whole
            check.unit_row(env_id, row)
    return check.finish(whole)


class _Check:
    """One check of results rows against a folder's baselines, row by row."""

    def __init__(self, checker: Checker) -> None:
        self.checker = checker
        self.result = CheckResult(strict=checker.strict)
        self.summaries: dict[str, dict[str, Any]] = {}
        self.baselines: dict[str, Baseline | None] = {}
        self.units: dict[str, dict[tuple[str, str, str, str], list[Key]]] = {}
        self.seen: set[tuple[Any, ...]] = set()
        self.reached: set[Key] = set()  # baselined keys this run said something about
        self.covered: set[tuple[str, str, str, str]] = set()  # units a unit-level row covers

    def environment(self, item: ResultsFile, row: dict[str, Any]) -> str:
        """The row's env-id, its baseline loaded (a new environment noted) the first time."""
        env_id = env_of(row, item)
        if env_id not in self.baselines:
            baseline, self.units[env_id] = self.checker._load(env_id)
            self.baselines[env_id] = baseline
            self.summaries[env_id] = environment_summary(item.header)
            if baseline is None:
                self.result.new_environments[env_id] = describe_environment(
                    self.summaries[env_id])
        return env_id

    def entries(self, env_id: str) -> dict[Key, Any]:
        baseline = self.baselines[env_id]
        return baseline.entries if baseline else {}

    def unit_row(self, env_id: str, row: dict[str, Any]) -> None:
        """A unit that failed whole fails every baselined output of it."""
        device = str(row.get("device"))
        unit = (env_id, device, settings_key(row.get("settings"), device),
                str(row.get("scenario")))
        if unit in self.covered:
            return
        self.covered.add(unit)
        affected = self.units[env_id].get(unit, [])
        if not affected:
            self.result.without_value += 1
        entries = self.entries(env_id)
        for key in affected:
            self.reached.add(key)
            self.result.regressions.append(Regression(
                key, entries[key].digest, None, None, _failure(row), "FAILS"))

    def output_row(self, env_id: str, row: dict[str, Any]) -> None:
        key = Key.of(row, env_id)
        signature = (key, row.get("status"), row.get("digest"), row.get("repeatable"))
        if signature in self.seen:  # the same row in two files (a copy, a merged folder)
            return
        self.seen.add(signature)
        expected = self.entries(env_id).get(key)
        if expected is not None:
            self.reached.add(key)
        result = self.result
        if comparable(row):
            if expected is None:
                self.elsewhere(key, row)
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

    def elsewhere(self, key: Key, row: dict[str, Any]) -> None:
        """A value without a baseline of its own, against the nearest reference."""
        result = self.result
        reference = self.checker.references.nearest(key, self.summaries[key.env_id])
        if reference is None:
            result.missing_baseline.append(key)
        elif reference.entry.digest == row["digest"]:
            result.matched += 1
            result.matched_elsewhere += 1
        else:
            regression = Regression(
                key, reference.entry.digest, row["digest"],
                measure(reference.entry.sample, row.get("sample")),
                shapes=(reference.entry.shape, row.get("shape")), reference=reference)
            allowed = reference.names <= self.checker.allow
            (result.allowed if allowed else result.regressions).append(regression)

    def finish(self, whole: bool) -> CheckResult:
        result = self.result
        for baseline in self.baselines.values() if whole else ():
            if baseline is not None:
                result.not_in_results.extend(
                    key for key in sorted(baseline.entries)
                    if key not in self.reached and key.unit not in self.covered)
        if whole:
            result.other_environments = sorted(set(self.checker.available) - set(self.baselines))
        result.regressions.sort(key=lambda item: (item.key, item.kind))
        result.missing_baseline.sort()
        return result
