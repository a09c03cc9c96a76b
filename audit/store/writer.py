"""Writing results files: one sorted JSON line per record, compacted, written atomically.

A file is written to a temporary name and renamed, so a reader never sees half a file.
Schema 2 (`Compaction`): a value's sample is written once, on the first row with its
digest; later rows with that digest carry `"sample": null` and the reader fills them in;
`requested` appears only where it differs from `settings`. Most of a row is its sample and
the same value recurs under many settings, so files are several times smaller and faster
to read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from audit.store.atomic import atomic_text
from audit.store.schema import make_header, make_row


def dumps(record: dict[str, Any]) -> str:
    """One JSON line, keys sorted so identical rows are identical text."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), allow_nan=False)


class Compaction:
    """Schema 2's two savings, row by row, for the rows of one file in order.

    - A digest's sample is written on its first row only: the sample is a function of
      the value (dtype, shape and bytes, as is the digest), so the rows left without one
      lose nothing; the reader gives them the first row's.
    - `requested` is written only where it differs from `settings`: readers take
      `settings` for a row without it (`audit.run.run_command.row_unit_key`).
    A million-row report reads much smaller files, and parses each row faster.
    """

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        drop_sample = False
        value_digest = row.get("digest")
        if value_digest and row.get("sample") is not None:
            drop_sample = value_digest in self.seen
            self.seen.add(value_digest)
        drop_requested = "requested" in row and row["requested"] == row.get("settings")
        if not (drop_sample or drop_requested):
            return row
        compact = {key: value for key, value in row.items()
                   if not (drop_requested and key == "requested")}
        if drop_sample:
            compact["sample"] = None
        return compact


def write_atomic(path: Path, header: dict[str, Any], rows: Iterable[dict[str, Any]]) -> Path:
    """Write header + rows to `path` atomically: a reader never sees half a file."""
    with atomic_text(path) as stream:
        stream.write(dumps(header) + "\n")
        compact = Compaction()
        for row in rows:
            stream.write(dumps(compact(row)) + "\n")
    return path


def write_unavailable(path: Path, torch_version: str, reason: str) -> Path:
    """A results file saying a whole torch version could not be audited here, and why."""
    from audit.environment.collect import env_id, host

    environment = {**host(), "torch": torch_version}
    identity = "unavailable-" + env_id(environment)
    row = make_row(scenario="*", output=None, status="unavailable", device="cpu",
                   torch_version=torch_version, settings={}, env_id=identity, error=reason)
    return write_atomic(path, make_header(environment, identity), [row])
