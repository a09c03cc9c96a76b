"""What an op trace holds: the recorded events of one run of one scenario unit, in call order.

Torch-free: traces are read, aligned and compared (audit.trace.origin) where torch is absent,
and written by the recorder (audit.trace.recorder) as `Trace.to_json`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

FORMAT = "repro-audit-trace/1"
DIGEST_CHARS = 32  # 128 bits of the canonical BLAKE3 digest: ample to tell values apart
UNINITIALISED = "uninitialised"
ANCHORS = ("checkpoint", "output")  # event kinds that name a value (alignment anchors)


@dataclass
class Event:
    """One recorded op call, checkpoint or scenario output.

    For an op, `inputs` are the digests of the tensors it read and `outputs` of those it
    returned (or, for an in-place op returning nothing, those it wrote); `shapes`, `dtypes`
    and `samples` describe the outputs. A checkpoint or output names one tensor: `op` is the
    name, and inputs and outputs are both its digest. Python numbers an op returns (`item()`)
    are recorded as `scalar:` digests. `args` fingerprints the non-tensor arguments.
    """

    index: int
    kind: str  # "op", "checkpoint" or "output"
    op: str
    overload: str = ""
    source: str | None = None  # "file.py:41", the first frame outside torch and audit
    inputs: list[str | None] = field(default_factory=list)
    outputs: list[str | None] = field(default_factory=list)
    shapes: list[list[int]] = field(default_factory=list)
    dtypes: list[str] = field(default_factory=list)
    samples: list[dict[str, Any] | None] = field(default_factory=list)
    args: str | None = None

    def to_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {"index": self.index, "kind": self.kind, "op": self.op}
        for name in ("overload", "source", "inputs", "outputs", "shapes", "dtypes", "samples",
                     "args"):
            value = getattr(self, name)
            if value:
                record[name] = value
        return record

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Event:
        return cls(index=int(value["index"]), kind=str(value["kind"]), op=str(value["op"]),
                   overload=value.get("overload", ""), source=value.get("source"),
                   inputs=list(value.get("inputs", [])), outputs=list(value.get("outputs", [])),
                   shapes=[list(shape) for shape in value.get("shapes", [])],
                   dtypes=list(value.get("dtypes", [])), samples=list(value.get("samples", [])),
                   args=value.get("args"))


@dataclass
class Trace:
    """Everything one run of one scenario unit did, in call order."""

    events: list[Event] = field(default_factory=list)
    views: dict[str, str] = field(default_factory=dict)  # view digest -> its base's digest
    torch: str = ""
    truncated: bool = False
    skipped: int = 0  # view and uninitialised-memory op calls, not recorded
    # (events counted, producers, anchors): built on first use by `producers`/`anchor`
    _index: tuple[int, dict[str, list[int]], dict[str, Event]] | None = field(
        default=None, repr=False, compare=False)

    def _indexed(self) -> tuple[int, dict[str, list[int]], dict[str, Event]]:
        """Producers and output anchors, built once per trace (the origin of every output
        of a unit is asked of the same two traces)."""
        if self._index is None or self._index[0] != len(self.events):
            producers: dict[str, list[int]] = {}
            anchors: dict[str, Event] = {}
            for event in self.events:
                if event.kind == "op":
                    for digest in event.outputs:
                        if digest is not None:
                            producers.setdefault(digest, []).append(event.index)
                elif event.kind == "output":
                    anchors[event.op] = event  # the last one of a name
            self._index = (len(self.events), producers, anchors)
        return self._index

    def producers(self) -> dict[str, list[int]]:
        """digest -> positions of the ops that output it, in call order."""
        return self._indexed()[1]

    def anchor(self, output: str) -> Event | None:
        """The last `output` event of that name."""
        return self._indexed()[2].get(output)

    def digests(self) -> set[str]:
        """Every value this run saw: read, produced or named."""
        seen: set[str] = set()
        for event in self.events:
            seen.update(d for d in event.inputs if d is not None)
            seen.update(d for d in event.outputs if d is not None)
        return seen

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "torch": self.torch, "truncated": self.truncated,
                "skipped": self.skipped, "views": self.views,
                "events": [event.to_json() for event in self.events]}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Trace:
        if value.get("format") != FORMAT:
            raise ValueError(f"not a trace of format {FORMAT}: {value.get('format')!r}")
        return cls(events=[Event.from_json(item) for item in value.get("events", [])],
                   views=dict(value.get("views", {})), torch=str(value.get("torch", "")),
                   truncated=bool(value.get("truncated", False)),
                   skipped=int(value.get("skipped", 0)))
