"""Traces files and journals: one trace per line, written and read without torch.

A traces file (named by audit.store.traces) is gzip'ed JSON Lines sorted by key, with
stable bytes. A run first appends to a journal, one `journal_line` per unit (the key, a
tab, the trace line), so that the traces file is made from it without parsing a trace again.
"""

from __future__ import annotations

import functools
import gzip
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from audit.trace.model import FORMAT, Event, Trace

COMPRESS_LEVEL = 6  # gzip's default 9 is much slower for a barely smaller file
_KEY = re.compile(r'"format":"[^"]*","key":("(?:[^"\\]|\\.)*")')


def trace_line(key: str, trace: Mapping[str, Any]) -> str:
    """A trace as one line of a traces file: its JSON with its key, compact, keys sorted."""
    return json.dumps({"key": key, **trace}, sort_keys=True, separators=(",", ":"))


def journal_line(key: str, trace: Mapping[str, Any]) -> str:
    """A line of a run's traces journal: the key (JSON), a tab, then `trace_line`, so the
    traces file is made from the journal without parsing a single trace again."""
    return json.dumps(key) + "\t" + trace_line(key, trace)


def write_traces(path: Path, traces: Mapping[str, Trace]) -> None:
    """Gzip'ed JSON Lines, one trace per line, sorted by key; atomic, byte-stable (mtime 0)."""
    write_trace_lines(path, {key: trace_line(key, trace.to_json())
                             for key, trace in traces.items()})


def write_trace_lines(path: Path, lines: Mapping[str, str]) -> None:
    """`write_traces` from lines made by `trace_line` (or read by `trace_lines`)."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as raw, \
                gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0,
                              compresslevel=COMPRESS_LEVEL) as stream:
            for key in sorted(lines):
                stream.write(lines[key].encode("utf-8") + b"\n")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def trace_lines(path: Path) -> dict[str, str]:
    """{key: line} of a traces file or journal, the traces left unparsed (a later line with
    the same key wins; a line that is not whole is skipped)."""
    lines: dict[str, str] = {}
    with open(path, "rb") as probe:
        compressed = probe.read(2) == b"\x1f\x8b"
    opener: Any = gzip.open if compressed else open
    try:
        with opener(path, "rt", encoding="utf-8", errors="replace") as stream:
            for line in stream:
                line = line.rstrip("\n")
                if not line.endswith("}"):
                    continue  # torn
                try:
                    if line.startswith('"'):  # a journal line: key, tab, trace line
                        key_text, _, line = line.partition("\t")
                        key = json.loads(key_text)
                    else:
                        found = _KEY.search(line)
                        key = json.loads(found.group(1)) if found else json.loads(line)["key"]
                except (ValueError, KeyError, TypeError):
                    continue
                lines[str(key)] = line
    except (EOFError, OSError):
        pass  # a torn end: what was whole is kept
    return lines


@dataclass
class _TraceLine:
    """A traces file line as msgspec decodes it (typed, in C): the key and the trace."""

    key: Any
    format: str = ""
    torch: str = ""
    truncated: bool = False
    skipped: int = 0
    views: dict[str, str] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)

    def trace(self) -> Trace:
        if self.format != FORMAT:
            raise ValueError(f"not a trace of format {FORMAT}: {self.format!r}")
        return Trace(events=self.events, views=self.views, torch=self.torch,
                     truncated=self.truncated, skipped=self.skipped)


@functools.cache
def _line_decoder() -> Callable[[str], tuple[str, Trace]] | None:
    """A typed msgspec decoder of trace lines (in C, much faster than json plus `from_json`,
    which was a large share of a report's time), None without msgspec (the `report` extra)
    or where it cannot read the annotations (Python < 3.10)."""
    try:
        import msgspec

        decoder = msgspec.json.Decoder(_TraceLine)
    except Exception:  # noqa: BLE001 - the standard library reads the same lines
        return None

    def decode(line: str) -> tuple[str, Trace]:
        try:
            record = decoder.decode(line)
        except msgspec.MsgspecError as error:
            raise ValueError(str(error)) from error
        return str(record.key), record.trace()

    return decode


def decode_trace_line(line: str) -> tuple[str, Trace]:
    """(key, trace) of one line of a traces file (`trace_line`); ValueError if it is none."""
    decode = _line_decoder()
    if decode is not None:
        return decode(line)
    record = json.loads(line)
    return str(record["key"]), Trace.from_json(record)


def read_traces(path: Path) -> dict[str, Trace]:
    """Traces by key, from a traces file or a plain JSON Lines journal of them.

    A corrupt line, or a torn end of the file, is skipped with a warning; a later line
    with the same key replaces an earlier one.
    """
    import warnings

    traces: dict[str, Trace] = {}
    number = 0
    try:
        with open(path, "rb") as probe:
            compressed = probe.read(2) == b"\x1f\x8b"
        opener: Any = gzip.open if compressed else open
        with opener(path, "rt", encoding="utf-8", errors="replace") as stream:
            for number, line in enumerate(stream, start=1):
                try:
                    if line.startswith('"'):  # a journal line (journal_line)
                        line = line.partition("\t")[2]
                    key, trace = decode_trace_line(line)
                    traces[key] = trace
                except (ValueError, KeyError, TypeError) as error:
                    warnings.warn(f"{path}: line {number} skipped ({error})", stacklevel=2)
    except (EOFError, OSError) as error:
        warnings.warn(f"{path}: unreadable after line {number} ({error})", stacklevel=2)
    return traces
