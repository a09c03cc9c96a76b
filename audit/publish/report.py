"""Markdown report of a comparison: summary first, then one table per axis, then problems.

Reports are stable text: the same results give the same bytes (rows sorted, no timestamps),
so a published report diffs cleanly in git. Every name that came from a results file is
escaped, since a scenario name is user input.
"""

from __future__ import annotations

import html
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd
from tabulate import tabulate

from audit.capture.distance import values
from audit.capture.sample import Sample
from audit.config.settings import SETTINGS
from audit.environment.collect import built_libraries, cpu_label, platform_label, ruled_out
from audit.judge.compare import (
    CAPABILITY,
    DEVICE,
    PLATFORM,
    SETTING_PREFIX,
    TORCH,
    AxisCell,
    AxisTable,
    Comparison,
    axis_title,
    compare,
    file_frame,
    join_frames,
    value_label,
)
from audit.judge.pin import COVERAGE, AxisPins, Restricted, what_to_pin
from audit.store.atomic import write_text
from audit.store.results import ResultsFile, read_all
from audit.trace.origin import describe_origin

LIST_LIMIT = 6  # names shown before "and N more"
PAGE_FROM = 40  # an axis with more differing outputs gets a page of its own


def escape(text: Any) -> str:
    """Safe inside a markdown table cell: no HTML, no column breaks, no code spans."""
    value = html.escape(str(text), quote=False)
    return (value.replace("\\", "\\\\").replace("|", "\\|").replace("`", "\\`")
            .replace("\r", " ").replace("\n", " "))


