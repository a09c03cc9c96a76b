"""The axis tables: each output against its value at the axis' reference, per axis (a long
table on a page of its own), and release by release across torch versions."""

from __future__ import annotations

from collections import defaultdict

from audit.judge.axes import DEVICE, PLATFORM, TORCH, axis_title, value_label
from audit.judge.cells import AxisCell
from audit.judge.compare import Comparison
from audit.judge.tables import AxisTable
from audit.publish.markdown import escape, short_list, table
from audit.trace.origin import describe_origin


def cell_text(cell: AxisCell | None, is_reference: bool) -> str:
    """`**differs** in 2/3: max abs 1.2e-07, max 1 ULP, 1 of 3 elements`: the worst distance
    as `Distance.describe` (`audit.capture.distance_text`) says it everywhere, then the op
    where the values first diverge when traces found one."""
    if cell is None or cell.groups == 0:
        return "·"
    if is_reference:
        return "reference"
    if not cell.differing:
        return "identical"
    where = "" if cell.differing == cell.groups else f" in {cell.differing}/{cell.groups}"
    detail = f": {cell.worst.describe()}" if cell.worst is not None else ""
    if cell.origin:  # only a found origin; NoOrigin reasons stay out of the table
        detail += f"; {escape(describe_origin(cell.origin))}"
    return f"**differs**{where}{detail}"


def changed_text(cell: AxisCell) -> str:
    """`cell_text` where a release changed the output: `changed: max abs ...`."""
    return cell_text(cell, False).replace("**differs**", "changed")


def anchor(axis: str) -> str:
    return "across-" + axis_title(axis).replace(" ", "-").lower()  # GitHub keeps underscores


def axis_page_name(axis: str) -> str:
    """'setting:cpu_capability' -> 'across-cpu_capability.md'."""
    return anchor(axis) + ".md"


def axes_sections(result: Comparison, pages: dict[str, str] | None,
                  page_from: int) -> list[str]:
    """Every axis' section, torch version first, then device, machine and settings."""
    lines: list[str] = []
    for axis in sorted(result.axes, key=_axis_order):
        lines += axis_section(result.tables[axis], pages, page_from)
    return lines


def _axis_order(axis: str) -> tuple[int, str]:
    return ({TORCH: 0, DEVICE: 1, PLATFORM: 2}.get(axis, 3), axis)


def axis_section(axis_table: AxisTable, pages: dict[str, str] | None,
                 page_from: int) -> list[str]:
    """The axis' table in the report, or (more than `page_from` outputs differ, and `pages`
    given) on a page of its own with a summary and a link left in the report."""
    breaking = axis_table.breaking()
    body = axis_body(axis_table)
    title = axis_title(axis_table.axis)
    pairs = machine_pairs(axis_table)
    if pages is None or len(breaking) <= page_from:
        return [f"## Across {escape(title)}", ""] + pairs + body
    name = axis_page_name(axis_table.axis)
    pages[name] = "\n".join([f"# Across {escape(title)}", "",
                             "[Back to the report](README.md)", ""] + body).rstrip() + "\n"
    families = sorted({scenario.split(".", 1)[0] for scenario, _ in breaking})
    return [f"## Across {escape(title)}", "",
            f"{len(breaking)} of {len(axis_table.cells)} outputs differ from their value at "
            f"**{escape(value_label(axis_table.axis, axis_table.reference))}**, in the families "
            f"{short_list(families, 12)}: "
            f"the table is on its own page, [{name}]({name}).", ""] + pairs


def machine_pairs(axis_table: AxisTable) -> list[str]:
    """Along the machine axis, every pair of machines: how many of the outputs both
    produced it compared, and why it left any out (`audit.judge.platforms`)."""
    if axis_table.axis != PLATFORM or not axis_table.pairs:
        return []
    rows = []
    for pair in axis_table.pairs:
        why = "; ".join(f"{count}: {reason}" for reason, count in pair.left_out.items())
        rows.append([escape(pair.first), escape(pair.second),
                     " / ".join(escape(value) for value in pair.automatic),
                     str(pair.shared), str(pair.compared), why or "none"])
    return ["Every pair of machines compares the outputs of the scenarios both ran: like "
            "for like, and "
            "as a user gets each (one torch release whatever its build label, each machine "
            "at the cpu_capability its torch picks by itself, a setting that does not apply "
            "on one machine set aside).", "",
            table(["machine", "machine", "automatic cpu_capability", "outputs of both",
                   "compared", "left out, and why"], rows), ""]


def axis_body(axis_table: AxisTable) -> list[str]:
    title = axis_title(axis_table.axis)
    lines: list[str] = []
    breaking, holding = axis_table.breaking(), axis_table.holding()
    lines.append(
        f"Each output compared with its value at "
        f"**{escape(value_label(axis_table.axis, axis_table.reference))}**, the other "
        f"axes held equal. {len(breaking)} of {len(axis_table.cells)} outputs differ.")
    lines.append("")
    if breaking:
        headers = ["scenario", "output"] + [
            escape(value_label(axis_table.axis, value))
            + (" (reference)" if value == axis_table.reference else "")
            for value in axis_table.values]
        rows = []
        for key in breaking:
            row = axis_table.cells[key]
            rows.append([escape(key[0]), escape(key[1])] + [
                cell_text(row.get(value), value == axis_table.reference)
                for value in axis_table.values])
        lines += [table(headers, rows), ""]
    if holding:
        by_scenario: dict[str, list[str]] = defaultdict(list)
        for scenario, output in holding:
            by_scenario[scenario].append(output)
        lines += ["<details><summary>"
                  f"{len(holding)} outputs identical across {escape(title)}</summary>", ""]
        lines += [f"- {escape(scenario)}: {short_list(outputs)}"
                  for scenario, outputs in sorted(by_scenario.items())]
        lines += ["", "</details>", ""]
    return lines


def changelog_section(result: Comparison) -> list[str]:
    """Release by release: which outputs changed from one torch version to the next."""
    if not result.changelog:
        return []
    lines = ["## Changelog across torch versions", "",
             "Each torch version against the one before it, every other axis held equal.", ""]
    rows = []
    for step in result.changelog:
        changed = step.changed()
        lines.append(f"- **{escape(step.before)} → {escape(step.after)}**: {len(changed)} of "
                     f"{len(step.cells)} outputs changed")
        for key in changed:
            cell = step.cells[key]
            rows.append([f"{escape(step.before)} → {escape(step.after)}", escape(key[0]),
                         escape(key[1]), changed_text(cell)])
    lines.append("")
    if rows:
        lines += [table(["release", "scenario", "output", "how far"], rows), ""]
    return lines
