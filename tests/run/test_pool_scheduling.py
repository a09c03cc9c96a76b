"""Workers side by side (audit.run.pool.pool): what the pool starts next, and beside whom.

Simulated workers check the policy: never more cores busy than --jobs, a combination using
every core alone, a background worker (idle priority) only beside a wide one. A real pool of
two cores checks that the units background workers ran give the digests of a run without them.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections import deque
from typing import Any

import pytest

from audit.run.pool import forkserver, priority
from audit.run.pool import session as session_module
from audit.run.pool.budget import cores_of
from audit.run.pool.events import Finished, Ready, Started
from audit.run.pool.pool import Pool
from audit.run.pool.session import WorkerSession
from audit.run.pool.task import Job, Task

# --- the scheduler, with simulated workers -------------------------------------------------

class FakeChild:
    """Stands in for a worker process: each unit 'runs' for a few milliseconds."""

    busy = 0  # cores in use by fake workers now (background ones aside)
    peak = 0
    wide = 0  # fake workers of more than one core at work now
    background_now = 0  # background fake workers at work now, and their most at once
    background_peak = 0
    lock = threading.Lock()
    log: list[tuple[str, int]] = []  # (combo, cores) of each job as it started
    background_log: list[tuple[str, int]] = []  # (combo, wide workers beside it) of each

    def __init__(self, task_key: str, environ: dict[str, str], header: dict[str, Any],
                 servers: Any = None) -> None:
        self.task_key, self.cores = task_key, int(environ["CORES"])
        self.events: deque[Any] = deque([Ready(effective={}, missing={}, priority="normal")])
        self.effective: dict[str, str] | None = None
        self.ran = 0
        self.spawned = time.monotonic()
        self.crash = environ.get("CRASH") == "1"
        self.background = environ.get(priority.PRIORITY_VARIABLE) == priority.BACKGROUND

    def send(self, message: dict[str, Any]) -> bool:
        if self.crash:
            self.events.append(None)
            return True
        with FakeChild.lock:
            if self.background:
                FakeChild.background_now += 1
                FakeChild.background_peak = max(FakeChild.background_peak,
                                                FakeChild.background_now)
                FakeChild.background_log.append((self.task_key, FakeChild.wide))
            else:
                FakeChild.busy += self.cores
                FakeChild.wide += self.cores > 1
                FakeChild.peak = max(FakeChild.peak, FakeChild.busy)
                FakeChild.log.append((self.task_key, self.cores))
            others = FakeChild.busy - (0 if self.background else self.cores)
        time.sleep(0.005)
        with FakeChild.lock:
            if self.background:
                FakeChild.background_now -= 1
            else:
                FakeChild.busy -= self.cores
                FakeChild.wide -= self.cores > 1
        self.events.append(Started(unit=message["id"]))
        self.events.append(Finished(unit=message["id"], rows=[{"others": others}],
                                    effective={}, seconds=0.005))
        return True

    def event(self, deadline: float) -> Any:
        return self.events.popleft() if self.events else None

    def close(self, wait: bool = True) -> None:
        pass

    def reap(self) -> None:
        pass

    def kill(self) -> None:
        pass

    def exit_message(self) -> str:
        return "worker exited with code -11"

    stderr = type("Closed", (), {"close": staticmethod(lambda: None)})()


class FakeUnit:
    def __init__(self, number: int) -> None:
        self.id = number
        self.scenario = type("S", (), {"name": f"s{number % 3}"})()

    def job(self) -> dict[str, Any]:
        return {"id": self.id}


class FakeHooks:
    """The runner's side of the pool (audit.run.pool.task.Hooks), noting what ends."""

    def __init__(self, combo: dict[str, str], finished: list, failed: list,
                 crash: str | None) -> None:
        self.combo, self.finished_list, self.failed_list = combo, finished, failed
        self.crash = crash

    def child_environ(self, combo: dict[str, str]) -> dict[str, str]:
        return {"CORES": combo["threads"], "CRASH": "1" if combo["name"] == self.crash else "0"}

    def child_header(self, combo: dict[str, str]) -> dict[str, Any]:
        return {"process_settings": combo}

    def ready(self, event: Ready) -> None:
        pass

    def started(self, job: Job, done: int, total: int) -> None:
        pass

    def finished(self, job: Job, event: Finished, effective: dict[str, str]) -> None:
        self.finished_list.append((self.combo, event))

    def failed(self, job: Job, status: str, message: str, effective: dict[str, str]) -> None:
        self.failed_list.append((self.combo["name"], status, message))

    def timeout_of(self, job: Job) -> float:
        return 300.0


