"""The report's opening: what it is and what it was built from, the summary, the heatmap
and the count of outputs that hold or break per scenario family."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from audit.judge.axes import axis_title, value_label
from audit.judge.compare import Comparison
from audit.publish.markdown import escape, percent, short_list, table
from audit.publish.report.axes import anchor
from audit.store.results import ResultsFile


def title_section(files: list[ResultsFile], changelog: str | None) -> list[str]:
    """The title, what the report compares, the files it was built from (`changelog`: the
    release changelog's file name, to link)."""
    lines = [
        "# repro-audit report", "",
        "Does a seeded PyTorch result come out bit for bit the same on another torch version, "
        "device or setting? Each output below was hashed exactly (dtype, shape and bytes) and "
        "compared across every axis that varies in these results, the other axes held equal.",
        "",
        f"Built from {len(files)} results files: "
        f"{short_list(sorted(Path(item.path).name for item in files), 12)}.", "",
    ]
    if changelog:
        lines += [f"Which torch release changed which output, release by release: "
                  f"[{changelog}]({changelog}).", ""]
    return lines


def summary_section(result: Comparison) -> list[str]:
    compared = sorted({key for t in result.tables.values() for key in t.cells})
    breaking = [key for key in compared if result.breaks_on(key)]
    nondeterministic = sorted(set(zip(result.nondeterministic["scenario"],
                                      result.nondeterministic["output"])))
    problems = result.problems
    scenarios = sorted(set(result.data["scenario"]))
    lines = ["## Summary", ""]
    lines.append(
        f"{len(result.outputs)} outputs of {len(scenarios)} scenarios produced values. "
        f"Of the {len(compared)} outputs compared along at least one axis, "
        f"**{len(compared) - len(breaking)} hold** (the same bits wherever compared) and "
        f"**{len(breaking)} break** somewhere.")
    lines.append("")
    if nondeterministic:
        lines.append(f"{len(nondeterministic)} outputs are not repeatable run to run on some "
                     "setup (see [Nondeterministic](#nondeterministic-run-to-run)); they are "
                     "left out of the comparisons there.")
        lines.append("")
    rows = []
    for axis in result.axes:
        axis_table = result.tables[axis]
        broken = len(axis_table.breaking())
        total = len(axis_table.cells)
        values = ", ".join(escape(value_label(axis, value)) for value in axis_table.values)
        rows.append([f"[{escape(axis_title(axis))}](#{anchor(axis)})", values, str(total),
                     str(total - broken), str(broken), percent(total - broken, total)])
    if rows:
        lines += [table(["axis", "values", "outputs compared", "identical", "differ", "hold"],
                        rows), ""]
    else:
        lines += ["Nothing varies in these results, so nothing was compared.", ""]
    counts = problems.groupby("status", observed=True).size().to_dict() if len(problems) else {}
    if counts:
        parts = ", ".join(f"{count} {status}" for status, count in sorted(counts.items()))
        lines += [f"Cells without a value: {parts} (see [Errors and unavailable cells]"
                  "(#errors-and-unavailable-cells)).", ""]
    return lines


def heatmap_section(heatmap: str | None) -> list[str]:
    """The heatmap image (`heatmap`: its file name), under the summary."""
    if not heatmap:
        return []
    return [f"![Share of each scenario's outputs identical to the reference, per axis "
            f"value]({heatmap})", ""]


def family_section(result: Comparison) -> list[str]:
    families: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for scenario, output in result.outputs:
        family = scenario.split(".", 1)[0]
        families[family]["outputs"] += 1
        breaks = result.breaks_on((scenario, output))
        compared = any((scenario, output) in t.cells for t in result.tables.values())
        if compared and not breaks:
            families[family]["hold"] += 1
        for axis in breaks:
            families[family][axis] += 1
    if not families or not result.axes:
        return []
    headers = ["family", "outputs", "hold everywhere"] + [
        f"break across {axis_title(axis)}" for axis in result.axes]
    rows = [[escape(family), str(counts["outputs"]), str(counts["hold"])]
            + [str(counts[axis]) for axis in result.axes]
            for family, counts in sorted(families.items())]
    return ["## By scenario family", "", table(headers, rows), ""]
