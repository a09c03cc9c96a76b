"""A run's journals: its rows (and traces) written as they come, beside the results to be.

Rows are journalled as they arrive (a hidden `.partial` file, fsync'ed per unit) and the
results file appears only at the end, by an atomic rename. A run killed half-way leaves no
visible results file; `--resume` reads the journal and runs only what is missing. With
`--trace`, each traced unit is one line of a second journal (audit.trace.record.journal_line).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, TextIO

from audit.store.names import journal_path, trace_journal_path
from audit.store.results import ROW, dumps


def read_journal(path: Path) -> list[dict[str, Any]]:
    """Complete rows of an interrupted run; a torn last line is dropped."""
    rows = []
    if not path.exists():
        return rows
    with open(path, encoding="utf-8", errors="replace") as stream:
        for line in stream:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("record") == ROW:
                rows.append(record)
    return rows


class Journal:
    """The journals of the run that writes `results`; open them with `with`."""

    def __init__(self, results: Path, traces: bool) -> None:
        self.path = journal_path(results)
        self.traces_path = trace_journal_path(results)
        self.traces = traces  # whether traced units are journalled too (--trace)
        self.rows_stream: TextIO | None = None
        self.traces_stream: TextIO | None = None

    def previous(self) -> list[dict[str, Any]]:
        """The rows an interrupted run left (`--resume`)."""
        return read_journal(self.path)

    def remove(self) -> None:
        """Both journals gone: a fresh start, or the results file written."""
        self.path.unlink(missing_ok=True)
        self.traces_path.unlink(missing_ok=True)

    def __enter__(self) -> Journal:
        self.rows_stream = open(self.path, "a", encoding="utf-8", newline="\n")  # noqa: SIM115
        if self.traces:
            self.traces_stream = open(self.traces_path, "a", encoding="utf-8",  # noqa: SIM115
                                      newline="\n")
        return self

    def __exit__(self, *_: Any) -> None:
        for stream in (self.traces_stream, self.rows_stream):
            if stream is not None:
                stream.close()
        self.rows_stream = self.traces_stream = None

    def write_rows(self, rows: list[dict[str, Any]]) -> None:
        """Rows of finished units, on disk before the next unit's (a crash keeps them)."""
        assert self.rows_stream is not None, "the journal is not open"
        for row in rows:
            self.rows_stream.write(dumps(row) + "\n")
        self.rows_stream.flush()
        os.fsync(self.rows_stream.fileno())

    def write_trace(self, key: str, trace: dict[str, Any]) -> None:
        from audit.trace.files import journal_line

        assert self.traces_stream is not None, "the traces journal is not open"
        self.traces_stream.write(journal_line(key, trace) + "\n")
        self.traces_stream.flush()

    def traced_lines(self) -> dict[str, str]:
        """{trace key: line} of the units traced so far (none without a traces journal)."""
        from audit.trace.files import trace_lines

        return trace_lines(self.traces_path) if self.traces_path.exists() else {}
