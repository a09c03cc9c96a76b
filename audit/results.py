"""Results files: JSON Lines, self-describing, written atomically, read defensively.

Line 1 is a header (schema version, the full environment, its env-id); every other line
is one row: one output of one scenario on one device under one settings combination.
Schema 2: a value's sample is written once, on the first row with its digest; later rows
with that digest carry `"sample": null` and the reader fills them in. Most of a row is its
sample and the same value recurs under many settings, so files are several times smaller
and faster to read. Schema 1 files (a sample on every row) read the same.
A file is written to a temporary name and renamed, so a reader never sees half a file.
The reader skips (and names, as file:line) a corrupt line, never the whole file. This
module imports neither torch nor pandas: the nox host and the report side use it too.
"""

from __future__ import annotations

import contextlib
import gc
import glob
import gzip
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator, Mapping

try:  # orjson, where installed (the `report` extra), parses results 3-5x faster
    from orjson import loads as _loads
except ImportError:  # pragma: no cover - the standard library does the same job, slower
    _loads = json.loads

from audit.atomic import atomic_text
from audit.errors import UserError

TRACES_SUFFIX = ".traces.jsonl.gz"  # op traces beside a results file (audit.trace)
SCHEMA = 2
HEADER = "repro-audit/header"
BYTE_ORDER_MARK = b"\xef\xbb\xbf"
ROW = "repro-audit/row"
STATUSES = ("ok", "error", "timeout", "crashed", "unavailable", "raises-when-deterministic")

# Keys every row carries (None where they do not apply).
ROW_KEYS = (
    "scenario", "output", "status", "digest", "repeatable", "device", "torch_version",
    "settings", "env_id", "error", "dtype", "shape", "kind", "sample",
)

# Keys a row may carry: run time, settings as requested, the stored full values' file name.
OPTIONAL_KEYS = ("seconds", "requested", "stored")


def make_row(**values: Any) -> dict[str, Any]:
    """A row with every key of the schema present, in schema order."""
    unknown = set(values) - set(ROW_KEYS) - set(OPTIONAL_KEYS)
    if unknown:
        raise ValueError(f"unknown row keys: {sorted(unknown)}")
    if values.get("status") not in STATUSES:
        raise ValueError(f"unknown status: {values.get('status')!r}")
    row: dict[str, Any] = {"record": ROW}
    for key in ROW_KEYS:
        row[key] = values.get(key)
    for key in OPTIONAL_KEYS:
        if key in values:
            row[key] = values[key]
    return row


def unit_key(scenario: str, device: str, settings: Mapping[str, Any]) -> str:
    """What identifies a unit (scenario, device, settings): for --resume and op traces."""
    return json.dumps([scenario, device, dict(settings)], sort_keys=True)


def make_header(environment: dict[str, Any], env_id: str, **extra: Any) -> dict[str, Any]:
    return {"record": HEADER, "schema": SCHEMA, "env_id": env_id, "environment": environment,
            **extra}


