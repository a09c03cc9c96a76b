"""The rows of a results file checked as they are read: types, statuses, shared samples.

Split from the reader (audit.store.results) because checking a row is a job of its own:
the typed msgspec fast path and the general dict path must accept exactly the same rows.
"""

from __future__ import annotations

import json
from operator import itemgetter
from typing import Any, Callable, Optional

try:  # msgspec, where installed (the `report` extra): parses, and type-checks rows, in C
    import msgspec
except ImportError:  # pragma: no cover - the standard library does the same job, slower
    msgspec = None

from audit.store.schema import (
    COLUMN_TYPES,
    FLAG,
    OBJECT,
    ROW_COLUMN_KEYS,
    ROW_TYPES,
    STATUSES,
    TEXT,
)

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

# One JSON line as Python objects: msgspec's decoder where installed, json's otherwise.
loads: Callable[[bytes], Any] = msgspec.json.decode if msgspec is not None else json.loads


def typed_values(decoder: Any, line: bytes) -> tuple[Any, ...] | None:
    """A line decoded by `decoder` (`_TYPED_ROWS`) as a tuple of its fields, None if it
    does not decode as one."""
    try:
        return msgspec.structs.astuple(decoder.decode(line))
    except (ValueError, RecursionError):
        return None


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


