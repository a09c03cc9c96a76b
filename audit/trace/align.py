"""Aligning two traces of the same unit as sequences, although their op sequences differ.

Across torch versions the op sequence itself changes (an extra `clone`, an op split in two,
a view more or less), so events cannot be matched by position. Checkpoints and scenario
outputs are anchors, matched by name; the events between two matched anchors are aligned
first on values (op, shapes, dtypes and output digests: ops that computed the same thing),
then what is left on structure alone (op name, output shapes and dtypes). See `_blocks` for
the algorithms and their limits; checkpoints cut a long trace into stretches that align
independently.
"""

from __future__ import annotations

import bisect
import difflib
from typing import Any

from audit.trace.model import ANCHORS, Event, Trace

DIFFLIB_CAP = 250_000  # len(a) * len(b) of a stretch difflib aligns on values (see _blocks)
WINDOW = 64  # events _greedy skips at most on each side to resynchronise nearby
RUN = 3  # tokens that must agree for _greedy to resynchronise there
LCS_CAP = 1_000_000  # len(a) * len(b) of a stretch aligned on structure by a true LCS
FAR_CANDIDATES = 64  # places further on that _greedy tries when nothing nearby agrees


def _token(event: Event) -> tuple[Any, ...]:
    """What an event is, values aside: anchors by name, ops by name, shapes and dtypes."""
    if event.kind in ANCHORS:
        return (event.kind, event.op)
    return (event.kind, event.op, tuple(tuple(shape) for shape in event.shapes),
            tuple(event.dtypes))


class _Tokens:
    """Events of both traces as small integers: by structure, and by structure + values."""

    def __init__(self, a: Trace, b: Trace) -> None:
        ids: dict[Any, int] = {}
        self.shape = [[ids.setdefault(_token(e), len(ids)) for e in t.events] for t in (a, b)]
        self.value = [[ids.setdefault((s, tuple(e.outputs)), len(ids))
                       for s, e in zip(shapes, t.events)]
                      for shapes, t in zip(self.shape, (a, b))]


def align(a: Trace, b: Trace) -> list[tuple[int | None, int | None]]:
    """Pairs of event positions (None: present on one side only), in order on both sides.

    Anchors (checkpoints, outputs) are matched by name first; between two matched anchors,
    events that computed the same values are matched first, then the rest by structure.
    """
    tokens = _Tokens(a, b)
    anchors_a = [i for i, event in enumerate(a.events) if event.kind in ANCHORS]
    anchors_b = [j for j, event in enumerate(b.events) if event.kind in ANCHORS]
    named_a = [tokens.shape[0][i] for i in anchors_a]
    named_b = [tokens.shape[1][j] for j in anchors_b]
    matched = [(anchors_a[i], anchors_b[j])
               for i, j, size in _blocks(named_a, 0, len(named_a), named_b, 0, len(named_b))
               for i, j in zip(range(i, i + size), range(j, j + size))]
    pairs: list[tuple[int | None, int | None]] = []
    start_a = start_b = 0
    for end_a, end_b in matched + [(len(a.events), len(b.events))]:
        pairs += _by_values(tokens, start_a, end_a, start_b, end_b)
        if end_a < len(a.events):
            pairs.append((end_a, end_b))
        start_a, start_b = end_a + 1, end_b + 1
    return pairs


def _by_values(tokens: _Tokens, a0: int, a1: int, b0: int, b1: int
               ) -> list[tuple[int | None, int | None]]:
    """Events with the same op and the same output values pair first; then by structure."""
    pairs: list[tuple[int | None, int | None]] = []
    i, j = a0, b0
    for start_a, start_b, size in _blocks(tokens.value[0], a0, a1, tokens.value[1], b0, b1):
        pairs += _by_structure(tokens, i, start_a, j, start_b)
        pairs += [(start_a + k, start_b + k) for k in range(size)]
        i, j = start_a + size, start_b + size
    return pairs + _by_structure(tokens, i, a1, j, b1)


def _by_structure(tokens: _Tokens, a0: int, a1: int, b0: int, b1: int
                  ) -> list[tuple[int | None, int | None]]:
    pairs: list[tuple[int | None, int | None]] = []
    i, j = a0, b0
    for start_a, start_b, size in _blocks(tokens.shape[0], a0, a1, tokens.shape[1], b0, b1,
                                          small=0):  # no difflib: LCS, else greedy
        pairs += [(k, None) for k in range(i, start_a)] + [(None, k) for k in range(j, start_b)]
        pairs += [(start_a + k, start_b + k) for k in range(size)]
        i, j = start_a + size, start_b + size
    return pairs + [(k, None) for k in range(i, a1)] + [(None, k) for k in range(j, b1)]


