"""Results files, read defensively: a bad line costs only itself, never the whole file.

The reader skips (and names, as file:line) a corrupt line, a row of the wrong types or an
unknown status, and says in one line why a whole file cannot be read (no header, a newer
schema). This module is the format's front door: the records (`audit.store.schema`) and
the writer (`audit.store.writer`) are importable from here too. It imports neither torch
nor pandas: the nox host and the report side use it too.
"""

from __future__ import annotations

import contextlib
import gc
import glob
import gzip
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator

from audit.errors import UserError
from audit.store.row_checks import _TYPED_ROWS, _RowChecker, row_columns, typed_values
from audit.store.row_checks import loads as _loads
from audit.store.schema import (
    HEADER,
    OPTIONAL_KEYS,
    ROW,
    ROW_COLUMN_KEYS,
    ROW_KEYS,
    SCHEMA,
    STATUSES,
    make_header,
    make_row,
    unit_key,
)
from audit.store.writer import Compaction, dumps, write_atomic, write_unavailable

__all__ = [  # what callers import from here: the reader's names, the format's, the writer's
    "BYTE_ORDER_MARK", "HEADER", "OPTIONAL_KEYS", "ROW", "ROW_COLUMN_KEYS", "ROW_KEYS",
    "SCHEMA", "STATUSES", "TRACES_SUFFIX", "Compaction", "ResultsFile", "dumps", "expand",
    "gc_paused", "make_header", "make_row", "open_lines", "read_all", "read_file",
    "row_columns", "unit_key", "write_atomic", "write_unavailable",
]


TRACES_SUFFIX = ".traces.jsonl.gz"  # op traces beside a results file (audit.store.traces)
BYTE_ORDER_MARK = b"\xef\xbb\xbf"


@dataclass
class ResultsFile:
    """What one file held: its header and the rows that could be read."""

    path: Path
    header: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "file:line: why"
    unreadable: str | None = None  # why the whole file was skipped, None when it was read
    # The rows' values by key (ROW_COLUMN_KEYS), as the reader checked them: a report
    # frames a file from these instead of walking its rows again. Dropped with the rows.
    columns: dict[str, list[Any]] | None = None


def _header_problem(record: dict[str, Any]) -> str | None:
    schema = record.get("schema")
    if isinstance(schema, bool) or not isinstance(schema, int) or schema < 1:
        return f"a header with no valid schema version ({schema!r})"
    if not isinstance(record.get("environment"), dict):
        return "a header without an environment object"
    if not isinstance(record.get("env_id"), str) or not record["env_id"]:
        return "a header without an env-id"
    return None


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off while a file is parsed.

    Parsed JSON holds no reference cycles, but every retained row is a container the
    collector would walk again and again as rows pile up, so a large file parses several
    times slower with it on.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def open_lines(path: Path) -> IO[bytes]:
    """A results file as binary lines (split at b"\n" only), `.gz` decompressed.

    The JSON parser decodes the bytes itself: no separate decoding pass, and a line that
    is not valid UTF-8 is reported as corrupt instead of read with replaced characters.
    """
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")
    return open(path, "rb")


def _read(path: Path, keep_rows: bool = True) -> ResultsFile:
    """Read one file; what could not be used is in `skipped` / `unreadable`, nothing raises.

    Lines are parsed one by one: a bad line costs only itself. With `keep_rows` False (a
    report, which needs only `columns`) rows are decoded as typed structs where msgspec
    is installed; a line that does not decode as a usable row takes the general path.
    """
    result = ResultsFile(path=path, header={})
    reader = _LineReader(result, _RowChecker(keep_rows), None if keep_rows else _TYPED_ROWS)
    cut = None
    try:
        with gc_paused(), open_lines(path) as stream:
            for number, line in enumerate(stream, start=1):
                if not reader.line(number, line):
                    return result
    except EOFError:  # a truncated .gz: the rows before the cut are kept
        cut = "compressed file is truncated; later rows are lost"
    except zlib.error as error:  # damaged compressed data: likewise
        cut = f"compressed data is corrupt ({error}); later rows are lost"
    except OSError as error:
        result.unreadable = f"cannot read it: {error.strerror or error}"
        return result
    checker = reader.checker
    with gc_paused():  # the rows are alive; transposing makes 13 objects per row
        result.rows, result.columns = checker.rows, checker.columns()
    result.skipped = [f"{path}:{number}: {problem}" for number, problem in reader.problems]
    if cut:
        result.skipped.append(f"{path}: {cut}")
    if reader.header is None:
        result.unreadable = cut or "no repro-audit header (not a repro-audit results file?)"
    return result


