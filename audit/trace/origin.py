"""Where two traces of the same scenario start to differ, across environments.

Other tools match ops by position inside one process; across torch versions the op
sequence itself changes (an extra `clone`, an op split in two, a view more or less), so
here the two traces are first aligned as sequences (audit.trace.align), then the values are
followed (audit.trace.walk): the origin is the first aligned op pair whose inputs agree but
whose outputs differ. For one named output, only origins that output's value was computed
from count: they are found by walking upstream from where the output is named.

No torch here: reports are written without it.
"""

from __future__ import annotations

import bisect
from dataclasses import replace
from pathlib import Path

from audit.capture.distance import Distance
from audit.store.traces import traces_path
from audit.trace.files import read_traces
from audit.trace.model import Trace
from audit.trace.walk import NoOrigin, Origin, Walk, distance_at, walk_traces


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
    return _pick(walk_traces(a, b), a, b, output, audited)


def _pick(walk: Walk, a: Trace, b: Trace, output: str | None,
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
    return replace(origin, distance=distance_at(ea, eb, position))


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
        self.walks: dict[tuple[tuple[str, str], tuple[str, str]], Walk] = {}

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
            self.walks[(a, b)] = walk_traces(trace_a, trace_b)
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
