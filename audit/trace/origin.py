"""Where two traces of the same scenario start to differ, across environments.

Other tools match ops by position inside one process; across torch versions the op
sequence itself changes (an extra `clone`, an op split in two, a view more or less), so
here the two traces are first aligned as sequences, then the values are followed.

Alignment (`align`): checkpoints and scenario outputs are anchors, matched by name; the
events between two matched anchors are aligned first on values (op, shapes, dtypes and
output digests: ops that computed the same thing), then what is left on structure alone
(op name, output shapes and dtypes). See `_blocks` for the algorithms and their limits;
checkpoints cut a long trace into stretches that align independently.

Origin (`find_origin`): walking the aligned pairs in order, every value on each side is
*shared* (the other side saw the same digest), *restructured* (computed on one side only,
by ops the other side lacks, from shared values), *tainted* (inherited from a difference)
or *untraced* (read but produced by nothing traced: numpy, a file). The origin is the
first aligned op pair whose inputs are shared or restructured but whose outputs differ:
ops downstream of it read tainted values and are not origins. A one-sided op sequence
whose result first differs at an anchor is an origin too (e.g. `addmm` vs `mm` + `add`).

No torch here: reports are written without it.
"""

from __future__ import annotations

import bisect
import difflib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from audit.capture.distance import Distance, distance
from audit.trace.record import (
    ANCHORS,
    UNINITIALISED,
    Event,
    Trace,
    read_traces,
    sample_of,
    traces_path,
)

DIFFLIB_CAP = 250_000  # len(a) * len(b) of a stretch difflib aligns on values (see _blocks)
WINDOW = 64  # events _greedy skips at most on each side to resynchronise nearby
RUN = 3  # tokens that must agree for _greedy to resynchronise there
LCS_CAP = 1_000_000  # len(a) * len(b) of a stretch aligned on structure by a true LCS
FAR_CANDIDATES = 64  # places further on that _greedy tries when nothing nearby agrees

# Ops that draw from a generator, whose state is not traced: the same inputs can give other
# values because an earlier op drew more or fewer numbers, or the device draws differently.
RANDOM = frozenset(f"aten::{name}" for name in (
    "rand", "randn", "randint", "randperm", "rand_like", "randn_like", "randint_like",
    "uniform_", "normal_", "normal", "random_", "bernoulli", "bernoulli_", "multinomial",
    "exponential_", "geometric_", "cauchy_", "log_normal_", "poisson", "native_dropout",
    "_standard_gamma", "_sample_dirichlet", "binomial", "rrelu_with_noise", "_fused_dropout",
))

SHARED, RESTRUCTURED, TAINTED, UNTRACED = "shared", "restructured", "tainted", "untraced"


@dataclass(frozen=True)
class Origin:
    """The first op where two traces disagree although what it read agrees.

    `op` names the op (both names when the sides ran different ops), the call indices are
    positions in each trace, `distance` compares the samples of its first differing output,
    `note` says what else is known (arguments differ, op sequences differ just before), and
    `more` counts further independent origins after this one.
    """

    op: str
    call_index_a: int | None
    call_index_b: int | None
    source_line: str | None
    distance: Distance | None
    note: str | None = None
    more: int = 0

    def __bool__(self) -> bool:
        return True


@dataclass(frozen=True)
class NoOrigin:
    """Why no origin was found (falsy, so `if origin:` reads naturally)."""

    reason: str

    def __bool__(self) -> bool:
        return False


# --- alignment ----------------------------------------------------------------------------

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


# --- following the values -----------------------------------------------------------------

class _Side:
    """What is known about the values of one trace while walking."""

    def __init__(self, trace: Trace) -> None:
        self.trace = trace
        self.seen = trace.digests()
        self.status: dict[str, str] = {}
        self.producer: dict[str, int] = {}  # digest -> event index, one-sided ops only

    def state(self, digest: str | None, other: _Side) -> str:
        if digest is None or digest == UNINITIALISED or digest in other.seen:
            return SHARED
        if digest in self.status:
            return self.status[digest]
        root = self.trace.views.get(digest)
        if root is not None and root != digest:
            base = self.state(root, other)
            return RESTRUCTURED if base == SHARED else base
        return UNTRACED