class _LineReader:
    """The lines of one results file, one at a time: the header first, then rows."""

    def __init__(self, result: ResultsFile, checker: _RowChecker, typed: Any) -> None:
        self.result, self.checker, self.typed = result, checker, typed
        self.header: dict[str, Any] | None = None
        self.problems: list[tuple[int, str]] = []

    def line(self, number: int, line: bytes) -> bool:
        """Take one line; False where the file cannot be read any further (newer schema)."""
        if self.typed is not None and self.header is not None and self._typed_row(line):
            return True
        try:
            record = _loads(line)
        except (ValueError, RecursionError):
            if line.isspace():
                return True
            record = _parse_first_line(line) if number == 1 else None
            if record is None:
                self.problems.append((number, "not valid JSON (truncated or corrupt line)"))
                return True
        if type(record) is dict and self.header is not None and record.get("record") == ROW:
            problem = self.checker.add(record)
            if problem:
                self.problems.append((number, problem))
            return True
        return self._not_a_row(number, record)

    def _typed_row(self, line: bytes) -> bool:
        """The fast path: a row decoded as a typed struct (ROW_COLUMN_KEYS, then `record`)."""
        values = typed_values(self.typed, line)
        return values is not None and values[-1] == ROW and self.checker.add_decoded(values[:-1])

    def _not_a_row(self, number: int, record: Any) -> bool:
        if not isinstance(record, dict):
            self.problems.append((number, "not a JSON object"))
        elif record.get("record") == ROW:
            self.problems.append((number, "a row before the file's header"))
        elif record.get("record") != HEADER:
            self.problems.append((number, "not a repro-audit record"))
        elif self.header is not None:
            self.problems.append((number, "a second header"))
        elif _newer_schema(record):
            self.result.unreadable = (f"schema version {record['schema']} (line {number}) is "
                                      f"newer than this reader's {SCHEMA}: upgrade repro-audit")
            return False
        elif (problem := _header_problem(record)) is not None:
            self.problems.append((number, problem))
        else:
            self.header = self.result.header = record
        return True


def _parse_first_line(line: bytes) -> Any:
    """Line 1 once more without the byte order mark an editor may have put there."""
    if not line.startswith(BYTE_ORDER_MARK):
        return None
    try:
        return _loads(line[len(BYTE_ORDER_MARK):])
    except (ValueError, RecursionError):
        return None


def _newer_schema(record: dict[str, Any]) -> bool:
    schema = record.get("schema")
    return isinstance(schema, int) and not isinstance(schema, bool) and schema > SCHEMA


def read_file(path: Path, warn: bool = True) -> ResultsFile | None:
    """Read one results file; corrupt or foreign lines are skipped with a file:line warning.

    Returns None (with one warning) when the file has no readable header at all, or a
    header of a newer schema than this reader knows.
    """
    result = _read(Path(path))
    if warn:
        _warn(result)
    return None if result.unreadable else result


def _warn(result: ResultsFile) -> None:
    if result.unreadable:  # one line for the file, not one per line of a foreign file
        print(f"warning: skipped {result.path}: {result.unreadable}", file=sys.stderr)
        return
    for message in result.skipped:
        print(f"warning: skipped {message}", file=sys.stderr)


def expand(paths: Iterable[str]) -> list[Path]:
    """Results files named by files, folders (searched recursively) and globs."""
    paths = list(paths)
    found: list[Path] = []
    for text in paths:
        matches = sorted(glob.glob(text, recursive=True)) if glob.has_magic(text) else [text]
        if not matches:
            raise UserError(f"{text}: no such file or folder")
        for match in matches:
            candidate = Path(match)
            if candidate.is_dir():
                found.extend(sorted(item for pattern in ("*.jsonl", "*.jsonl.gz")
                                    for item in candidate.rglob(pattern) if item.is_file()
                                    and not item.name.endswith(TRACES_SUFFIX)))
            elif candidate.is_file():
                found.append(candidate)
            else:
                raise UserError(f"{candidate}: no such file or folder")
    unique = list(dict.fromkeys(path.resolve() for path in found))
    if not unique:
        raise UserError(f"{', '.join(paths)}: no results files (*.jsonl) found")
    return unique


def read_all(paths: Iterable[str],
             consume: Callable[[ResultsFile], None] | None = None) -> list[ResultsFile]:
    """Every readable results file under `paths` (a UserError when none is readable).

    When none is readable the error alone says why (one line), without a warning per file.
    With `consume`, each readable file is handed over as soon as it is read, with its
    `columns` and no `rows`, and the columns are then dropped (headers kept): a large set
    of results never sits in memory at once.
    """
    paths = list(paths)
    results = []
    for path in expand(paths):
        item = _read(path, keep_rows=consume is None)
        if consume is not None and not item.unreadable:
            with gc_paused():  # the file's rows are all alive while it is consumed
                consume(item)
            item.rows, item.columns = [], None
        results.append(item)
    files = [item for item in results if not item.unreadable]
    if not files:
        first = results[0]
        more = f" (and {len(results) - 1} more files)" if len(results) > 1 else ""
        raise UserError(f"{', '.join(paths)}: no readable repro-audit results: "
                        f"{first.path}: {first.unreadable}{more}")
    for item in results:
        _warn(item)
    return files

