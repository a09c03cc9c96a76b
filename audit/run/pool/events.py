"""What a worker writes back (audit.run.worker), decoded in one place into typed events.

Each line a worker writes on its protocol stream is one JSON object naming its event. Both
ends are this very package, so anything else (not JSON, an unknown event, a field missing,
of the wrong type or not known) is a broken worker: `decode` raises `ProtocolError`, and
the unit it was running fails with that message instead of waiting for a line that never
comes.

Every line is also sealed (`seal`): a keyed hash under a key the parent makes for each worker
and hands it on stdin with the job, and a sequence number. Scenario code runs in the
worker and can write to every descriptor it inherits, the protocol pipe included (it is
listed in /proc/self/fd); a line it writes there has no valid seal, and fails the unit
(`Seal.open`) instead of being taken for the worker's word. A line replayed or dropped
breaks the sequence. This guards the channel against writes, not against code that goes
through the worker's memory for the key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, field, fields
from typing import Any, Callable, ClassVar, Union


class ProtocolError(Exception):
    """A line from a worker that is no event of the protocol."""


@dataclass(frozen=True)
class Ready:
    """The worker imported torch and its scenarios; its process settings as in effect."""

    name: ClassVar[str] = "ready"
    effective: dict[str, str]
    missing: dict[str, Any]  # setting -> why its library is absent here (or None)
    priority: str  # what audit.run.pool.priority set: "normal", "idle", "nice 19"


@dataclass(frozen=True)
class Started:
    """The worker began a unit."""

    name: ClassVar[str] = "start"
    unit: int


@dataclass(frozen=True)
class Finished:
    """A unit ran to its end: its partial rows, run settings in effect, and time taken."""

    name: ClassVar[str] = "finish"
    unit: int
    rows: list[dict[str, Any]]
    effective: dict[str, str]
    seconds: float
    trace: dict[str, Any] | None = None  # a trace_only unit's op trace, when one was made


@dataclass(frozen=True)
class Fatal:
    """The worker cannot go on (it exits after saying so)."""

    name: ClassVar[str] = "fatal"
    error: str


@dataclass(frozen=True)
class Done:
    """No more units came (its stdin closed): the worker exits."""

    name: ClassVar[str] = "done"


Event = Union[Ready, Started, Finished, Fatal, Done]
KINDS: dict[str, type[Event]] = {kind.name: kind for kind in (Ready, Started, Finished, Fatal,
                                                                Done)}


@dataclass(frozen=True)
class Check:
    """What a field's value must be, said as the error message says it."""

    says: str
    accepts: Callable[[Any], bool] = field(compare=False)


OBJECT = Check("an object", lambda value: isinstance(value, dict))
TEXT = Check("a string", lambda value: isinstance(value, str))
INTEGER = Check("an integer", lambda value: isinstance(value, int)
                and not isinstance(value, bool))
NUMBER = Check("a number", lambda value: isinstance(value, (int, float))
               and not isinstance(value, bool))
ROWS = Check("a list of objects", lambda value: isinstance(value, list)
             and all(isinstance(row, dict) for row in value))
# Each event's fields and what they hold; a field with a default may be left out.
SCHEMA: dict[str, dict[str, Check]] = {
    "ready": {"effective": OBJECT, "missing": OBJECT, "priority": TEXT},
    "start": {"unit": INTEGER},
    "finish": {"unit": INTEGER, "rows": ROWS, "effective": OBJECT, "seconds": NUMBER,
               "trace": OBJECT},
    "fatal": {"error": TEXT},
    "done": {},
}


def _mac(key: bytes, body: bytes) -> str:
    return hashlib.blake2b(body, key=key, digest_size=16).hexdigest()


MAC_CHARACTERS = 32  # hex digits of a seal


def seal(key: bytes, number: int, message: dict[str, Any]) -> str:
    """One protocol line (without its newline): the keyed hash of the body, then the body,
    which carries the line's sequence number `number` in "seq"."""
    body = json.dumps({**message, "seq": number}, sort_keys=True)
    return f"{_mac(key, body.encode())} {body}"


class Seal:
    """The parent's end of one worker's seals: its key (sent in the job) and the sequence
    number the next line must carry."""

    def __init__(self, key: bytes | None = None) -> None:
        self.key = key or secrets.token_bytes(32)
        self.next = 0

    def open(self, line: bytes | str) -> bytes:
        """The body of a sealed line; ProtocolError when the seal is not the worker's."""
        raw = line.encode() if isinstance(line, str) else line
        mac, _, body = raw.partition(b" ")
        if len(mac) != MAC_CHARACTERS or not hmac.compare_digest(
                mac, _mac(self.key, body.rstrip(b"\n")).encode()):
            raise ProtocolError("a line the worker did not write (no valid seal: written "
                                f"by the scenario?): {shorten(raw)}")
        return body

    def count(self, number: Any) -> None:
        """Check a sealed line's sequence number: a line replayed or lost is a breach."""
        if number != self.next:
            raise ProtocolError(f"sealed line {number!r} where line {self.next} was due "
                                "(replayed or lost)")
        self.next += 1


def decode(line: bytes | str, sealed: Seal | None = None) -> Event:
    """The event one line of a worker's protocol stream holds; ProtocolError if none.
    With `sealed`, the line must carry the worker's seal and the next sequence number."""
    if sealed is not None:
        line = sealed.open(line)
    try:
        message = json.loads(line)
    except ValueError:
        raise ProtocolError(f"not a JSON line: {shorten(line)}") from None
    if not isinstance(message, dict):
        raise ProtocolError(f"not a JSON object: {shorten(line)}")
    if sealed is not None:
        sealed.count(message.pop("seq", None))
    name = message.pop("event", None)
    kind = KINDS.get(name) if isinstance(name, str) else None
    if kind is None:
        known = ", ".join(KINDS)
        raise ProtocolError(f"unknown event {name!r} (known: {known}): {shorten(line)}")
    schema = SCHEMA[kind.name]
    unknown = sorted(set(message) - set(schema))
    if unknown:
        raise ProtocolError(f"{kind.name!r} event with unknown fields {unknown}")
    optional = {item.name for item in fields(kind) if item.default is None}
    for key, check in schema.items():
        if key not in message:
            if key in optional:
                continue
            raise ProtocolError(f"{kind.name!r} event without {key!r}")
        if not check.accepts(message[key]):
            raise ProtocolError(f"{kind.name!r} event: {key!r} is not {check.says}: "
                                f"{shorten(json.dumps(message[key]))}")
    if kind is Finished:
        message["seconds"] = float(message["seconds"])
    return kind(**message)


def shorten(text: bytes | str, limit: int = 120) -> str:
    """`text` on one line, cut to `limit` characters, for an error message."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = text.strip()
    return text if len(text) <= limit else text[:limit - 3] + "..."