def dumps(record: dict[str, Any]) -> str:
    """One JSON line, keys sorted so identical rows are identical text."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), allow_nan=False)


class SampleSharing:
    """Schema 2's rule, row by row: a digest's sample stays on its first row only.

    The sample is a function of the value (dtype, shape and bytes, as is the digest), so
    the rows left without one lose nothing; the reader gives them the first row's.
    """

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        value_digest = row.get("digest")
        if value_digest and row.get("sample") is not None:
            if value_digest in self.seen:
                return {**row, "sample": None}
            self.seen.add(value_digest)
        return row


def write_atomic(path: Path, header: dict[str, Any], rows: Iterable[dict[str, Any]]) -> Path:
    """Write header + rows to `path` atomically: a reader never sees half a file."""
    with atomic_text(path) as stream:
        stream.write(dumps(header) + "\n")
        share = SampleSharing()
        for row in rows:
            stream.write(dumps(share(row)) + "\n")
    return path


@dataclass
class ResultsFile:
    """What one file held: its header and the rows that could be read."""

    path: Path
    header: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "file:line: why"
    unreadable: str | None = None  # why the whole file was skipped, None when it was read


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
_TEXT_OR_NONE = (str, type(None))
_OBJECT_OR_NONE = (dict, type(None))


def _row_problem(record: dict[str, Any]) -> str | None:
    """Why a row cannot be used, or None: what the report groups by must have its type.

    The usual case (a good row) is one expression of exact type tests: a million rows
    pass through here. `type(...) is str` first, since a list is not hashable.
    """
    status, scenario = record.get("status"), record.get("scenario")
    if (type(status) is str and status in _STATUS_SET and type(scenario) is str and scenario
            and type(record.get("output")) in _TEXT_OR_NONE
            and type(record.get("digest")) in _TEXT_OR_NONE
            and type(record.get("device")) in _TEXT_OR_NONE
            and type(record.get("settings")) in _OBJECT_OR_NONE):
        return None
    if not isinstance(status, str) or status not in STATUSES:
        return f"unknown status {status!r}"
    if not isinstance(scenario, str) or not scenario:
        return f"no scenario name ({scenario!r})"
    for key, kinds in (("output", _TEXT_OR_NONE), ("digest", _TEXT_OR_NONE),
                       ("device", _TEXT_OR_NONE), ("settings", _OBJECT_OR_NONE)):
        if not isinstance(record.get(key), kinds):
            return f"a row whose {key!r} is a {type(record.get(key)).__name__}"
    return None


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off while a file is parsed.

    Parsed JSON holds no reference cycles, but every retained row is a container the
    collector would walk again and again as rows pile up: parsing a 500,000-row file
    took 3x as long with it on (4.3 s against 1.4 s, measured).
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


def _read(path: Path) -> ResultsFile:
    """Read one file; what could not be used is in `skipped` / `unreadable`, nothing raises."""
    header: dict[str, Any] | None = None
    result = ResultsFile(path=path, header={})
    samples: dict[str, dict[str, Any]] = {}
    try:
        with gc_paused(), open_lines(path) as stream:
            for number, line in enumerate(stream, start=1):
                if number == 1 and line.startswith(BYTE_ORDER_MARK):  # left by an editor
                    line = line[len(BYTE_ORDER_MARK):]
                if not line.strip():
                    continue
                problem = None
                try:
                    record = _loads(line)
                except (ValueError, RecursionError):
                    record, problem = None, "not valid JSON (truncated or corrupt line)"
                if problem is None and not isinstance(record, dict):
                    problem = "not a JSON object"
                elif problem is None and record.get("record") == ROW:
                    if header is None:
                        problem = "a row before the file's header"
                    else:
                        problem = _row_problem(record)
                        if problem is None:
                            # The same value has the same sample: keep one copy per digest
                            # (a large report holds a million rows, most of them repeats);
                            # schema 2 writes it on the digest's first row only.
                            value_digest = record.get("digest")
                            if value_digest:
                                sample = record.get("sample")
                                if sample is None:
                                    record["sample"] = samples.get(value_digest)
                                elif isinstance(sample, dict):
                                    record["sample"] = samples.setdefault(value_digest, sample)
                            result.rows.append(record)
                elif problem is None and record.get("record") == HEADER:
                    schema = record.get("schema")
                    if header is not None:
                        problem = "a second header"
                    elif (isinstance(schema, int) and not isinstance(schema, bool)
                            and schema > SCHEMA):
                        result.unreadable = (f"schema version {schema} (line {number}) is newer "
                                             f"than this reader's {SCHEMA}: upgrade repro-audit")
                        return result
                    else:
                        problem = _header_problem(record)
                        if problem is None:
                            header = record
                            result.header = record
                elif problem is None:
                    problem = "not a repro-audit record"
                if problem:
                    result.skipped.append(f"{path}:{number}: {problem}")
    except EOFError:  # a truncated .gz: the rows before the cut are kept
        result.skipped.append(f"{path}: compressed file is truncated; later rows are lost")
    except OSError as error:
        result.unreadable = f"cannot read it: {error.strerror or error}"
        return result
    if header is None:
        result.unreadable = "no repro-audit header (not a repro-audit results file?)"
    return result


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
    With `consume`, each readable file is handed over as soon as it is read and its rows
    are then dropped (headers kept): a large set of results never sits in memory at once.
    """
    paths = list(paths)
    results = []
    for path in expand(paths):
        item = _read(path)
        if consume is not None and not item.unreadable:
            consume(item)
            item.rows = []
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



def write_unavailable(path: Path, torch_version: str, reason: str) -> Path:
    """A results file saying a whole torch version could not be audited here, and why."""
    from audit.environment import env_id, host

    environment = {**host(), "torch": torch_version}
    identity = "unavailable-" + env_id(environment)
    row = make_row(scenario="*", output=None, status="unavailable", device="cpu",
                   torch_version=torch_version, settings={}, env_id=identity, error=reason)
    return write_atomic(path, make_header(environment, identity), [row])
