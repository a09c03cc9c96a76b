"""Worker events decoded in one place (audit.run.pool.events); a line that is no event
fails the unit it came with, with a message that says what was wrong."""

from __future__ import annotations

import io
import queue
import threading
from collections import deque
from typing import Any

import pytest

from audit.run.channel import Channel
from audit.run.pool.budget import CoreBudget
from audit.run.pool.child import read_events
from audit.run.pool.estimates import Estimates
from audit.run.pool.events import (
    Done,
    Fatal,
    Finished,
    ProtocolError,
    Ready,
    Seal,
    Started,
    decode,
)
from audit.run.pool.forkserver import ForkServers
from audit.run.pool.parking import Parking
from audit.run.pool.session import Shared, WorkerSession
from audit.run.pool.task import Job, Task


def emitted(event: str, **payload: Any) -> str:
    """The line the real worker writes for `event`."""
    stream = io.StringIO()
    Channel(stream).emit(event, **payload)
    return stream.getvalue()


def test_every_event_the_worker_writes_decodes_to_its_type() -> None:
    ready = decode(emitted("ready", effective={"threads": "1"}, missing={"mkl_cbwr": None},
                           priority="idle"))
    assert ready == Ready(effective={"threads": "1"}, missing={"mkl_cbwr": None},
                          priority="idle")
    assert decode(emitted("start", unit=7)) == Started(unit=7)
    rows = [{"output": "x", "status": "ok", "digest": "ab"}]
    finish = decode(emitted("finish", unit=7, rows=rows, effective={}, seconds=0.25))
    assert finish == Finished(unit=7, rows=rows, effective={}, seconds=0.25, trace=None)
    traced = decode(emitted("finish", unit=8, rows=[], effective={}, seconds=1,
                            trace={"format": 1}))
    assert isinstance(traced, Finished) and traced.trace == {"format": 1}
    assert isinstance(traced.seconds, float)
    assert decode(emitted("fatal", error="ImportError: no torch")) == Fatal(
        error="ImportError: no torch")
    assert decode(emitted("done").encode()) == Done()


@pytest.mark.parametrize(("line", "says"), [
    ("not json at all\n", "not a JSON line: not json at all"),
    ("[1, 2]\n", "not a JSON object: [1, 2]"),
    ('{"unit": 3}\n', "unknown event None (known: ready, start, finish, fatal, done)"),
    ('{"event": "hello"}\n', "unknown event 'hello'"),
    ('{"event": "start"}\n', "'start' event without 'unit'"),
    ('{"event": "start", "unit": true}\n', "'start' event: 'unit' is not an integer: true"),
    ('{"event": "start", "unit": 1, "extra": 2}\n',
     "'start' event with unknown fields ['extra']"),
    ('{"event": "finish", "unit": 1, "rows": [1], "effective": {}, "seconds": 1}\n',
     "'finish' event: 'rows' is not a list of objects: [1]"),
    ('{"event": "finish", "unit": 1, "rows": [], "effective": {}, "seconds": "1"}\n',
     "'finish' event: 'seconds' is not a number"),
    ('{"event": "finish", "unit": 1, "rows": [], "effective": {}, "seconds": 1, '
     '"trace": null}\n', "'finish' event: 'trace' is not an object: null"),
    ('{"event": "ready", "effective": {}, "missing": {}}\n', "'ready' event without 'priority'"),
    ('{"event": "fatal", "error": 3}\n', "'fatal' event: 'error' is not a string: 3"),
])
def test_a_line_that_is_no_event_is_a_protocol_error(line: str, says: str) -> None:
    with pytest.raises(ProtocolError) as raised:
        decode(line)
    assert str(raised.value).startswith(says)


def test_a_long_bad_line_is_cut_short_in_the_message() -> None:
    with pytest.raises(ProtocolError) as raised:
        decode("x" * 1000)
    assert len(str(raised.value)) < 160 and str(raised.value).endswith("...")


def test_the_reader_queues_events_errors_and_drops_a_line_cut_off_by_death() -> None:
    lines = (emitted("ready", effective={}, missing={}, priority="normal")
             + "garbage\n" + emitted("start", unit=1) + '{"event": "fin')
    events: queue.Queue[Any] = queue.Queue()
    read_events(io.BytesIO(lines.encode()), events)
    found = [events.get_nowait() for _ in range(events.qsize())]
    assert isinstance(found[0], Ready) and found[2] == Started(unit=1)
    assert isinstance(found[1], ProtocolError) and "garbage" in str(found[1])
    assert found[3:] == [None]  # the cut-off line is no error: its exit says why


