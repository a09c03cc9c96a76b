"""Following the values along two aligned traces, to the ops where they start to differ.

Walking the aligned pairs (audit.trace.align) in order, every value on each side is
*shared* (the other side saw the same digest), *restructured* (computed on one side only,
by ops the other side lacks, from shared values), *tainted* (inherited from a difference)
or *untraced* (read but produced by nothing traced: numpy, a file). An origin is an
aligned op pair whose inputs are shared or restructured but whose outputs differ: ops
downstream of it read tainted values and are not origins. A one-sided op sequence whose
result first differs at an anchor is an origin too (e.g. `addmm` vs `mm` + `add`).
"""

from __future__ import annotations

from dataclasses import dataclass

from audit.capture.distance import Distance, distance
from audit.trace.align import align
from audit.trace.model import ANCHORS, UNINITIALISED, Event, Trace
from audit.trace.samples import sample_of

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


class Side:
    """What is known about the values of one trace while walking."""

    def __init__(self, trace: Trace) -> None:
        self.trace = trace
        self.seen = trace.digests()
        self.status: dict[str, str] = {}
        self.producer: dict[str, int] = {}  # digest -> event index, one-sided ops only

    def state(self, digest: str | None, other: Side) -> str:
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


class Walk:
    """The two sides' values while walking the aligned pairs (`step`), and what was found."""

    def __init__(self, a: Trace, b: Trace) -> None:
        self.a, self.b = Side(a), Side(b)
        self.origins: list[Origin] = []
        self.untraced: str | None = None  # first difference read from outside the trace
        self.differs = False

    def worst(self, side: Side, other: Side, digests: list[str | None]) -> str:
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

    def one_sided(self, side: Side, other: Side, event: Event) -> None:
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
                      source_line=source, distance=distance_at(ea, eb, position),
                      note="; ".join(note for note in notes if note) or None)

    def producer_of(self, side: Side, digest: str | None) -> Event | None:
        index = side.producer.get(digest) if digest is not None else None
        return side.trace.events[index] if index is not None else None

    def feeding(self, side: Side, label: str, digests: list[str | None]) -> list[str]:
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


def _first_difference(ea: Event, eb: Event, a: Side, b: Side) -> int | None:
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


def distance_at(ea: Event, eb: Event, position: int) -> Distance | None:
    if position >= len(ea.samples) or position >= len(eb.samples):
        return None
    sa, sb = sample_of(ea.samples[position]), sample_of(eb.samples[position])
    return distance(sa, sb) if sa is not None and sb is not None else None


def _where(event: Event) -> str:
    return f"{event.op} ({event.source})" if event.source else event.op



def walk_traces(a: Trace, b: Trace) -> Walk:
    """The walk along `a` and `b` aligned: every origin, in order, and what else it learnt."""
    found = Walk(a, b)
    if a.events and b.events:
        for i, j in align(a, b):
            found.step(i, j)
    return found
