"""One output compared at two values of an axis: identical or not, how far, where from.

A *cell* is an output at one axis value against the same output at the reference value,
every other axis held equal: how many contexts (values of the other axes) compared them,
in how many the digests differ, the worst distance of the kept values (`DistanceCache`:
each pair of values measured once) and, where op traces were kept, the op at which a
differing pair first diverges.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from audit.capture.distance import Distance, distance
from audit.capture.sample import Sample
from audit.trace.origin import NoOrigin, Origin, Origins


@dataclass
class AxisCell:
    """How one output's value on one axis value compares with the reference value."""

    groups: int = 0  # contexts (values of the other axes) where both were compared
    differing: int = 0
    worst: Distance | None = None
    origin: Origin | NoOrigin | None = None  # where a differing pair first diverges (traces)

    @property
    def verdict(self) -> str:
        if self.groups == 0:
            return "not compared"
        return "identical" if self.differing == 0 else "differs"


def worse(a: Distance | None, b: Distance | None) -> Distance | None:
    """The larger of two distances (by ULP, then absolute difference, then share)."""
    if a is None:
        return b
    if b is None:
        return a

    def rank(item: Distance) -> tuple[float, float, float]:
        return (float(item.max_ulp or 0), float(item.max_abs or 0), item.share)

    return a if rank(a) >= rank(b) else b


class DistanceCache:
    """Distances by digest pair: the same two values are measured once."""

    def __init__(self) -> None:
        self.known: dict[tuple[str, str], Distance | None] = {}
        self.decoded: dict[str, Sample] = {}  # a reference value meets several others

    def _sample(self, value_digest: str, sample: dict[str, Any]) -> Sample:
        if value_digest not in self.decoded:
            self.decoded[value_digest] = Sample.from_json(sample)
        return self.decoded[value_digest]

    def between(self, digest_a: str, sample_a: Any, digest_b: str, sample_b: Any,
                stored_a: str | None = None, stored_b: str | None = None) -> Distance | None:
        """Exact over the full stored values when both sides kept them, else over samples."""
        key = (digest_a, digest_b)
        if key not in self.known:
            whole = _stored_sample(sample_a, stored_a), _stored_sample(sample_b, stored_b)
            if whole[0] is not None and whole[1] is not None:
                self.known[key] = distance(whole[0], whole[1])
            elif not isinstance(sample_a, dict) or not isinstance(sample_b, dict):
                self.known[key] = None
            else:
                self.known[key] = distance(self._sample(digest_a, sample_a),
                                           self._sample(digest_b, sample_b))
        return self.known[key]


def _stored_sample(sample: Any, stored: str | None) -> Sample | None:
    """The full values kept by `run --keep-tensors`, as a whole-output Sample."""
    if not stored or not isinstance(sample, dict):
        return None
    try:
        return Sample(sample["dtype"], None, Path(stored).read_bytes())
    except OSError:
        return None


PAYLOAD = ["digest", "sample", "stored", "file", "trace_key"]


def matched_pairs(cells: pd.DataFrame, axis: str, context: list[str], before: str,
                  after: str, also: list[str] | None = None) -> pd.DataFrame:
    """The cells at `before` and `after` that meet, side by side (`_a`, `_b`): those equal
    in every `context` column, and with `also` (another list of columns, across machines
    what a user gets: `audit.judge.platforms`) those equal in every `also` column too,
    each pair of cells once."""
    columns = context + PAYLOAD
    left = cells.loc[cells[axis] == before, columns]
    right = cells.loc[cells[axis] == after, columns]
    merged = left.merge(right, on=context, suffixes=("_a", "_b"))
    if not also:
        return merged
    kept = ["scenario", "output"] + [f"{name}_{side}" for name in PAYLOAD + ["row"]
                                     for side in "ab"]
    parts = []
    for on in (context, also):
        sides = [cells.loc[cells[axis] == value, list(dict.fromkeys(on + PAYLOAD))]
                 .assign(row=lambda part: part.index) for value in (before, after)]
        parts.append(sides[0].merge(sides[1], on=on, suffixes=("_a", "_b"))[kept])
    return (pd.concat(parts, ignore_index=True)
            .drop_duplicates(["row_a", "row_b"], ignore_index=True))


def compare_pair(cells: pd.DataFrame, axis: str, context: list[str], before: str, after: str,
                 cache: DistanceCache, origins: Origins | None = None,
                 also: list[str] | None = None) -> dict[tuple[str, str], AxisCell]:
    """Each output at `after` against the same output at `before`, other axes equal (or,
    given `also`, equal in those columns instead: see `matched_pairs`)."""
    merged = matched_pairs(cells, axis, context, before, after, also)
    differs = merged["digest_a"].to_numpy(dtype=object) != merged["digest_b"].to_numpy(
        dtype=object)
    counts = (pd.DataFrame({"scenario": merged["scenario"].to_numpy(dtype=object),
                            "output": merged["output"].to_numpy(dtype=object),
                            "differs": differs})
              .groupby(["scenario", "output"], sort=False)["differs"].agg(["size", "sum"]))
    found = {(scenario, output): AxisCell(groups=int(size), differing=int(total))
             for (scenario, output), size, total in counts.itertuples(name=None)}
    changed = merged[differs]
    # The worst distance needs each pair of values once, not once per context they met in
    # (first occurrences kept, so ties resolve as before).
    distinct = changed.drop_duplicates(
        ["scenario", "output", "digest_a", "digest_b", "stored_a", "stored_b"])
    for scenario, output, digest_a, sample_a, digest_b, sample_b, stored_a, stored_b in zip(
            *(distinct[column].tolist() for column in (
                "scenario", "output", "digest_a", "sample_a", "digest_b", "sample_b",
                "stored_a", "stored_b"))):
        cell = found[(scenario, output)]
        cell.worst = worse(cell.worst, cache.between(digest_a, sample_a, digest_b, sample_b,
                                                     stored_a, stored_b))
    if origins is not None and (changed["trace_key_a"].notna().any()
                                and changed["trace_key_b"].notna().any()):
        for scenario, output, digest_a, digest_b, unit_a, unit_b in zip(
                changed["scenario"].tolist(), changed["output"].tolist(),
                changed["digest_a"].tolist(), changed["digest_b"].tolist(),
                zip(changed["file_a"].tolist(), changed["trace_key_a"].tolist()),
                zip(changed["file_b"].tolist(), changed["trace_key_b"].tolist())):
            cell = found[(scenario, output)]
            if not cell.origin:
                cell.origin = origins.between(unit_a, unit_b, output,
                                              (digest_a, digest_b)) or cell.origin
    return found