def table(headers: list[str], rows: list[list[Any]]) -> str:
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def short_list(names: Iterable[str], limit: int = LIST_LIMIT) -> str:
    names = sorted(set(names))
    shown = ", ".join(escape(name) for name in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "-"


def cell_text(cell: AxisCell | None, is_reference: bool) -> str:
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


def environments_section(files: list[ResultsFile]) -> list[str]:
    seen: dict[str, list[Any]] = {}
    for item in files:
        environment = item.header.get("environment", {})
        identity = item.header.get("env_id", "?")
        devices = ["cpu"] + sorted((environment.get("devices") or {}).keys())
        seen[identity] = [
            escape(identity), escape(environment.get("torch", "?")),
            escape(environment.get("numpy", "?")), escape(environment.get("python", "?")),
            escape(environment.get("os", "?")), escape(cpu_label(environment)),
            escape(value_label(CAPABILITY, str(environment.get("cpu_capability", "?")).lower())),
            escape(", ".join(devices)),
        ]
    rows = [seen[key] for key in sorted(seen, key=lambda k: (seen[k][1], k))]
    return ["## Environments", "",
            table(["env-id", "torch", "numpy", "python", "OS", "CPU", "CPU capability",
                   "devices"], rows), ""]


def machines_section(files: list[ResultsFile]) -> list[str]:
    """What explains why machines compute differently: the CPU, and the code paths the math
    libraries under torch take on it, per machine (the report's machine axis value)."""
    machines: dict[str, dict[str, set[str]]] = {}
    for item in files:
        environment = item.header.get("environment") or {}
        if not environment:
            continue
        facts = machines.setdefault(platform_label(environment), defaultdict(set))
        for column, value in machine_facts(environment).items():
            if value:
                facts[column].add(value)
    if not machines:
        return []
    columns = ["CPU vendor, family / model / stepping", "CPU flags", "BLAS / LAPACK", "MKL",
               "MKL code path", "oneDNN", "oneDNN ISA"]
    rows = [[escape(label)] + [escape("; ".join(sorted(facts[column]))) or "not recorded"
                               for column in columns]
            for label, facts in sorted(machines.items())]
    return ["## Machines", "",
            "The machine axis tells machines apart by CPU. What usually explains a difference "
            "between two of them is below: the code paths MKL (matmul, linear algebra) and "
            "oneDNN (convolutions) choose for each CPU, as they report them.", "",
            table(["machine", *columns], rows), ""]


def machine_facts(environment: dict[str, Any]) -> dict[str, str | None]:
    cpu = environment.get("cpu") if isinstance(environment.get("cpu"), dict) else {}
    mkl = environment.get("mkl") if isinstance(environment.get("mkl"), dict) else {}
    onednn = environment.get("onednn") if isinstance(environment.get("onednn"), dict) else {}
    numbers = [str(cpu[key]) for key in ("family", "model_number", "stepping")
               if cpu.get(key) is not None]
    identity = " ".join(part for part in (cpu.get("vendor"), " / ".join(numbers)) if part)
    says = cpu.get("model_number_says")
    if says:
        flags = ", ".join(ruled_out(str(says), cpu.get("flags") or []))
        identity += (f" (model {cpu.get('model_number')} is {says}'s, which has no {flags}: "
                     "a virtual CPU showing another model number)")
    built = built_libraries(str(environment.get("torch_config") or ""))
    libraries = " / ".join(str(environment.get(key) or built[key]) for key in ("blas", "lapack")
                           if environment.get(key) or built[key])
    isa = onednn.get("isa")
    if isa and onednn.get("isa_capped_by"):
        isa += f" (capped by ONEDNN_MAX_CPU_ISA={onednn['isa_capped_by']})"
    return {
        "CPU vendor, family / model / stepping": identity or None,
        "CPU flags": " ".join(cpu.get("flags") or []) or None,
        "BLAS / LAPACK": libraries or None,
        "MKL": mkl.get("version") or mkl.get("built_with") or (
            f"{built['mkl_built_with']} (built with)" if built["mkl_built_with"] else None),
        "MKL code path": mkl.get("code_path"),
        "oneDNN": (onednn.get("version") or "").split(" (commit")[0] or (
            f"{built['onednn_built_with']} (built with)" if built["onednn_built_with"] else None),
        "oneDNN ISA": isa,
    }


def assumed_section(result: Comparison) -> list[str]:
    """One note for the settings some files do not record (written before every setting
    was recorded, or by a matrix that never set them): read at their unset value."""
    if not result.assumed:
        return []
    files = sorted({Path(name).name for names in result.assumed.values() for name in names})
    values = ", ".join(f"{escape(name)}={escape(value)}"
                       for name, value in sorted(result.assumed))
    subject = ("One results file does not" if len(files) == 1
               else f"{len(files)} results files do not")
    return [f"{subject} record every setting ({short_list(files, 3)}): a setting a file "
            f"does not record is read at the value torch has when nobody sets it: {values}.",
            ""]


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


def pin_text(pins: tuple[tuple[str, str], ...], joiner: str = ", ") -> str:
    """'threads=1, cpu_capability=default (scalar)', escaped."""
    return joiner.join(f"{escape(axis_title(column))}={escape(value_label(column, value))}"
                       for column, value in pins)


def pin_effect(found: AxisPins, option: Restricted) -> str:
    if option.covered == 0:
        return "none of them compared"
    effect = ("removes the break" if option.removes() else
              "shrinks the break" if option.helps() else "none")
    if option.helps() and not found.enough(option):
        effect += ", but too few of them compared to suggest"
    return f"**{effect}** (suggested)" if option == found.best() else effect


def pin_section(result: Comparison) -> list[str]:
    """What to pin: for each breaking axis, under which values of the other settings the
    break disappears or shrinks (`audit.judge.pin`), and the one value to suggest."""
    if not result.axes:
        return []
    found = what_to_pin(result)
    lines = ["## What to pin", ""]
    if not found:
        return lines + ["No output breaks along any axis: there is nothing to pin.", ""]
    lines += [
        "What to set so that results come out the same there too. For each axis along which "
        "outputs break, its comparisons (those of its table) are counted again where another "
        "setting had one value: the break as it is with that setting pinned. Only settings "
        "varied in these results are suggested, never the torch version, the device or the "
        "machine; a setting that is the axis itself can of course be pinned too. A value is "
        "suggested when it removes or shrinks the break and its comparisons include at least "
        f"{COVERAGE:.0%} of the outputs that break (fewer could look better for lack of "
        "comparisons alone): of those, the one under which the fewest outputs differ. Two "
        "settings together are tried where no one value removes the break.", ""]
    rows = []
    for axis_pins in found:
        best = axis_pins.best()
        title = escape(axis_title(axis_pins.axis))
        pin = (pin_text(best.pins) if best is not None
               else "none found" if axis_pins.options else "nothing varied to pin")
        rows.append([f"[{title}](#{anchor(axis_pins.axis)})",
                     f"{axis_pins.differing} of {axis_pins.compared}", pin,
                     f"{best.differing} of {best.compared}" if best is not None else "-"])
    lines += [table(["across", "outputs that differ", "pin", "then differ"], rows), ""]
    for axis_pins in found:
        lines += pin_details(axis_pins)
    return lines


def pin_details(found: AxisPins) -> list[str]:
    """One axis: the break under each value of each other setting, then the suggestion."""
    title = escape(axis_title(found.axis))
    lines = [f"**Across {title}**: {found.differing} of {found.compared} outputs differ.", ""]
    if not found.options:
        return lines + ["No other setting was varied in these results, so none can be "
                        "suggested.", ""]
    rows = [[pin_text(option.pins), f"{option.differing} of {option.compared}",
             str(option.covered), pin_effect(found, option)] for option in found.options]
    lines += [table(["with", "outputs that differ", f"of the {found.differing} that break, "
                     "compared", "effect"], rows), ""]
    best = found.best()
    if best is None:
        shrinking = any(option.helps() for option in found.options)
        lines += ["Values that shrink it were compared on too few of its breaking outputs to "
                  "be suggested." if shrinking else
                  "No setting varied in these results removes or shrinks this break.", ""]
        return lines
    text = (f"Suggested: pin {pin_text(best.pins, ' and ')}; then {best.differing} of "
            f"{best.compared} outputs differ across {title} ({found.differing} of "
            f"{found.compared} without).")
    if found.still_differing:
        text += " Still differing: " + short_list(
            f"{scenario}: {output}" for scenario, output in found.still_differing) + "."
    return lines + [text, ""]


def anchor(axis: str) -> str:
    return "across-" + axis_title(axis).replace(" ", "-").lower()  # GitHub keeps underscores


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


def axis_page_name(axis: str) -> str:
    """'setting:cpu_capability' -> 'across-cpu_capability.md'."""
    return anchor(axis) + ".md"


def axis_section(axis_table: AxisTable, pages: dict[str, str] | None = None) -> list[str]:
    """The axis' table in the report, or (long, and `pages` given) on a page of its own
    with a summary and a link left in the report."""
    breaking = axis_table.breaking()
    body = axis_body(axis_table)
    title = axis_title(axis_table.axis)
    if pages is None or len(breaking) <= PAGE_FROM:
        return [f"## Across {escape(title)}", ""] + body
    name = axis_page_name(axis_table.axis)
    pages[name] = "\n".join([f"# Across {escape(title)}", "",
                             "[Back to the report](README.md)", ""] + body).rstrip() + "\n"
    families = sorted({scenario.split(".", 1)[0] for scenario, _ in breaking})
    return [f"## Across {escape(title)}", "",
            f"{len(breaking)} of {len(axis_table.cells)} outputs differ from their value at "
            f"**{escape(value_label(axis_table.axis, axis_table.reference))}**, in the families "
            f"{short_list(families, 12)}: "
            f"the table is on its own page, [{name}]({name}).", ""]


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


def context_label(torch: Any, device: Any, settings: Iterable[tuple[str, Any]],
                  varied: Iterable[str] = ()) -> str:
    """'torch 2.14.1 cpu threads=2': where a cell was, its settings by column name.

    Every row records every setting; a label names those that vary in the results
    (`varied`, columns) and those not at their unset value, not the dozen nobody touched.
    """
    parts = [f"torch {torch}", str(device)]
    varied = set(varied)
    for column, value in settings:
        name = column[len(SETTING_PREFIX):]
        setting = SETTINGS.get(name)
        unset = setting.default if setting is not None else None
        if value != "n/a" and (column in varied or value != unset):
            parts.append(f"{name}={value_label(column, value)}")
    return " ".join(parts)


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
                         escape(key[1]), cell_text(cell, False).replace("**differs**", "changed")])
    lines.append("")
    if rows:
        lines += [table(["release", "scenario", "output", "how far"], rows), ""]
    return lines


