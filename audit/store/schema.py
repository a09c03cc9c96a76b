"""The results format's records: a header, then rows, with their keys, statuses and types.

Line 1 of a results file is a header (schema version, the full environment, its env-id);
every other line is one row: one output of one scenario on one device under one settings
combination. Schema 2 writes rows compacted (`audit.store.writer.Compaction`); schema 1
files (a sample on every row) read the same. The writer (`audit.store.writer`) makes
records with `make_header` and `make_row`; the reader (`audit.store.results`) checks each
row against `ROW_TYPES`.
"""

from __future__ import annotations

import functools
import json
from typing import Any, Mapping

SCHEMA = 2
HEADER = "repro-audit/header"
ROW = "repro-audit/row"
STATUSES = ("ok", "error", "timeout", "crashed", "unavailable", "raises-when-deterministic")

# Keys every row carries (None where they do not apply).
ROW_KEYS = (
    "scenario", "output", "status", "digest", "repeatable", "device", "torch_version",
    "settings", "env_id", "error", "dtype", "shape", "kind", "sample",
)

# Keys a row may carry: run time, settings as requested, the stored full values' file name.
OPTIONAL_KEYS = ("seconds", "requested", "stored")

_NONE = type(None)
TEXT, OBJECT, FLAG = (frozenset((str, _NONE)), frozenset((dict, _NONE)),
                      frozenset((bool, _NONE)))
# What the report groups by or reads must have its type (a list cannot be grouped by).
ROW_TYPES = (("output", TEXT), ("digest", TEXT), ("device", TEXT), ("env_id", TEXT),
             ("torch_version", TEXT), ("dtype", TEXT), ("error", TEXT),
             ("settings", OBJECT), ("sample", OBJECT), ("repeatable", FLAG),
             ("stored", TEXT))  # the one optional key (OPTIONAL_KEYS) last
# The keys a reader hands on, in this order: the two that must be set, then ROW_TYPES'.
ROW_COLUMN_KEYS = ("scenario", "status") + tuple(key for key, _ in ROW_TYPES)
COLUMN_TYPES = (frozenset((str,)), frozenset((str,))) + tuple(kinds for _, kinds in ROW_TYPES)


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


def make_header(environment: dict[str, Any], env_id: str, **extra: Any) -> dict[str, Any]:
    return {"record": HEADER, "schema": SCHEMA, "env_id": env_id, "environment": environment,
            **extra}


def unit_key(scenario: str, device: str, settings: Mapping[str, Any]) -> str:
    """What identifies a unit (scenario, device, settings): for --resume and op traces."""
    if all(type(value) is str for value in settings.values()):  # as results hold them
        return _unit_key(scenario, device, tuple(settings.items()))
    return json.dumps([scenario, device, dict(settings)], sort_keys=True)


@functools.lru_cache(maxsize=65536)
def _unit_key(scenario: str, device: str, settings: tuple[tuple[str, Any], ...]) -> str:
    """unit_key, remembered: every output of a unit asks for the same key (a merge of
    results files asks tens of thousands of times)."""
    return json.dumps([scenario, device, dict(settings)], sort_keys=True)
