"""What judging reads off one results row: its key, its label, whether it holds a value.

Shared by the baseline check and `diff`: a cell's settings as one stable text, a printed
line's label, which rows can be compared, the env-id of a row, and how far apart two
samples kept in JSON are.
"""

from __future__ import annotations

import json
from typing import Any

from audit.capture.distance import Distance, distance
from audit.capture.sample import Sample
from audit.config.settings import NOT_APPLICABLE, unset_value, with_unset_values
from audit.errors import UserError
from audit.store.results import ResultsFile


def settings_key(settings: dict[str, Any] | None, device: str | None = None) -> str:
    """Settings as sorted JSON: the same combination is the same text whatever its order.

    With `device`, settings a row does not record are taken at their unset value, so a
    baseline saved before rows recorded every setting still keys the same cells."""
    values = dict(settings or {})
    if device is not None:
        values = with_unset_values(values, device)
    return json.dumps(values, sort_keys=True, separators=(",", ":"))


def one_line(text: Any) -> str:
    """`text` with control characters escaped, so a hostile name cannot split a line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def cell_label(scenario: str, output: str, device: str, settings: str) -> str:
    """`rng.randn/large [cpu cpu_capability=avx2 threads=1]`: what a printed line names."""
    values = json.loads(settings)
    shown = [name for name in sorted(values)  # not the settings nobody touched
             if values[name] != NOT_APPLICABLE and values[name] != unset_value(name, device)]
    inside = " ".join([device, *(f"{name}={values[name]}" for name in shown)])
    return one_line(f"{scenario}/{output} [{inside}]")


def has_value(row: dict[str, Any]) -> bool:
    """An `ok` row of one named output with a digest: something that can be compared."""
    return (row.get("status") == "ok" and isinstance(row.get("output"), str)
            and isinstance(row.get("digest"), str))


def comparable(row: dict[str, Any]) -> bool:
    """A value not seen to change run to run: the only kind compared across runs.

    `repeatable` is True when it was run twice and came out the same, False when the two
    runs differed, and None when it was run once (a pytest test without the repeat
    marker): such a value is compared as it is, since nothing showed it unrepeatable.
    """
    return has_value(row) and row.get("repeatable") is not False


def env_of(row: dict[str, Any], item: ResultsFile) -> str:
    """The row's env-id (the header's when a row lacks one)."""
    value = row.get("env_id") or item.header.get("env_id")
    if not isinstance(value, str) or not value:
        raise UserError(f"{item.path}: a row of {row.get('scenario')!r} has no env_id")
    return value


def measure(sample_a: Any, sample_b: Any) -> Distance | None:
    """Distance between two kept samples as stored in JSON (None when one was not kept)."""
    if not isinstance(sample_a, dict) or not isinstance(sample_b, dict):
        return None
    try:
        return distance(Sample.from_json(sample_a), Sample.from_json(sample_b))
    except (KeyError, TypeError, ValueError):  # a malformed sample: say so, do not crash
        return None