def references_section(files: list[ResultsFile], result: Comparison) -> list[str]:
    """Do published values (a tutorial's printed tensor) still come out, and where?"""
    references: dict[tuple[str, str], dict[str, Any]] = {}
    for item in files:
        for scenario, outputs in (item.header.get("references") or {}).items():
            for output, reference in outputs.items():
                references[(scenario, output)] = reference
    if not references:
        return []
    lines = ["## Published reference values", "",
             "Values printed in a public source, compared at their printed precision.", ""]
    rows = []
    data = result.data
    for (scenario, output), reference in sorted(references.items()):
        found = data[(data["scenario"] == scenario) & (data["output"] == output)
                     & (data["status"] == "ok")]
        good, bad = set(), set()
        for _, record in found.iterrows():
            label = f"torch {record[TORCH]} {record[DEVICE]}"
            (good if reproduces(record["sample"], reference) else bad).add(label)
        rows.append([escape(scenario), escape(output), escape(reference.get("source", "")),
                     short_list(good) or "none", short_list(bad) or "none"])
    return lines + [table(["scenario", "output", "source", "reproduces in",
                           "does not reproduce in"], rows), ""]


def reproduces(sample_json: Any, reference: dict[str, Any]) -> bool:
    """True when the output, rounded as printed, equals the published values."""
    if not isinstance(sample_json, dict) or sample_json.get("index") is not None:
        return False
    kept = values(Sample.from_json(sample_json))
    printed = np.asarray(reference.get("values", []), dtype=np.float64).reshape(-1)
    if kept is None or kept.shape != printed.shape:
        return False
    tolerance = 0.5 * 10.0 ** -int(reference.get("decimals", 4)) + 1e-12
    return bool(np.all(np.abs(kept - printed) <= tolerance))