_RANK = {SHARED: 0, RESTRUCTURED: 1, UNTRACED: 2, TAINTED: 3}


class _Walk:
    def __init__(self, a: Trace, b: Trace) -> None:
        self.a, self.b = _Side(a), _Side(b)
        self.origins: list[Origin] = []
        self.untraced: str | None = None  # first difference read from outside the trace
        self.differs = False

    def worst(self, side: _Side, other: _Side, digests: list[str | None]) -> str:
        return max((side.state(d, other) for d in digests), key=_RANK.__getitem__,
                   default=SHARED)

    def step(self, i: int | None, j: int | None) -> None:
        if i is None or j is None:
            side, other, k = (self.a, self.b, i) if j is None else (self.b, self.a, j)
            assert k is not None
            event = side.trace.events[k]
            if event.kind == "op":
                self.one_sided(side, other, event)
            return
        ea, eb = self.a.trace.events[i], self.b.trace.events[j]
        state = max(self.worst(self.a, self.b, ea.inputs), self.worst(self.b, self.a, eb.inputs),
                    key=_RANK.__getitem__)
        position = _first_difference(ea, eb, self.a, self.b)
        if position is None:
            return
        self.differs = True
        for side, other, event in ((self.a, self.b, ea), (self.b, self.a, eb)):
            for digest in event.outputs:
                if digest is not None and digest not in other.seen:
                    side.status[digest] = TAINTED
        if state == UNTRACED:
            if self.untraced is None and not self.origins:
                self.untraced = self.untraced_reason(ea)
        elif state != TAINTED:
            self.origins.append(self.origin(ea, eb, position, state))

    def one_sided(self, side: _Side, other: _Side, event: Event) -> None:
        state = self.worst(side, other, event.inputs)
        if state == UNTRACED and self.untraced is None and not self.origins:
            self.untraced = self.untraced_reason(event)
        mark = RESTRUCTURED if state in (SHARED, RESTRUCTURED) else TAINTED
        for digest in event.outputs:
            if digest is not None and digest not in other.seen:
                side.status[digest] = mark
                side.producer.setdefault(digest, event.index)

    @staticmethod
    def untraced_reason(event: Event) -> str:
        return (f"inputs already differ where first read, at {_where(event)}: made outside "
                "the traced ops (numpy, a file, an untraced thread)")

    def origin(self, ea: Event, eb: Event, position: int, state: str) -> Origin:
        notes = []
        if state == RESTRUCTURED:
            ops = self.feeding(self.a, "a", ea.inputs) + self.feeding(self.b, "b", eb.inputs)
            notes.append("the op sequences differ just before it: "
                         + ("; ".join(ops) or "views only"))
        if ea.kind in ANCHORS:  # a value made by one-sided ops differs where it is named
            named = f"{ea.kind} {ea.op!r}"
            ea = self.producer_of(self.a, ea.inputs[0]) or ea
            eb = self.producer_of(self.b, eb.inputs[0]) or eb
            notes.insert(0, f"first seen at {named}")
        elif ea.args != eb.args:
            notes.append("its non-tensor arguments differ too")
        if ea.op in RANDOM or eb.op in RANDOM:
            notes.append("a random op: the generator's state is not traced (an earlier op may "
                         "have drawn more numbers, or this device draws differently)")
        op = ea.op if ea.op == eb.op else f"{ea.op} (a) vs {eb.op} (b)"
        source = ea.source if ea.source == eb.source or eb.source is None else (
            f"{ea.source} vs {eb.source}" if ea.source else eb.source)
        return Origin(op=op, call_index_a=ea.index, call_index_b=eb.index,
                      source_line=source, distance=_distance(ea, eb, position),
                      note="; ".join(note for note in notes if note) or None)

    def producer_of(self, side: _Side, digest: str | None) -> Event | None:
        index = side.producer.get(digest) if digest is not None else None
        return side.trace.events[index] if index is not None else None

    def feeding(self, side: _Side, label: str, digests: list[str | None]) -> list[str]:
        """The one-sided ops whose results these values are made from (transitively)."""
        names: list[str] = []
        queue, done = [d for d in digests if d is not None], set()
        while queue and len(done) < 1000:
            digest = queue.pop()
            if digest in done:
                continue
            done.add(digest)
            queue += [side.trace.views[digest]] if digest in side.trace.views else []
            event = self.producer_of(side, digest)
            if event is not None:
                names.append(_where(event))
                queue += [d for d in event.inputs if d is not None]
        if not names:
            return []
        names = sorted(set(names))
        shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        return [f"only in {label}: {shown}"]