def _blocks(a: list[int], a0: int, a1: int, b: list[int], b0: int, b1: int,
            small: int | None = None) -> list[tuple[int, int, int]]:
    """Matching blocks (start in a, start in b, size) of a[a0:a1] and b[b0:b1], in order.

    The common head and tail are taken as they are. Between them: difflib for stretches of
    at most `small` token pairs (default DIFFLIB_CAP; values, nearly unique tokens, suit its
    longest-block-first matching), else a true longest common subsequence up to LCS_CAP
    (structure is repetitive, a training loop, where difflib pairs iterations crosswise),
    else `_greedy`, linear but only right for local edits.
    """
    head = 0
    while a0 + head < a1 and b0 + head < b1 and a[a0 + head] == b[b0 + head]:
        head += 1
    tail = 0
    while (a1 - tail > a0 + head and b1 - tail > b0 + head
           and a[a1 - tail - 1] == b[b1 - tail - 1]):
        tail += 1
    found = [(a0, b0, head)] if head else []
    a0, b0, a1, b1 = a0 + head, b0 + head, a1 - tail, b1 - tail
    if a1 > a0 and b1 > b0:
        if (a1 - a0) * (b1 - b0) <= (DIFFLIB_CAP if small is None else small):
            matcher = difflib.SequenceMatcher(None, a[a0:a1], b[b0:b1], autojunk=False)
            found += [(a0 + block.a, b0 + block.b, block.size)
                      for block in matcher.get_matching_blocks() if block.size]
        elif (a1 - a0) * (b1 - b0) <= LCS_CAP:
            found += _lcs(a, a0, a1, b, b0, b1)
        else:
            found += _greedy(a, a0, a1, b, b0, b1)
    if tail:
        found.append((a1, b1, tail))
    return found


def _lcs(a: list[int], a0: int, a1: int, b: list[int], b0: int, b1: int
         ) -> list[tuple[int, int, int]]:
    """A longest common subsequence, as blocks; the earliest matches where there is a choice.

    Quadratic (dynamic programming over suffixes), so only for stretches up to LCS_CAP.
    """
    xs, ys = a[a0:a1], b[b0:b1]
    n, m = len(xs), len(ys)
    rows = [[0] * (m + 1) for _ in range(n + 1)]  # rows[i][j]: LCS of xs[i:] and ys[j:]
    for i in range(n - 1, -1, -1):
        here, below, x = rows[i], rows[i + 1], xs[i]
        for j in range(m - 1, -1, -1):
            if ys[j] == x:
                here[j] = below[j + 1] + 1
            else:
                here[j] = below[j] if below[j] >= here[j + 1] else here[j + 1]
    found: list[tuple[int, int, int]] = []
    i = j = 0
    while i < n and j < m:
        if xs[i] == ys[j]:
            if found and found[-1][0] + found[-1][2] == a0 + i and \
                    found[-1][1] + found[-1][2] == b0 + j:
                found[-1] = (found[-1][0], found[-1][1], found[-1][2] + 1)
            else:
                found.append((a0 + i, b0 + j, 1))
            i, j = i + 1, j + 1
        elif rows[i + 1][j] >= rows[i][j + 1]:
            i += 1
        else:
            j += 1
    return found


def _greedy(a: list[int], a0: int, a1: int, b: list[int], b0: int, b1: int
            ) -> list[tuple[int, int, int]]:
    """Matching blocks found walking both sequences, resynchronising where they part.

    Where the tokens differ, the nearest place (fewest events skipped on both sides, each
    at most `WINDOW`) where `RUN` tokens agree again is taken; failing that, the next
    place where one side's current tokens appear in the other, further on. Linear in the
    length for traces that differ by local insertions, deletions and substitutions; not
    optimal for large moves, which are not what a version change does to an op sequence.
    """
    where_a: dict[int, list[int]] = {}
    for k in range(a0, a1):
        where_a.setdefault(a[k], []).append(k)
    where_b: dict[int, list[int]] = {}
    for k in range(b0, b1):
        where_b.setdefault(b[k], []).append(k)
    found: list[tuple[int, int, int]] = []
    i, j = a0, b0
    while i < a1 and j < b1:
        if a[i] == b[j]:
            start_i, start_j = i, j
            while i < a1 and j < b1 and a[i] == b[j]:
                i, j = i + 1, j + 1
            found.append((start_i, start_j, i - start_i))
            continue
        jump = _resync(a, i, a1, b, j, b1, where_a, where_b)
        if jump is None:
            i, j = i + 1, j + 1  # both are one-sided here
        else:
            i, j = i + jump[0], j + jump[1]
    return found


def _agree(a: list[int], i: int, a1: int, b: list[int], j: int, b1: int) -> bool:
    run = min(RUN, a1 - i, b1 - j)
    return run > 0 and a[i:i + run] == b[j:j + run]


def _resync(a: list[int], i: int, a1: int, b: list[int], j: int, b1: int,
            where_a: dict[int, list[int]], where_b: dict[int, list[int]]
            ) -> tuple[int, int] | None:
    """Events to skip on each side so that the two agree again (None: no such place)."""
    best: tuple[int, int] | None = None
    for skip_a in range(min(WINDOW, a1 - i)):
        if best is not None and skip_a >= sum(best):
            break
        positions = where_b.get(a[i + skip_a], [])
        for position in positions[bisect.bisect_left(positions, j):]:
            skip_b = position - j
            if skip_b >= WINDOW or (best is not None and skip_a + skip_b >= sum(best)):
                break
            if _agree(a, i + skip_a, a1, b, position, b1):
                best = (skip_a, skip_b)
                break
    if best is not None:
        return best
    far = []
    positions = where_b.get(a[i], [])
    for position in positions[bisect.bisect_left(positions, j):][:FAR_CANDIDATES]:
        if _agree(a, i, a1, b, position, b1):
            far.append((0, position - j))
            break
    positions = where_a.get(b[j], [])
    for position in positions[bisect.bisect_left(positions, i):][:FAR_CANDIDATES]:
        if _agree(a, position, a1, b, j, b1):
            far.append((position - i, 0))
            break
    return min(far, key=sum) if far else None