def conflicts_section(result: Comparison) -> list[str]:
    if result.conflicts is None or result.conflicts.empty:
        return []
    rows = [[escape(record.env_id), escape(record.scenario), escape(record.output),
             str(record.digests), short_list(Path(f).name for f in record.files)]
            for record in result.conflicts.itertuples(index=False)]
    return ["## Conflicting results", "",
            "The same environment reported different digests for the same cell in different "
            "files: one of them is stale, or something that changes results is not recorded "
            "in the environment. These cells are compared with every digest they have.", "",
            table(["env-id", "scenario", "output", "digests", "files"], rows), ""]


def nondeterministic_section(result: Comparison) -> list[str]:
    lines = ["## Nondeterministic run to run", ""]
    data = result.nondeterministic
    if data.empty:
        return lines + ["Every output repeated bit for bit between two runs in the same "
                        "process.", ""]
    lines += ["The same cell gave different bits in two runs in one process (all RNG states "
              "scrambled in between): the scenario does not control its randomness, or an op "
              "is nondeterministic on that setup.", ""]
    settings = [c for c in data.columns if c.startswith(SETTING_PREFIX)]
    where: dict[tuple[str, str], set[str]] = defaultdict(set)
    columns = [data[column].to_numpy(dtype=object)
               for column in ("scenario", "output", TORCH, DEVICE, *settings)]
    for scenario, output, torch, device, *chosen in zip(*columns):
        where[(scenario, output)].add(context_label(torch, device, zip(settings, chosen),
                                                    result.axes))
    rows = []
    for (scenario, output), labels in sorted(where.items()):
        rows.append([escape(scenario), escape(output), str(len(labels)),
                     short_list(labels, 3)])
    return lines + [table(["scenario", "output", "setups", "where"], rows), ""]


def problems_section(result: Comparison) -> list[str]:
    lines = ["## Errors and unavailable cells", ""]
    data = result.problems
    if data.empty:
        return lines + ["None.", ""]
    rows = []
    keys = ["status", "error", DEVICE, TORCH]
    for (status, error, device, torch), group in data.fillna({"error": ""}).groupby(
            keys, sort=False, observed=True):
        rows.append([status, escape(error), escape(device), escape(torch),
                     str(group["scenario"].nunique()), short_list(group["scenario"], 4)])
    rows.sort(key=lambda row: (row[0], row[2], row[3], row[1]))
    return lines + [table(["status", "reason", "device", "torch", "scenarios", "which"], rows),
                    ""]


def render(files: list[ResultsFile], result: Comparison | None = None,
           heatmap: str | None = None, changelog: str | None = None,
           pages: dict[str, str] | None = None) -> str:
    """The whole report as markdown text (`heatmap`, `changelog`: file names to link).

    With `pages` (a dict to fill), long axis tables go to pages of their own.
    """
    result = result if result is not None else compare(files)
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
    lines += environments_section(files)
    lines += machines_section(files)
    lines += assumed_section(result)
    lines += summary_section(result)
    if heatmap:
        lines += [f"![Share of each scenario's outputs identical to the reference, per axis "
                  f"value]({heatmap})", ""]
    lines += pin_section(result)
    lines += conflicts_section(result)
    lines += family_section(result)
    lines += references_section(files, result)
    lines += changelog_section(result)
    for axis in sorted(result.axes, key=_axis_order):
        lines += axis_section(result.tables[axis], pages)
    lines += nondeterministic_section(result)
    lines += problems_section(result)
    return "\n".join(lines).rstrip() + "\n"


def _axis_order(axis: str) -> tuple[int, str]:
    return ({TORCH: 0, DEVICE: 1, PLATFORM: 2}.get(axis, 3), axis)


def write_report(paths: list[str], out: Path) -> Path:
    """Read every results file under `paths` and write `out/README.md`."""
    from audit.publish import heatmap

    parts: list[pd.DataFrame] = []  # framed file by file: rows are freed as they are read
    files = read_all(paths, consume=lambda item: parts.append(file_frame(item)))
    files.sort(key=lambda item: str(item.path))
    result = compare(files, join_frames(parts))
    out.mkdir(parents=True, exist_ok=True)
    drawn = heatmap.draw(result, out) if heatmap.available() else heatmap.not_drawn()
    if drawn is None:  # an image of earlier results must not sit beside this report
        (out / heatmap.FILE_NAME).unlink(missing_ok=True)
    changelog = "changelog.md" if (out / "changelog.md").exists() else None
    pages: dict[str, str] = {}
    text = render(files, result, drawn.name if drawn else None, changelog, pages)
    for stale in out.glob("across-*.md"):  # pages of an earlier report that has none now
        if stale.name not in pages:
            stale.unlink()
    for name, page in sorted(pages.items()):
        write_text(out / name, page)
    return write_text(out / "README.md", text)