def _first_difference(ea: Event, eb: Event, a: _Side, b: _Side) -> int | None:
    """Position of the first output that differs (None: the outputs agree)."""
    if len(ea.outputs) == len(eb.outputs):
        for position, (da, db) in enumerate(zip(ea.outputs, eb.outputs)):
            if da is not None and db is not None and da != db:
                return position
        return None
    for position, digest in enumerate(ea.outputs):
        if digest is not None and digest not in b.seen:
            return position
    if any(d is not None and d not in a.seen for d in eb.outputs):
        return 0
    return None


def _distance(ea: Event, eb: Event, position: int) -> Distance | None:
    if position >= len(ea.samples) or position >= len(eb.samples):
        return None
    sa, sb = sample_of(ea.samples[position]), sample_of(eb.samples[position])
    return distance(sa, sb) if sa is not None and sb is not None else None


def _where(event: Event) -> str:
    return f"{event.op} ({event.source})" if event.source else event.op


def find_origin(a: Trace, b: Trace, output: str | None = None,
                audited: tuple[str, str] | None = None) -> Origin | NoOrigin:
    """The first op where `a` and `b` diverge, or why there is none.

    With `output` (a scenario output's name), only origins that output's value was
    computed from count: a unit can diverge in several independent places. With
    `audited`, the output's digests in the results (a, b): where the traced run made
    another value, the trace does not explain the results and no origin is claimed
    (under any dispatch mode torch takes "tensor subclass" code paths in some backward
    formulas and composite ops, e.g. `prod`'s gradient, which can round differently).
    """
    return _pick(_walk(a, b), a, b, output, audited)


def _walk(a: Trace, b: Trace) -> _Walk:
    walk = _Walk(a, b)
    if a.events and b.events:
        for i, j in align(a, b):
            walk.step(i, j)
    return walk


def _pick(walk: _Walk, a: Trace, b: Trace, output: str | None,
          audited: tuple[str, str] | None = None) -> Origin | NoOrigin:
    if not a.events or not b.events:
        return NoOrigin("a trace is empty")
    if output is not None and audited is not None:
        for label, trace, digest in (("a", a, audited[0]), ("b", b, audited[1])):
            traced = _output_digest(trace, output)
            if traced is not None and not str(digest).startswith(traced):
                return NoOrigin(f"tracing changed this output on side {label} (torch takes "
                                "other code paths under a dispatch mode), so its trace does "
                                "not explain the results")
    origins = walk.origins
    if output is not None and b.anchor(output) is not None:
        upstream_a = _upstream(a, output, walk.b.seen)
        if upstream_a is not None:
            upstream_b: dict[int, set[str]] | None = None  # walked only if a's is not enough
            kept = []
            for origin in origins:
                if origin.call_index_a not in upstream_a:
                    if upstream_b is None:
                        upstream_b = _upstream(b, output, walk.a.seen) or {}
                    if origin.call_index_b not in upstream_b:
                        continue
                kept.append(_for_output(origin, a, b, upstream_a))
            origins = kept
    cut = " (a trace was cut short)" if a.truncated or b.truncated else ""
    if origins:
        first = origins[0]
        return Origin(first.op, first.call_index_a, first.call_index_b, first.source_line,
                      first.distance, first.note, more=len(origins) - 1)
    if walk.untraced is not None:
        return NoOrigin(walk.untraced + cut)
    if walk.origins:
        return NoOrigin(f"no traced op this output is computed from differs{cut}")
    if walk.differs:
        return NoOrigin("values differ only downstream of one-sided ops" + cut)
    return NoOrigin("no traced op differs" + cut)