def test_sealed_lines_decode_and_lines_without_the_workers_seal_do_not() -> None:
    """The parent takes only lines sealed with the key it gave the worker, in order: a
    line the scenario wrote to the pipe, one sealed with another key, or one replayed is a
    breach that names itself."""
    stream = io.StringIO()
    seal = Seal()
    channel = Channel(stream, key=seal.key)
    channel.emit("start", unit=1)
    channel.emit("finish", unit=1, rows=[], effective={}, seconds=0.5)
    first, second = stream.getvalue().splitlines(keepends=True)
    assert decode(first, seal) == Started(unit=1)
    forged = emitted("finish", unit=1, rows=[], effective={}, seconds=0.5)
    with pytest.raises(ProtocolError, match="did not write .*written by the scenario"):
        decode(forged, seal)
    other = io.StringIO()
    Channel(other, key=b"k" * 32).emit("finish", unit=1, rows=[], effective={}, seconds=0.5)
    with pytest.raises(ProtocolError, match="no valid seal"):
        decode(other.getvalue(), seal)
    with pytest.raises(ProtocolError, match="replayed or lost"):
        decode(first, seal)  # line 0 again where line 1 is due
    fresh = Seal(seal.key)
    assert decode(first, fresh) == Started(unit=1)
    assert isinstance(decode(second, fresh), Finished)
    tampered = second.replace('"seconds": 0.5', '"seconds": 9.5')
    with pytest.raises(ProtocolError, match="no valid seal"):
        decode(tampered, Seal(seal.key))


# --- a broken worker fails its unit --------------------------------------------------------

class Child:
    """A worker whose events are given: each item is an event, an error to raise, or None."""

    def __init__(self, *items: Any) -> None:
        self.items = deque(items)
        self.effective: dict[str, str] | None = {}  # ready already
        self.ran = 0
        self.background = False
        self.killed = False
        self.stderr = io.BytesIO()

    def send(self, message: dict[str, Any]) -> bool:
        return True

    def event(self, deadline: float) -> Any:
        item = self.items.popleft() if self.items else None
        if isinstance(item, Exception):
            raise item
        return item

    def kill(self) -> None:
        self.killed = True

    def exit_message(self) -> str:
        return "worker exited with code 1"


class Hooks:
    def __init__(self) -> None:
        self.failed_units: list[tuple[int, str, str]] = []
        self.finished_units: list[int] = []

    def child_environ(self, combo: dict[str, str]) -> dict[str, str]:
        return {}

    def child_header(self, combo: dict[str, str]) -> dict[str, Any]:
        return {}

    def ready(self, event: Ready) -> None:
        pass

    def started(self, job: Job, done: int, total: int) -> None:
        pass

    def finished(self, job: Job, event: Finished, effective: dict[str, str]) -> None:
        self.finished_units.append(job.unit.id)

    def failed(self, job: Job, status: str, message: str, effective: dict[str, str]) -> None:
        self.failed_units.append((job.unit.id, status, message))

    def timeout_of(self, job: Job) -> float:
        return 60.0


class Unit:
    def __init__(self, number: int) -> None:
        self.id = number
        self.scenario = type("Scenario", (), {"name": "s"})()

    def job(self) -> dict[str, Any]:
        return {"id": self.id}


def session_of(child: Child, units: int) -> tuple[WorkerSession, Hooks, Task]:
    hooks = Hooks()
    task = Task({}, deque(Job(Unit(n)) for n in range(units)), 1, hooks, running=1)
    shared = Shared(threading.Condition(), CoreBudget(1), Estimates(), Parking(),
                    ForkServers())  # no server starts: the worker is given
    return WorkerSession(shared, task, child), hooks, task  # type: ignore[arg-type]


def test_a_malformed_event_fails_the_unit_and_stops_the_worker() -> None:
    child = Child(Started(unit=0), Finished(unit=0, rows=[], effective={}, seconds=0.1),
                  Started(unit=1), ProtocolError("unknown event 'hello'"))
    session, hooks, task = session_of(child, 3)
    assert session.work() is False
    assert hooks.finished_units == [0]
    assert hooks.failed_units == [(1, "crashed", "worker broke the protocol: unknown event "
                                             "'hello'")]
    assert child.killed and len(task.pending) == 1  # left to a fresh worker


def test_an_event_out_of_turn_fails_the_unit() -> None:
    child = Child(Started(unit=0), Ready(effective={}, missing={}, priority="normal"))
    session, hooks, _ = session_of(child, 1)
    assert session.work() is False
    assert hooks.failed_units == [(0, "crashed", "worker broke the protocol: 'ready' event "
                                             "during a unit")]


def test_an_event_for_a_unit_the_worker_was_not_given_fails_the_unit() -> None:
    """A finish for unit 5 while unit 0 runs: a unit a scenario wrote into the worker's
    stdin, whose rows must not be filed under unit 0."""
    child = Child(Started(unit=0), Finished(unit=5, rows=[], effective={}, seconds=0.1))
    session, hooks, _ = session_of(child, 1)
    assert session.work() is False
    assert hooks.finished_units == [] and child.killed
    assert hooks.failed_units == [(0, "crashed", "worker broke the protocol: 'finish' event "
                                             "for unit 5 during another unit")]


def test_a_worker_that_breaks_the_protocol_before_ready_fails_its_tasks_units() -> None:
    child = Child(ProtocolError("not a JSON line: hello"))
    child.effective = None
    session, hooks, task = session_of(child, 2)
    assert session.work() is False
    assert [(unit, status) for unit, status, _ in hooks.failed_units] == [(0, "crashed"),
                                                                          (1, "crashed")]
    assert hooks.failed_units[0][2] == "worker broke the protocol: not a JSON line: hello"
    assert not task.pending
