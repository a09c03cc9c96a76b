"""Distances in words: the one place a `Distance` becomes text.

The report's cells, the `baseline check` and `diff` lines, the pytest plugin's messages and
the "first diverges at" of an op trace all say how far two values are apart through the
functions here, so a gap reads the same wherever it is printed:

  describe      the full text of a report cell or a printed line
  describe_gap  why two digests differ: `describe`, or what keeps it from being measured
  brief         the few words after an op's name where two traces first diverge

Every ULP count is written by `_ulps`, so its rounding is the same in all three.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the builder reads a Distance; distance.py calls back in here
    from audit.capture.distance import Distance


def describe(gap: Distance) -> str:
    """Short text for a report cell.

    Formats, by case (the element part says "sampled" when `exact` is False):
      incomparable   `dtype differs (float32 vs float64)`  (the note alone)
      no elements    `no elements`
      no difference  `identical` / `same in 256 sampled elements`
      floats         `max abs 3.1e-07, max 2 ULP, 3 of 12 elements`
      integers, bool `max abs 5, 3 of 12 elements`
      bits*          `3 of 256 sampled elements`  (opaque: counts only)
    followed by `; <note>` when there is one (`; NaN vs number`). `max abs` is shown
    with 2 significant digits for floats, exactly for integers (up to 1e15); ULP
    counts exactly up to a million, then with 2 significant digits; element counts
    with thousands separators.
    """
    if not gap.comparable:
        return str(gap.note)
    if gap.compared == 0:
        text = "no elements"
    elif gap.differing == 0:
        text = "identical" if gap.exact else f"same in {_elements(gap.compared, gap.exact)}"
    else:
        parts = []
        if gap.max_abs is not None:
            parts.append(f"max abs {_absolute(gap.max_abs, gap.max_ulp is None)}")
        if gap.max_ulp is not None:
            parts.append(f"max {_ulps(gap.max_ulp)}")
        parts.append(f"{gap.differing:,} of {_elements(gap.compared, gap.exact)}")
        text = ", ".join(parts)
    return f"{text}; {gap.note}" if gap.note else text


def describe_gap(gap: Distance | None, shape_a: Any, shape_b: Any) -> str:
    """Why two digests differ, in words: the distance, or what keeps it from being measured."""
    if shape_a is not None and shape_b is not None and list(shape_a) != list(shape_b):
        return f"shape differs ({list(shape_a)} vs {list(shape_b)})"
    if gap is None:
        return "digest differs (no sample kept to measure by how much)"
    text = describe(gap)
    if gap.comparable and gap.compared and not gap.differing:
        # whole output kept and equal: what differs is hashed but not sampled (the layout
        # kind, sparse indices, quantisation parameters)
        text += (" values, digest differs (layout or parameters)" if gap.exact
                 else " (digest differs outside the sample)")
    return text


def brief(gap: Distance | None) -> str:
    """'1 ULP', 'max abs 3', or '' when the samples say nothing more.

    The largest measure alone, for a line that already says where the values diverge;
    `max abs` here keeps six significant digits and counts have no separators.
    """
    if gap is None or not gap.comparable or gap.compared == 0:
        return ""
    if gap.differing == 0:
        return "not in the sampled elements"
    if gap.max_ulp is not None:
        return _ulps(gap.max_ulp)
    if gap.max_abs is not None:
        return f"max abs {gap.max_abs:g}"
    return f"{gap.differing} of {gap.compared} elements"


def _ulps(count: int) -> str:
    """`2 ULP`: exact up to a million, then 2 significant digits (`4.6e+18 ULP`)."""
    return f"{count if count < 10**6 else format(count, '.2g')} ULP"


def _absolute(value: float, integral: bool) -> str:
    if integral and value < 1e15:
        return str(int(value))
    return format(value, ".2g")


def _elements(count: int, exact: bool) -> str:
    return f"{count:,} {'elements' if exact else 'sampled elements'}"