def _output_digest(trace: Trace, output: str) -> str | None:
    anchor = trace.anchor(output)
    return anchor.outputs[0] if anchor is not None and anchor.outputs else None


def _for_output(origin: Origin, a: Trace, b: Trace, upstream_a: dict[int, set[str]]
                ) -> Origin:
    """The origin, its distance taken at the op output the named output came from."""
    index_a, index_b = origin.call_index_a, origin.call_index_b
    if index_a is None or index_b is None or index_a not in upstream_a:
        return origin
    ea, eb = a.events[index_a], b.events[index_b]
    position = next((k for k, d in enumerate(ea.outputs) if d in upstream_a[index_a]), None)
    if position is None or len(ea.outputs) != len(eb.outputs):
        return origin
    return replace(origin, distance=_distance(ea, eb, position))


def _upstream(trace: Trace, output: str, other: set[str]) -> dict[int, set[str]] | None:
    """Positions of the events the named output's differing value came from (None: unknown).

    Followed back through values the other side lacks only: an op that reads a differing
    value but makes the same one (`ones_like(loss)`) passes no difference on.
    """
    anchor = trace.anchor(output)
    if anchor is None:
        return None
    producers = trace.producers()  # those after the anchor are cut by `bisect` below
    found: dict[int, set[str]] = {}  # event position -> which of its outputs were followed
    queue = [(digest, anchor.index) for digest in anchor.inputs
             if digest is not None and digest not in other]
    seen: set[tuple[str, int]] = set()
    while queue:
        digest, before = queue.pop()
        if (digest, before) in seen:
            continue
        seen.add((digest, before))
        if digest in trace.views and trace.views[digest] not in other:
            queue.append((trace.views[digest], before))
        indices = producers.get(digest, [])
        position = bisect.bisect_left(indices, before) - 1
        if position >= 0:
            index = indices[position]  # the latest op before the reader that made this value
            if index not in found:
                queue += [(d, index) for d in trace.events[index].inputs
                          if d is not None and d not in other]
            found.setdefault(index, set()).add(digest)
    return found


class Origins:
    """Traces beside results files, loaded once each, and compared once per pair of units.

    The report asks for every differing cell; many cells share a unit (one trace per
    scenario unit), so both the files and the comparisons are cached.
    """

    def __init__(self) -> None:
        self.files: dict[str, dict[str, Trace]] = {}
        self.walks: dict[tuple[tuple[str, str], tuple[str, str]], _Walk] = {}

    def trace(self, results_file: str, key: str) -> Trace | None:
        if results_file not in self.files:
            path = traces_path(Path(results_file))
            self.files[results_file] = read_traces(path) if path.is_file() else {}
        return self.files[results_file].get(key)

    def between(self, a: tuple[str, str], b: tuple[str, str], output: str | None = None,
                audited: tuple[str, str] | None = None) -> Origin | NoOrigin | None:
        """Where `output` of cells a and b, each (results file, trace key), first diverges
        (see `find_origin`); None when either has no trace."""
        trace_a, trace_b = self.trace(*a), self.trace(*b)
        if trace_a is None or trace_b is None:
            return None
        if (a, b) not in self.walks:
            self.walks[(a, b)] = _walk(trace_a, trace_b)
        return _pick(self.walks[(a, b)], trace_a, trace_b, output, audited)


# --- text ---------------------------------------------------------------------------------

def short_distance(value: Distance | None) -> str:
    """'1 ULP', 'max abs 3', or '' when the samples say nothing more."""
    return value.brief() if value is not None else ""


def describe_origin(origin: Origin | NoOrigin, detail: bool = False) -> str:
    """`first diverges at aten::sum (train.py:41), 1 ULP` (with the note when `detail`)."""
    if not origin:
        return f"origin not found: {getattr(origin, 'reason', 'no traces')}"
    assert isinstance(origin, Origin)
    text = f"first diverges at {origin.op}"
    if origin.source_line:
        text += f" ({origin.source_line})"
    how_far = short_distance(origin.distance)
    if how_far:
        text += f", {how_far}"
    if origin.more:
        text += f" (+{origin.more} more {'origin' if origin.more == 1 else 'origins'})"
    if detail and origin.note:
        text += f"; {origin.note}"
    return text
