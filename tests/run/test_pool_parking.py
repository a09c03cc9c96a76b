"""Parked workers (audit.run.pool.parking): only fresh ones, while there is room."""

from __future__ import annotations

from typing import Any

from audit.run.pool import parking as parking_module
from audit.run.pool import priority
from audit.run.pool.parking import MAX_PARKED, PARK_MEMORY_FREE, Parking, worker_key


class Child:
    def __init__(self, forked: bool = False) -> None:
        self.forked = forked


def test_only_a_fresh_worker_is_parked_while_memory_and_room_allow(monkeypatch) -> None:
    monkeypatch.setattr(parking_module, "memory_available", lambda: 4 * PARK_MEMORY_FREE)
    parking = Parking(enabled=True)
    fresh: Any = Child()
    assert parking.accepts(fresh)
    assert not parking.accepts(Child(forked=True))  # a fork server forks another at once
    assert not Parking(enabled=False).accepts(fresh)
    monkeypatch.setattr(parking_module, "memory_available", lambda: PARK_MEMORY_FREE - 1)
    assert not parking.accepts(fresh)
    monkeypatch.setattr(parking_module, "memory_available", lambda: None)  # unknown: room
    assert parking.accepts(fresh)
    for _ in range(MAX_PARKED):
        parking.add("k", Child())  # type: ignore[arg-type]
    assert not parking.accepts(fresh) and not parking.room()


def test_a_parked_worker_is_taken_once_and_unwanted_ones_are_handed_back() -> None:
    parking = Parking()
    one, two, other = Child(), Child(), Child()
    parking.add("a", one, warming=True)  # type: ignore[arg-type]
    parking.add("a", two)  # type: ignore[arg-type]
    parking.add("b", other, warming=True)  # type: ignore[arg-type]
    assert parking.take("a") is two and parking.warming == {"b"}
    assert parking.keep_only({"a"}) == [other] and parking.warming == set()
    assert parking.take("a") is one and parking.take("a") is None
    assert parking.count() == 0 and parking.clear() == []


def test_workers_of_the_same_line_and_priority_share_a_key() -> None:
    combo, header = {"threads": "1"}, {"keep_tensors": None}
    assert worker_key(combo, header) == worker_key(dict(combo), dict(header))
    assert worker_key(combo, header) != worker_key({"threads": "2"}, header)
    background = worker_key(combo, header, background=True)
    assert background == f"{priority.BACKGROUND} {worker_key(combo, header)}"