def fake_tasks(cores: list[int], units: int, finished: list, failed: list,
               crash: str | None = None) -> list[Task]:
    tasks = []
    for index, count in enumerate(cores):
        combo = {"name": f"t{index}", "threads": str(count)}
        tasks.append(Task(combo, deque(Job(FakeUnit(n)) for n in range(units)),
                          cores_of(combo, 2), FakeHooks(combo, finished, failed, crash)))
    return tasks


def test_one_thread_combinations_run_side_by_side_all_core_ones_alone(monkeypatch) -> None:
    monkeypatch.setattr(session_module, "Child", FakeChild)
    FakeChild.busy = FakeChild.peak = 0
    finished: list = []
    failed: list = []
    tasks = fake_tasks([1, 1, 1, 2, 2], 20, finished, failed)
    Pool(jobs=2, backfill=False).run(tasks)  # background workers: the test below
    assert len(finished) == 100 and not failed
    assert FakeChild.peak == 2  # never more cores busy than --jobs
    one_core = [event.rows[0]["others"] for combo, event in finished if combo["threads"] == "1"]
    two_core = [event.rows[0]["others"] for combo, event in finished if combo["threads"] == "2"]
    assert max(one_core) == 1  # one-thread workers did run side by side
    assert max(two_core) == 0  # a worker using all cores ran alone


def test_a_background_worker_takes_one_core_units_only_beside_a_wide_worker(monkeypatch
                                                                           ) -> None:
    """Wide tasks run first, alone; beside each, one background worker (idle priority,
    audit.run.pool.priority) takes one-core units, and stops when no wide worker runs."""
    monkeypatch.setattr(session_module, "Child", FakeChild)
    FakeChild.busy = FakeChild.peak = FakeChild.wide = FakeChild.background_peak = 0
    FakeChild.log, FakeChild.background_log = [], []
    finished: list = []
    pool = Pool(jobs=2, backfill=True)
    pool.run(fake_tasks([1, 1, 2, 2], 40, finished, []))
    assert len(finished) == 160 and FakeChild.peak == 2
    assert pool.background_units == len(FakeChild.background_log) > 0
    assert FakeChild.background_peak == 1
    # Every background unit started while a wide worker was at work (a unit taken just
    # as the wide worker finished may see none: the pool then counts it as holding a core).
    beside = [wide for _, wide in FakeChild.background_log]
    assert sum(wide > 0 for wide in beside) >= len(beside) - 2
    # The wide tasks ran first: no normal one-core worker before the last wide unit.
    last_wide = max(i for i, (_, cores) in enumerate(FakeChild.log) if cores == 2)
    assert all(cores == 2 for _, cores in FakeChild.log[:last_wide])
    for key, _ in FakeChild.background_log:  # "background [combo, header]"
        label, _, parked_as = key.partition(" ")
        assert label == priority.BACKGROUND and json.loads(parked_as)[0]["threads"] == "1"

    FakeChild.background_log = []
    without = Pool(jobs=2, backfill=False)
    without.run(fake_tasks([1, 1, 2, 2], 10, finished, []))
    assert without.background_units == 0 and FakeChild.background_log == []
    assert not Pool(jobs=1, backfill=True).backfill  # --jobs 1: one worker, nothing beside


