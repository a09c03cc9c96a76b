"""A run's journals: its rows (and traces) written as they come, beside the results to be.

The rows journal (a hidden `.partial` file) starts with a header line saying which run
wrote it (`run_identity`: selection, settings, devices, environment, ...); then each
finished unit is one line holding its key and all its rows, fsync'ed before the next. A
line is whole or unreadable, so a unit cut off mid-write (a full disk, SIGKILL) is never
half kept: `--resume` discards it (named on stderr) and runs it again, and refuses to
resume a journal another run wrote. The results file appears only at the end, by an atomic
rename. With `--trace`, each traced unit is one line of a second journal
(audit.trace.files.journal_line).
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from audit.errors import UserError
from audit.store.names import journal_path, trace_journal_path
from audit.store.results import ROW, dumps, unit_key

HEADER = "journal"  # the first line's record: which run wrote the journal
UNIT = "unit"  # one finished unit: its key and all its rows
_KEY = re.compile(r'^\{"key":("(?:[^"\\]|\\.)*")')


def row_unit_key(row: dict[str, Any]) -> str:
    """The key of the unit a row came from, by the settings it requested (for --resume)."""
    requested = row["requested"] if row.get("requested") is not None else row["settings"]
    return unit_key(row["scenario"], row["device"], requested)


@dataclass
class Previous:
    """What a journal holds: its header's run, whole units' lines and rows, torn units."""

    run: Any = None  # the header's run identity; None without a header
    header: bool = False
    lines: list[str] = field(default_factory=list)  # whole unit lines, as written
    rows: list[dict[str, Any]] = field(default_factory=list)
    torn: list[str] = field(default_factory=list)  # what names each discarded line
    legacy: int = 0  # row lines of an older journal format (no unit records)


def _torn_name(line: str, number: int) -> str:
    found = _KEY.match(line)
    if found:
        try:
            return str(json.loads(found.group(1)))
        except ValueError:
            pass
    return f"line {number}"


def read_previous(path: Path) -> Previous:
    """Every whole unit of a journal; a line that is not whole JSON is named in `torn`."""
    found = Previous()
    if not path.exists():
        return found
    with open(path, encoding="utf-8", errors="replace") as stream:
        for number, line in enumerate(stream, start=1):
            text = line.rstrip("\n")
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except ValueError:
                found.torn.append(_torn_name(text, number))
                continue
            kind = record.get("record") if isinstance(record, dict) else None
            if kind == HEADER and number == 1:
                found.header, found.run = True, record.get("run")
            elif kind == UNIT and isinstance(record.get("rows"), list):
                found.lines.append(text)
                found.rows += [row for row in record["rows"] if isinstance(row, dict)]
            elif kind == ROW:
                found.legacy += 1
            else:
                found.torn.append(_torn_name(text, number))
    return found


def read_journal(path: Path) -> list[dict[str, Any]]:
    """The rows of the whole units of an interrupted run; torn units are left out."""
    return read_previous(path).rows


def difference(old: Any, new: Any) -> str:
    """The first field in which two run identities differ, in words (short)."""
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return "no run recorded in the journal"
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            return (f"{key}: {_short(old.get(key, 'absent'))} in the journal, "
                    f"{_short(new.get(key, 'absent'))} now")
    return "nothing"


def _short(value: Any, limit: int = 100) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Journal:
    """The journals of the run that writes `results`; open them with `with`.

    `run` identifies the run (`run_identity`): written in the header of a new journal and
    compared with that of the journal `resume` reads.
    """

    def __init__(self, results: Path, traces: bool, run: dict[str, Any] | None = None) -> None:
        self.path = journal_path(results)
        self.traces_path = trace_journal_path(results)
        self.traces = traces  # whether traced units are journalled too (--trace)
        self.run = json.loads(json.dumps(run or {}, sort_keys=True))  # as read back
        self.rows_stream: TextIO | None = None
        self.traces_stream: TextIO | None = None

    def previous(self) -> list[dict[str, Any]]:
        """The rows an interrupted run left (`--resume`)."""
        return read_journal(self.path)

    def resume(self) -> list[dict[str, Any]]:
        """The rows of the whole units an interrupted run of this same run left; the
        journal is rewritten to hold just them. Refuses (UserError) a journal another run
        (or an older repro-audit) wrote; names the torn units it discards on stderr."""
        found = read_previous(self.path)
        if not found.lines and not found.legacy:
            return []  # nothing finished: start afresh
        if not found.header or found.run != self.run:
            why = ("it has no run header (an older repro-audit wrote it)" if not found.header
                   else f"it was written by another run ({difference(found.run, self.run)})")
            raise UserError(f"--resume: cannot resume {self.path}: {why}; run without "
                            "--resume to start afresh")
        if found.torn:
            names = ", ".join(found.torn[:5]) + (" ..." if len(found.torn) > 5 else "")
            print(f"repro-audit: --resume: {len(found.torn)} unit(s) of {self.path.name} "
                  f"were cut off mid-write, discarded and run again: {names}",
                  file=sys.stderr)
        temporary = self.path.with_name(self.path.name + ".tmp")
        with open(temporary, "w", encoding="utf-8", newline="\n") as stream:
            stream.write(self._header() + "".join(line + "\n" for line in found.lines))
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, self.path)
        return found.rows

    def _header(self) -> str:
        return dumps({"record": HEADER, "run": self.run}) + "\n"

    def remove(self) -> None:
        """Both journals gone: a fresh start, or the results file written."""
        self.path.unlink(missing_ok=True)
        self.traces_path.unlink(missing_ok=True)

    def __enter__(self) -> Journal:
        self.rows_stream = open(self.path, "a", encoding="utf-8", newline="\n")  # noqa: SIM115
        if self.rows_stream.tell() == 0:
            self.rows_stream.write(self._header())
            self._sync(self.rows_stream)
        if self.traces:
            _end_line(self.traces_path)
            self.traces_stream = open(self.traces_path, "a", encoding="utf-8",  # noqa: SIM115
                                      newline="\n")
        return self

    def __exit__(self, *_: Any) -> None:
        for stream in (self.traces_stream, self.rows_stream):
            if stream is not None:
                stream.close()
        self.rows_stream = self.traces_stream = None

    def write_rows(self, rows: list[dict[str, Any]]) -> None:
        """Rows of finished units, one line per unit, on disk before the next unit's (a
        crash keeps them; a line cut off is discarded whole on --resume). Rows that come
        after the journal is closed (an interrupted run) are not kept: their units run
        again on --resume."""
        stream = self.rows_stream
        if stream is None or not rows:
            return
        units: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            units.setdefault(row_unit_key(row), []).append(row)
        stream.write("".join(dumps({"key": key, "record": UNIT, "rows": unit}) + "\n"
                             for key, unit in units.items()))
        self._sync(stream)

    @staticmethod
    def _sync(stream: TextIO) -> None:
        stream.flush()
        os.fsync(stream.fileno())

    def write_trace(self, key: str, trace: dict[str, Any]) -> None:
        from audit.trace.files import journal_line

        stream = self.traces_stream
        if stream is None:
            return  # closed: an interrupted run; the unit is traced again on --resume
        stream.write(journal_line(key, trace) + "\n")
        stream.flush()

    def traced_lines(self) -> dict[str, str]:
        """{trace key: line} of the units traced so far (none without a traces journal)."""
        from audit.trace.files import trace_lines

        return trace_lines(self.traces_path) if self.traces_path.exists() else {}


def _end_line(path: Path) -> None:
    """A torn last line of a journal ended, so the next line appended is one of its own
    rather than glued to the torn one."""
    if not path.exists():
        return
    with open(path, "rb+") as stream:
        if stream.seek(0, os.SEEK_END) == 0:
            return
        stream.seek(-1, os.SEEK_END)
        if stream.read(1) != b"\n":
            stream.write(b"\n")
