"""What `baseline check` and the pytest plugin print: regressions, what has no baseline,
a summary line. How far a value moved is said by `audit.capture.distance_text`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from audit.capture.distance_text import describe_gap
from audit.judge.rows import one_line

if TYPE_CHECKING:  # the checker's results; the checker imports this module
    from audit.judge.baseline.check import CheckResult, Regression


def describe_environment(summary: dict[str, Any]) -> str:
    """`torch 2.13.0+cpu, python 3.11.7, Linux 6.1, Example CPU`: one line for a listing."""
    parts = [f"{key} {summary[key]}" for key in ("torch", "numpy", "python") if summary.get(key)]
    parts += [str(summary[key]) for key in ("os", "cpu") if summary.get(key)]
    return one_line(", ".join(parts) or "environment unknown")


def regression_line(regression: Regression) -> str:
    """`DIFFERS <label> env <env-id>: <why>`: the reason given, or how far the value moved."""
    detail = regression.reason or describe_gap(regression.distance, *regression.shapes)
    return f"{regression.kind} {regression.key.label()}: {one_line(detail)}"


def pair_header(regression: Regression) -> str:
    """`baseline env A → env B: threads 2 → 1`: what the values under it were compared with."""
    from audit.judge.baseline.nearest import describe_axes

    return (f"baseline env {one_line(regression.baseline_env)} → env "
            f"{one_line(regression.key.env_id)}: {one_line(describe_axes(regression.axes))}")


def grouped_lines(regressions: list[Regression], same_too: bool = True) -> list[str]:
    """One header line per (baseline environment and settings → these) pair, then one line
    per output compared across it; without `same_too`, values compared with their own
    environment's baseline get no header."""
    groups: dict[tuple[Any, ...], list[Regression]] = {}
    for regression in regressions:
        pair = (regression.baseline_env, regression.key.env_id, regression.axes)
        groups.setdefault(pair, []).append(regression)
    lines = []
    for pair in sorted(groups):
        if same_too or pair[2]:
            lines.append(pair_header(groups[pair][0]))
        lines += [regression.describe() for regression in groups[pair]]
    return lines


def _count(number: int, one: str, many: str) -> str:
    return f"{number} {one if number == 1 else many}"


def format_check(result: CheckResult) -> list[str]:
    """The lines `baseline check` prints: regressions, what has no baseline, a summary.

    Outputs of an environment without any baseline are listed as one line for the
    environment, not one per output.
    """
    lines = grouped_lines(result.regressions, same_too=False)
    if result.allowed:
        allowed = sorted({axis for item in result.allowed for axis, _, _ in item.axes})
        lines.append(f"ALLOWED differences along {', '.join(allowed)}:")
        lines += grouped_lines(result.allowed)
    per_environment: dict[str, int] = {}
    for key in result.missing_baseline:
        if key.env_id in result.new_environments:
            per_environment[key.env_id] = per_environment.get(key.env_id, 0) + 1
        else:
            lines.append(f"NO BASELINE {key.label()}")
    for env_id in sorted(result.new_environments):
        count = per_environment.get(env_id, 0)
        if not count:  # every value of it compared with another environment's baseline
            lines.append(f"NO BASELINE OF ITS OWN env {one_line(env_id)} "
                         f"({result.new_environments[env_id]}): compared with the nearest "
                         "environment's")
            continue
        lines.append(f"NO BASELINE env {one_line(env_id)} "
                     f"({result.new_environments[env_id]}): {_count(count, 'output', 'outputs')}")
    kinds = [regression.kind for regression in result.regressions]
    matched = f"{result.matched} matched"
    if result.matched_elsewhere:
        matched += f" ({result.matched_elsewhere} against another environment or settings)"
    parts = [matched, _count(kinds.count("DIFFERS"), "differs", "differ")]
    if result.allowed:
        parts.append(f"{len(result.allowed)} differ along allowed axes")
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
