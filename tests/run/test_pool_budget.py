"""The pool's core bookkeeping (audit.run.pool.budget), without threads or processes."""

from __future__ import annotations

import pytest

from audit.run.pool.budget import CoreBudget, cores_of


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_workers_hold_their_cores_until_they_end() -> None:
    budget = CoreBudget(4)
    budget.worker_started(1)
    budget.worker_started(1)
    assert budget.free() == 2 and budget.wide == 0
    budget.worker_started(2)
    assert budget.free() == 0 and budget.wide == 1 and budget.busy == 4
    budget.worker_ended(2)
    budget.worker_ended(1)
    assert budget.free() == 3 and budget.wide == 0


def test_a_background_worker_holds_no_core_while_a_wide_worker_runs() -> None:
    budget = CoreBudget(2)
    budget.worker_started(2)
    budget.worker_started(1, background=True)
    budget.background_unit_started()
    assert budget.background == 1 and budget.free() == 0  # the wide worker's two cores
    budget.worker_ended(2)
    # No wide worker: the unit it is still running holds a core until it ends.
    assert budget.free() == 1
    budget.background_unit_ended()
    assert budget.free() == 2
    budget.worker_ended(1, background=True)
    assert budget.background == 0 and budget.free() == 2


def test_shadowed_counts_the_time_any_wide_worker_ran() -> None:
    clock = Clock()
    budget = CoreBudget(4, clock=clock)
    budget.worker_started(1)  # a narrow worker casts no shadow
    clock.now += 5
    assert budget.shadowed() == 0.0
    budget.worker_started(2)
    clock.now += 3
    assert budget.shadowed() == pytest.approx(3.0)  # still running: counted up to now
    budget.worker_started(2)  # a second wide one beside it: the same seconds, once
    clock.now += 2
    budget.worker_ended(2)
    clock.now += 5
    budget.worker_ended(2)
    assert budget.shadowed() == pytest.approx(10.0)
    clock.now += 50  # no wide worker: nothing more counts
    assert budget.shadowed() == pytest.approx(10.0)
    budget.worker_started(3)
    clock.now += 1.5
    assert budget.shadowed() == pytest.approx(11.5)


def test_a_background_worker_casts_no_shadow() -> None:
    clock = Clock()
    budget = CoreBudget(2, clock=clock)
    budget.worker_started(1, background=True)
    clock.now += 4
    assert budget.shadowed() == 0.0 and budget.wide == 0


def test_cores_of_unparsed_thread_counts_is_every_core() -> None:
    assert cores_of({"threads": "auto"}, 6) == 6
    assert cores_of({"threads": "0"}, 6) == 1  # at least one
    assert cores_of({}, 1) == 1
