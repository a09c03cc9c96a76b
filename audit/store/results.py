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
import json
import sys
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator, Optional

try:  # msgspec, where installed (the `report` extra): parses, and type-checks rows, in C
    import msgspec
except ImportError:  # pragma: no cover - the standard library does the same job, slower
    msgspec = None

from audit.errors import UserError
from audit.store.schema import (
    COLUMN_TYPES,
    FLAG,
    HEADER,
    OBJECT,
    OPTIONAL_KEYS,
    ROW,
    ROW_COLUMN_KEYS,
    ROW_KEYS,
    ROW_TYPES,
    SCHEMA,
    STATUSES,
    TEXT,
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

_loads: Callable[[bytes], Any] = msgspec.json.decode if msgspec is not None else json.loads

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


_STATUS_SET = frozenset(STATUSES)


def _typed_row_decoder() -> Any:
    """A msgspec decoder of rows into structs of ROW_COLUMN_KEYS (then `record`), checking
    in C the very types `ROW_TYPES` names; None without msgspec.

    A report reads rows this way: faster than parsing dicts and checking them after.
    """
    if msgspec is None:
        return None
    annotation = {TEXT: Optional[str], OBJECT: Optional[dict], FLAG: Optional[bool]}
    fields = [(key, Optional[str], None) for key in ("scenario", "status")]
    fields += [(key, annotation[kinds], None) for key, kinds in ROW_TYPES]
    fields.append(("record", Optional[str], None))
    return msgspec.json.Decoder(msgspec.defstruct("TypedRow", fields, gc=False))


_TYPED_ROWS = _typed_row_decoder()


def row_columns(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """The rows' values by key (ROW_COLUMN_KEYS), None where a row lacks one."""
    return {key: [row.get(key) for row in rows] for key in ROW_COLUMN_KEYS}


def _row_problem(record: dict[str, Any]) -> str | None:
    """Why a row cannot be used, or None (`_RowChecker` asks only about unusual rows)."""
    status, scenario = record.get("status"), record.get("scenario")
    if not isinstance(status, str) or status not in STATUSES:
        return f"unknown status {status!r}"
    if not isinstance(scenario, str) or not scenario:
        return f"no scenario name ({scenario!r})"
    for key, kinds in ROW_TYPES:
        if type(record.get(key)) not in kinds:
            return f"a row whose {key!r} is a {type(record.get(key)).__name__}"
    return None


class _RowChecker:
    """Accepts a parsed row or says why not, and collects the good rows' columns.

    A million rows pass through here, so the usual case is cheap: one C call takes the
    row's values (`itemgetter`), and the tuple of their types is checked once per
    distinct tuple (a file has a handful). `_row_problem` says why for the rest.
    """

    def __init__(self, keep_rows: bool = True) -> None:
        self.keep_rows = keep_rows  # False: the columns only (a report's way)
        self.rows: list[dict[str, Any]] = []
        self.values: list[tuple[Any, ...]] = []
        self._get = itemgetter(*ROW_COLUMN_KEYS[:-1])  # all but "stored", mostly absent
        self._signatures: dict[tuple[type, ...], bool] = {}

    def add(self, record: dict[str, Any]) -> str | None:
        """Keep the row, or return why it cannot be used."""
        try:
            values = self._get(record) + (record.get("stored"),)
        except KeyError:  # a key left out: None, as `record.get` would say
            values = tuple(record.get(key) for key in ROW_COLUMN_KEYS)
        signature = tuple(map(type, values))
        typed = self._signatures.get(signature)
        if typed is None:
            typed = self._signatures[signature] = all(
                kind in kinds for kind, kinds in zip(signature, COLUMN_TYPES))
        if not (typed and _named_and_known(values)):
            problem = _row_problem(record)
            if problem:
                return problem
        if self.keep_rows:
            self.rows.append(record)
        self.values.append(values)
        return None

    def add_decoded(self, values: tuple[Any, ...]) -> bool:
        """Keep the values of a row msgspec decoded (its types checked there) when it is
        usable; False leaves the line to `add`, which says why not. Columns only."""
        if self.keep_rows or not _named_and_known(values):
            return False
        self.values.append(values)
        return True

    def columns(self) -> dict[str, list[Any]]:
        """The kept rows' values by key, samples shared (see `_share_samples`)."""
        if not self.values:
            return {key: [] for key in ROW_COLUMN_KEYS}
        columns = {key: list(column) for key, column in zip(ROW_COLUMN_KEYS, zip(*self.values))}
        _share_samples(self.rows if self.keep_rows else None, columns["digest"],
                       columns["sample"])
        return columns


def _named_and_known(values: tuple[Any, ...]) -> bool:
    """Of a row's values in ROW_COLUMN_KEYS order, of the right types: a scenario name and
    a known status (the two checks on values, not types, of `_row_problem`)."""
    return bool(values[0]) and values[1] in _STATUS_SET


def _share_samples(rows: list[dict[str, Any]] | None, digests: list[Any],
                   samples: list[Any]) -> None:
    """One sample object per digest, given to every row (if kept) of that digest."""
    by_digest: dict[str, dict[str, Any]] = {}
    for position, (value_digest, sample) in enumerate(zip(digests, samples)):
        if not value_digest:
            continue
        kept = by_digest.setdefault(value_digest, sample) if sample is not None else (
            by_digest.get(value_digest))
        if kept is not sample:
            samples[position] = kept
            if rows is not None:
                rows[position]["sample"] = kept


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
    header: dict[str, Any] | None = None
    result = ResultsFile(path=path, header={})
    checker = _RowChecker(keep_rows)
    problems: list[tuple[int, str]] = []
    truncated = False
    typed = None if keep_rows else _TYPED_ROWS
    astuple = msgspec.structs.astuple if typed is not None else None
    try:
        with gc_paused(), open_lines(path) as stream:
            for number, line in enumerate(stream, start=1):
                if typed is not None and header is not None:
                    try:
                        values = astuple(typed.decode(line))
                    except (ValueError, RecursionError):
                        values = None
                    # ROW_COLUMN_KEYS' values, then `record`
                    if (values is not None and values[-1] == ROW
                            and checker.add_decoded(values[:-1])):
                        continue
                try:
                    record = _loads(line)
                except (ValueError, RecursionError):
                    if line.isspace():
                        continue
                    record = _parse_first_line(line) if number == 1 else None
                    if record is None:
                        problems.append((number, "not valid JSON (truncated or corrupt line)"))
                        continue
                if type(record) is dict and header is not None and record.get("record") == ROW:
                    problem = checker.add(record)
                    if problem:
                        problems.append((number, problem))
                    continue
                if not isinstance(record, dict):
                    problems.append((number, "not a JSON object"))
                elif record.get("record") == ROW:
                    problems.append((number, "a row before the file's header"))
                elif record.get("record") != HEADER:
                    problems.append((number, "not a repro-audit record"))
                elif header is not None:
                    problems.append((number, "a second header"))
                elif _newer_schema(record):
                    result.unreadable = (f"schema version {record['schema']} (line {number}) is "
                                         f"newer than this reader's {SCHEMA}: upgrade "
                                         "repro-audit")
                    return result
                elif (problem := _header_problem(record)) is not None:
                    problems.append((number, problem))
                else:
                    header = result.header = record
    except EOFError:  # a truncated .gz: the rows before the cut are kept
        truncated = True
    except OSError as error:
        result.unreadable = f"cannot read it: {error.strerror or error}"
        return result
    with gc_paused():  # the rows are alive; transposing makes 13 objects per row
        result.rows, result.columns = checker.rows, checker.columns()
    result.skipped = [f"{path}:{number}: {problem}" for number, problem in problems]
    if truncated:
        result.skipped.append(f"{path}: compressed file is truncated; later rows are lost")
    if header is None:
        result.unreadable = "no repro-audit header (not a repro-audit results file?)"
    return result


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

