"""Markdown helpers of the published pages: escaping, tables, short lists.

Every name that came from a results file goes through `escape`, since a scenario name is
user input; tables are GitHub-flavoured and never parse cells as numbers.
"""

from __future__ import annotations

import html
from typing import Any, Iterable

from tabulate import tabulate

LIST_LIMIT = 6  # names shown before "and N more"


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