def test_a_background_unit_does_not_time_out_while_a_wide_worker_runs(monkeypatch) -> None:
    """It may get no cycles at all beside a wide worker: only the time after counts."""

    class Silent(FakeChild):
        def send(self, message: dict[str, Any]) -> bool:
            self.events.append(Started(unit=message["id"]))
            return True

        def event(self, deadline: float) -> Any:
            if self.events:
                return self.events.popleft()
            time.sleep(max(0.0, deadline - time.monotonic()))
            raise queue.Empty

    pool = Pool(jobs=2, backfill=True)
    finished: list = []
    failed: list = []
    (task,) = fake_tasks([1], 1, finished, failed)
    task.hooks.timeout_of = lambda job: 0.2
    child = Silent("t0", {"CORES": "1"}, {})
    child.background = True
    session = WorkerSession(pool.shared, task, child)
    assert session.wait_ready() is None and child.effective == {}
    with pool.lock:
        pool.budget.worker_started(2)  # a wide worker runs

    def wide_worker_ends() -> None:
        time.sleep(0.6)
        with pool.lock:
            pool.budget.worker_ended(2)

    threading.Thread(target=wide_worker_ends, daemon=True).start()
    started = time.monotonic()
    job = task.pending.popleft()
    assert child.send(job.message())
    assert session.run_job(job) == (True, ("timeout", "no result within 0.2 s"))
    assert time.monotonic() - started >= 0.6 + 0.2 - 0.05
    child.background = False  # a normal unit: its timeout counts from its start
    started = time.monotonic()
    with pool.lock:
        pool.budget.worker_started(2)
    assert child.send(job.message())
    assert session.run_job(job)[1] == ("timeout", "no result within 0.2 s")
    assert time.monotonic() - started < 0.6


def test_jobs_1_runs_everything_one_at_a_time(monkeypatch) -> None:
    monkeypatch.setattr(session_module, "Child", FakeChild)
    FakeChild.busy = FakeChild.peak = 0
    finished: list = []
    Pool(jobs=1).run(fake_tasks([1, 1, 1], 5, finished, []))
    assert len(finished) == 15 and FakeChild.peak == 1


def test_a_worker_that_dies_before_running_anything_fails_its_tasks_units(monkeypatch) -> None:
    monkeypatch.setattr(session_module, "Child", FakeChild)
    finished: list = []
    failed: list = []
    Pool(jobs=2).run(fake_tasks([1, 1], 4, finished, failed, crash="t1"))
    assert len(finished) == 4  # t0's units
    assert [item[:2] for item in failed] == [("t1", "crashed")] * 4
    assert "worker exited with code" in failed[0][2]


def test_cores_of_a_combination() -> None:
    assert cores_of({"threads": "1", "cpu_capability": "avx2"}, 4) == 1
    assert cores_of({"threads": "8"}, 4) == 4  # more threads than cores: alone
    assert cores_of({"cpu_capability": "avx2"}, 4) == 4  # torch's default: every core


# --- a real pool, with and without background workers ------------------------------------

def audit_twice_in_pool() -> list[tuple[dict[tuple[str, str, str], Any], int]]:
    """Four settings combinations (two of them wide) of five scenarios, in a real pool of
    2 cores, without and then with background workers: for each, digests by cell and how
    many units background workers ran. The first run leaves the fork servers warm, so the
    second one's background worker is ready milliseconds after the first wide one starts."""
    import torch

    from audit.run.runner import Plan, Runner
    from audit.scenarios import registry

    registry.load_builtin()
    known = registry.all_scenarios()
    names = ("ops.layer_norm", "init.conv", "seed.manual_seed_246_rand", "ops.softmax",
             "train.mlp_sgd")
    scenarios = [known[name] for name in names]
    settings = {"threads": ["1", "2"], "cpu_capability": ["default", "avx2"],
                "deterministic": ["off", "on"]}
    found = []
    with Pool(2, backfill=False) as pool:
        for backfill in (False, True):
            pool.scheduler.backfill, pool.shared.background_units = backfill, 0
            runner = Runner(Plan(scenarios, ["cpu"], settings), "test", torch.__version__,
                            pool=pool)
            pool.run(runner.tasks({"cpu": None}))
            found.append(({(row["scenario"], str(row["output"]),
                            json.dumps(row["settings"], sort_keys=True)):
                           (row["status"], row["digest"]) for row in runner.collected},
                          pool.background_units))
    return found


@pytest.mark.skipif(not (priority.supported() and forkserver.supported()),
                    reason="background workers need SCHED_IDLE and forked workers (Linux)")
def test_units_background_workers_ran_give_the_digests_of_a_run_without_them() -> None:
    (without, none), (with_background, background) = audit_twice_in_pool()
    assert background > 0 and none == 0
    assert with_background == without and len(without) > 16
    assert all(status == "ok" for status, _ in without.values())

