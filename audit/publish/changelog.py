"""reports/changelog.md: which torch release changed which seeded result, and since when.

Built from the results of many releases (one file each). Changes *between* releases are
found by comparing consecutive versions with every setting held equal; changes *within* a
release (threads, CPU capability) are counted apart, so a reader can tell "torch changed
this" from "this depends on how you run it".
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from audit.judge.axes import TORCH, axis_title, value_order
from audit.judge.compare import Comparison, compare
from audit.judge.frames import setting_columns
from audit.judge.tables import ChangelogStep
from audit.publish.markdown import escape, short_list, table
from audit.publish.report.axes import changed_text
from audit.store.atomic import write_text
from audit.store.results import ResultsFile, read_all


def release_rows(files: list[ResultsFile]) -> list[list[str]]:
    """One line per release: version, numpy, python and whether it was audited."""
    rows: dict[str, list[str]] = {}
    for item in files:
        environment = item.header.get("environment", {})
        version = str(environment.get("torch", "?"))
        statuses = {row["status"] for row in item.rows}
        if statuses == {"unavailable"}:
            reasons = sorted({row.get("error") or "" for row in item.rows})
            state = "unavailable: " + "; ".join(reasons)
        else:
            state = f"audited ({len(item.rows)} cells)"
        rows[version] = [escape(version), escape(environment.get("numpy", "?")),
                         escape(environment.get("python", "?")), escape(state)]
    return [rows[key] for key in sorted(rows, key=lambda v: value_order(TORCH, v))]


def family_counts(steps: list[ChangelogStep]) -> tuple[list[str], list[list[str]]]:
    """Releases x scenario families: how many outputs changed at each release."""
    families = sorted({key[0].split(".", 1)[0] for step in steps for key in step.cells})
    rows = []
    for step in steps:
        counts: dict[str, int] = defaultdict(int)
        for scenario, _ in step.changed():
            counts[scenario.split(".", 1)[0]] += 1
        rows.append([f"{escape(step.before)} → {escape(step.after)}",
                     f"{len(step.changed())} / {len(step.cells)}"]
                    + [str(counts[family]) if counts[family] else "·" for family in families])
    return ["release", "changed / compared"] + families, rows


def same_since(steps: list[ChangelogStep]) -> dict[tuple[str, str], str]:
    """For each output, the release since which it has had its latest release's value."""
    since: dict[tuple[str, str], str] = {}
    for step in steps:  # oldest first: a later change moves "since" forward
        for key, cell in step.cells.items():
            since.setdefault(key, step.before)
            if cell.differing:
                since[key] = step.after
    return since


def within_release(files: list[ResultsFile]) -> tuple[list[str], list[list[str]]]:
    """Per release, how many outputs differ across each setting (threads, CPU capability)."""
    by_version: dict[str, list[ResultsFile]] = defaultdict(list)
    for item in files:
        by_version[str(item.header.get("environment", {}).get("torch", "?"))].append(item)
    axes: list[str] = []
    counts: dict[str, dict[str, str]] = {}
    for version in sorted(by_version, key=lambda v: value_order(TORCH, v)):
        result = compare(by_version[version])
        counts[version] = {}
        for axis, axis_table in result.tables.items():
            if axis not in axes:
                axes.append(axis)
            counts[version][axis] = f"{len(axis_table.breaking())} / {len(axis_table.cells)}"
    headers = ["release"] + [f"differ across {axis_title(axis)}" for axis in axes]
    rows = [[escape(version)] + [counts[version].get(axis, "·") for axis in axes]
            for version in counts]
    return headers, rows


def render(files: list[ResultsFile], result: Comparison | None = None) -> str:
    result = result or compare(files)
    steps = result.changelog
    lines = [
        "# Changelog of seeded behaviour across torch releases", "",
        "Which torch release changed which seeded result. Every output of the built-in suite "
        "was hashed bit for bit under each release on the same machine's CPU; consecutive "
        "releases are compared with every setting held equal. See the "
        "[main report](README.md) for the method.", "",
        "## Releases audited", "",
        table(["torch", "numpy", "python", "state"], release_rows(files)), "",
    ]
    if not steps:
        return "\n".join(lines + ["Fewer than two releases have results: nothing to compare."]
                         ) + "\n"
    headers, rows = family_counts(steps)
    lines += ["## Outputs changed at each release, by scenario family", "",
              table(headers, rows), ""]
    if setting_columns(result.data):
        headers, rows = within_release(files)
        lines += ["## Within a release: outputs that depend on how you run it", "",
                  "Not a change between releases: within each release, outputs whose bits "
                  "differ across a setting (compared against its first value).", "",
                  table(headers, rows), ""]
    lines += ["## What changed, release by release", ""]
    for step in steps:
        changed = step.changed()
        lines += [f"### {escape(step.before)} → {escape(step.after)}", "",
                  f"{len(changed)} of {len(step.cells)} outputs changed.", ""]
        if changed:
            lines += [table(["scenario", "output", "how far"],
                            [[escape(key[0]), escape(key[1]), changed_text(step.cells[key])]
                             for key in changed]), ""]
    lines += since_section(steps)
    return "\n".join(lines).rstrip() + "\n"


def since_section(steps: list[ChangelogStep]) -> list[str]:
    since = same_since(steps)
    first = steps[0].before
    changed: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for key, release in since.items():
        if release != first:
            changed[release].append(key)
    stable = sorted(key for key, release in since.items() if release == first)
    lines = ["## Since when each output has had its current value", ""]
    rows: list[list[Any]] = []
    for release in sorted(changed, key=lambda v: value_order(TORCH, v), reverse=True):
        for scenario, output in sorted(changed[release]):
            rows.append([escape(scenario), escape(output), escape(release)])
    if rows:
        lines += [table(["scenario", "output", "same since"], rows), ""]
    by_scenario: dict[str, list[str]] = defaultdict(list)
    for scenario, output in stable:
        by_scenario[scenario].append(output)
    lines += [f"<details><summary>{len(stable)} outputs unchanged since {escape(first)}, the "
              "oldest release audited</summary>", ""]
    lines += [f"- {escape(scenario)}: {short_list(outputs)}"
              for scenario, outputs in sorted(by_scenario.items())]
    return lines + ["", "</details>", ""]


def write_changelog(paths: list[str], out: Path) -> Path:
    files = read_all(paths)
    files.sort(key=lambda item: str(item.path))
    return write_text(out, render(files))
