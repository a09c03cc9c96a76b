"""Markdown report of a comparison: summary first, then one table per axis, then problems.

Reports are stable text: the same results give the same bytes (rows sorted, no timestamps),
so a published report diffs cleanly in git. Every name that came from a results file is
escaped, since a scenario name is user input.

The page is `SECTIONS`, in order, each a named step that returns its lines; one module per
region of the page writes them (`overview`, `environments`, `pins`, `axes`, `references`,
`problems`), with the markdown helpers of `audit.publish.markdown`. Their names are
importable from here too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from audit.judge.compare import Comparison, compare, file_frame, join_frames
from audit.publish.markdown import LIST_LIMIT, escape, percent, short_list, table
from audit.publish.report.axes import (
    anchor,
    axes_sections,
    axis_body,
    axis_page_name,
    axis_section,
    cell_text,
    changed_text,
    changelog_section,
)
from audit.publish.report.environments import (
    assumed_section,
    environments_section,
    machine_facts,
    machines_section,
)
from audit.publish.report.overview import (
    family_section,
    heatmap_section,
    summary_section,
    title_section,
)
from audit.publish.report.pins import pin_details, pin_effect, pin_section, pin_text
from audit.publish.report.problems import (
    conflicts_section,
    context_label,
    nondeterministic_section,
    problems_section,
)
from audit.publish.report.references import references_section, reproduces
from audit.store.atomic import write_text
from audit.store.results import ResultsFile, read_all

__all__ = [
    "LIST_LIMIT", "PAGE_FROM", "SECTIONS", "Page", "Section", "anchor", "assumed_section",
    "axes_sections", "axis_body", "axis_page_name", "axis_section", "cell_text",
    "changed_text", "changelog_section", "conflicts_section", "context_label",
    "environments_section", "escape", "family_section", "heatmap_section", "machine_facts",
    "machines_section", "nondeterministic_section", "percent", "pin_details", "pin_effect",
    "pin_section", "pin_text", "problems_section", "references_section", "render",
    "reproduces", "short_list", "summary_section", "table", "title_section", "write_report",
]

PAGE_FROM = 40  # an axis with more differing outputs gets a page of its own


@dataclass(frozen=True)
class Page:
    """What the sections of one report are written from."""

    files: list[ResultsFile]
    result: Comparison
    heatmap: str | None  # the heatmap's file name, to show
    changelog: str | None  # the release changelog's file name, to link
    pages: dict[str, str] | None  # given: filled with the axis tables too long for the page
    page_from: int  # see PAGE_FROM


@dataclass(frozen=True)
class Section:
    """One region of the page: its name, and what writes its lines."""

    name: str
    lines: Callable[[Page], list[str]]


SECTIONS: tuple[Section, ...] = (
    Section("title", lambda page: title_section(page.files, page.changelog)),
    Section("environments", lambda page: environments_section(page.files)),
    Section("machines", lambda page: machines_section(page.files)),
    Section("settings not recorded", lambda page: assumed_section(page.result)),
    Section("summary", lambda page: summary_section(page.result)),
    Section("heatmap", lambda page: heatmap_section(page.heatmap)),
    Section("what to pin", lambda page: pin_section(page.result)),
    Section("conflicting results", lambda page: conflicts_section(page.result)),
    Section("by scenario family", lambda page: family_section(page.result)),
    Section("published reference values", lambda page: references_section(page.files,
                                                                           page.result)),
    Section("changelog across torch versions", lambda page: changelog_section(page.result)),
    Section("across each axis", lambda page: axes_sections(page.result, page.pages,
                                                           page.page_from)),
    Section("nondeterministic run to run", lambda page: nondeterministic_section(page.result)),
    Section("errors and unavailable cells", lambda page: problems_section(page.result)),
)


def render(files: list[ResultsFile], result: Comparison | None = None,
           heatmap: str | None = None, changelog: str | None = None,
           pages: dict[str, str] | None = None) -> str:
    """The whole report as markdown text (`heatmap`, `changelog`: file names to link).

    With `pages` (a dict to fill), long axis tables go to pages of their own.
    """
    result = result if result is not None else compare(files)
    page = Page(files, result, heatmap, changelog, pages, PAGE_FROM)
    lines = [line for section in SECTIONS for line in section.lines(page)]
    return "\n".join(lines).rstrip() + "\n"


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
