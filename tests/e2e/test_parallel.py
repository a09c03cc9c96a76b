"""Workers side by side (audit.run.pool.pool) and traces on demand (audit.trace.needs, run --trace).

End to end: the default matrix on a small selection, run serially with every unit traced
(fresh worker processes) and in parallel with traces on demand (workers forked from a
server that imported torch, audit.run.pool.forkserver), gives the same digest for every output
of every
settings combination, and a report naming an origin for the same differing outputs (the
origin may come from another context of the other axes, so its distance may differ).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import pytest

from audit.run.pool import forkserver, priority
from audit.run.pool import pool as pool_module
from audit.run.pool.pool import Hooks, Job, Pool, Task, cores_of
from audit.store.results import make_row, unit_key
from audit.trace.needs import Source, differing, every_cell, wanted
from audit.trace.record import read_traces

ROOT = Path(__file__).resolve().parents[2]
# Differs along threads and cpu_capability (ops.layer_norm), along cpu_capability only
# (init.conv), along nothing (seed.manual_seed_246_rand); together about 0.1 s a unit.
SELECTION = ("ops.layer_norm", "init.conv", "seed.manual_seed_246_rand")


def audit_command(out: Path, *arguments: str) -> list[str]:
    select = [item for name in SELECTION for item in ("--select", name)]
    return [sys.executable, "-m", "audit", "run", "--matrix", "matrices/default.toml", *select,
            "--devices", "cpu", "--out", str(out), *arguments]


def read_rows(out: Path) -> list[dict]:
    (results,) = out.glob("*.jsonl")
    return [json.loads(line) for line in results.read_text(encoding="utf-8").splitlines()[1:]]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, list[dict]]]:
    """The serial run with every unit traced, and a parallel one tracing on demand.

    Both run at once: the serial one keeps one core busy, the other takes the rest, and
    neither may change the other's results (which is what is checked).
    """
    folder = tmp_path_factory.mktemp("parallel")
    variants = {"serial": ("--jobs", "1", "--trace-all"),
                "parallel": ("--jobs", "3")}  # the matrix says trace = true: on demand
    # The serial run's workers are fresh processes, the parallel run's are forked from a
    # server that imported torch (audit.run.pool.forkserver, where supported).
    environs = {"serial": {**os.environ, "REPRO_AUDIT_FORK": "0"}, "parallel": None}
    children = {name: subprocess.Popen(audit_command(folder / name, *arguments), cwd=ROOT,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True, env=environs[name])
                for name, arguments in variants.items()}
    found = {}
    for name, child in children.items():
        stdout, stderr = child.communicate(timeout=600)
        assert child.returncode == 0, stderr
        found[name] = (folder / name, read_rows(folder / name))
        SUMMARIES[name] = stdout.strip().splitlines()[-1]
    return found


SUMMARIES: dict[str, str] = {}  # the last line each run of `runs` printed


def by_cell(rows: list[dict]) -> dict[tuple[str, str, str], tuple[str, str | None]]:
    return {(row["scenario"], str(row["output"]), json.dumps(row["settings"], sort_keys=True)):
            (row["status"], row["digest"]) for row in rows}


def test_parallel_digests_equal_serial_ones_for_every_combination(runs) -> None:
    serial, parallel = by_cell(runs["serial"][1]), by_cell(runs["parallel"][1])
    assert serial == parallel
    combos = {(row["settings"]["threads"], row["settings"]["cpu_capability"],
               row["settings"]["deterministic"], row["settings"]["mkl_cbwr"],
               row["settings"]["onednn_isa"]) for row in runs["parallel"][1]}
    assert len(combos) == 2 * 3 * 2 + 2 + 2  # the product, and each [[settings.also]]
    assert all(status == "ok" for status, _ in parallel.values())
    # Each worker really ran with the threads it was given (checked by the runner, which
    # would have made the cells unavailable otherwise).
    assert all(row["settings"]["threads"] == row.get("requested", row["settings"])["threads"]
               for row in runs["parallel"][1])


def test_background_workers_ran_no_unit_of_the_serial_run(runs) -> None:
    assert "background workers" not in SUMMARIES["serial"]
    assert runs["serial"][1]


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
    scenarios = [known[name] for name in (*SELECTION, "ops.softmax", "train.mlp_sgd")]
    settings = {"threads": ["1", "2"], "cpu_capability": ["default", "avx2"],
                "deterministic": ["off", "on"]}
    found = []
    with Pool(2, backfill=False) as pool:
        for backfill in (False, True):
            pool.backfill, pool.background_units = backfill, 0
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


def test_traces_on_demand_are_those_of_differing_units(runs) -> None:
    (serial_folder, serial_rows), (parallel_folder, _) = runs["serial"], runs["parallel"]
    serial = read_traces(next(serial_folder.glob("*.traces.jsonl.gz")))
    parallel = read_traces(next(parallel_folder.glob("*.traces.jsonl.gz")))
    scenarios = {json.loads(key)[0] for key in parallel}
    assert scenarios == {"ops.layer_norm", "init.conv"}  # seed.* holds: never traced
    assert set(parallel) < set(serial)
    assert len(serial) == len({unit_key(r["scenario"], r["device"], r["settings"])
                               for r in serial_rows})


def origins_named(folder: Path) -> dict[tuple[str, str, str, str], bool]:
    """Every differing cell of the report (axis, value, scenario, output): has an origin."""
    from audit.judge.compare import compare
    from audit.store.results import read_all

    comparison = compare(read_all([str(folder)]))
    return {(axis, value, *key): bool(cell.origin)
            for axis, table in comparison.tables.items()
            for key, cells in table.cells.items()
            for value, cell in cells.items() if cell.differing}


def test_the_report_names_an_origin_wherever_it_does_with_every_unit_traced(runs) -> None:
    serial = origins_named(runs["serial"][0])
    parallel = origins_named(runs["parallel"][0])
    assert sum(serial.values()) > 0
    assert parallel == serial  # the same differing cells, each with an origin or not


def test_the_published_report_counts_the_same_origins(runs, tmp_path) -> None:
    counts = {}
    for name, (folder, _) in runs.items():
        out = tmp_path / name
        completed = subprocess.run(
            [sys.executable, "-m", "audit", "report", str(folder), "--out", str(out)],
            cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
        assert completed.returncode == 0, completed.stderr
        counts[name] = sum(path.read_text(encoding="utf-8").count("first diverges at")
                           for path in out.glob("*.md"))
    assert counts["serial"] > 0 and counts["parallel"] == counts["serial"]


# --- which units need a trace -------------------------------------------------------------

def row(scenario: str, output: str, digest: str, torch: str = "2.13.0", **settings: str
        ) -> dict[str, Any]:
    return make_row(scenario=scenario, output=output, status="ok", digest=digest,
                    repeatable=True, device="cpu", torch_version=torch, env_id=torch,
                    settings=settings)


def test_only_both_sides_of_a_differing_comparison_need_a_trace() -> None:
    rows = [row("a.sum", "x", "1", threads="1", cpu_capability="avx2"),
            row("a.sum", "x", "2", threads="2", cpu_capability="avx2"),
            row("a.sum", "x", "1", threads="1", cpu_capability="avx512"),
            row("a.sum", "x", "1", threads="2", cpu_capability="avx512"),
            row("b.same", "y", "7", threads="1", cpu_capability="avx2"),
            row("b.same", "y", "7", threads="2", cpu_capability="avx2")]
    cells = differing([Source("f", {}, rows)])
    need = wanted(cells, "f")
    expected = {json.dumps(["a.sum", "cpu", {"cpu_capability": "avx2", "threads": t}],
                           sort_keys=True) for t in ("1", "2")}
    # avx2 threads 1 vs 2 differ; at avx512 they agree, and across capabilities the
    # two-thread cells differ (2 vs 1): those are traced too.
    expected.add(json.dumps(["a.sum", "cpu", {"cpu_capability": "avx512", "threads": "2"}],
                            sort_keys=True))
    assert set(need) == expected
    assert len(every_cell([Source("f", {}, rows)])) == 6
    assert wanted(cells, "f", traced=set(need.values())) == {}


def test_across_environments_a_difference_needs_traces_on_both_sides() -> None:
    old = [row("a.f", "x", "1", torch="2.13.0", threads="1")]
    new = [row("a.f", "x", "2", torch="2.14.1", threads="1")]
    same = [row("a.f", "x", "1", torch="2.15.0", threads="1")]
    cells = differing([Source("old", {}, old), Source("new", {}, new),
                       Source("same", {}, same)])
    assert {cell.source for cell in cells} == {"old", "new", "same"}
    assert differing([Source("old", {}, old), Source("same", {}, same)]) == set()


def test_not_repeatable_values_are_not_compared_so_need_no_trace() -> None:
    rows = [row("a.f", "x", "1", threads="1"), row("a.f", "x", "2", threads="2")]
    rows[1]["repeatable"] = False
    assert differing([Source("f", {}, rows)]) == set()


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
        self.events: deque[dict[str, Any] | None] = deque([{"event": "ready", "effective": {}}])
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
        self.events.append({"event": "start", "unit": message["id"]})
        self.events.append({"event": "finish", "unit": message["id"], "rows": [],
                            "seconds": 0.005, "others": others})
        return True

    def event(self, deadline: float) -> dict[str, Any] | None:
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


def fake_tasks(cores: list[int], units: int, finished: list, failed: list,
               crash: str | None = None) -> list[Task]:
    def hooks(combo: dict[str, str]) -> Hooks:
        return Hooks(environ=lambda c: {"CORES": c["threads"],
                                        "CRASH": "1" if c["name"] == crash else "0"},
                     header=lambda c: {"process_settings": c}, started=lambda job: None,
                     finished=lambda job, event, effective: finished.append((combo, event)),
                     failed=lambda job, status, message, effective: failed.append(
                         (combo["name"], status, message)))
    tasks = []
    for index, count in enumerate(cores):
        combo = {"name": f"t{index}", "threads": str(count)}
        tasks.append(Task(combo, deque(Job(FakeUnit(n)) for n in range(units)),
                          cores_of(combo, 2), hooks(combo)))
    return tasks


def test_one_thread_combinations_run_side_by_side_all_core_ones_alone(monkeypatch) -> None:
    monkeypatch.setattr(pool_module, "Child", FakeChild)
    FakeChild.busy = FakeChild.peak = 0
    finished: list = []
    failed: list = []
    tasks = fake_tasks([1, 1, 1, 2, 2], 20, finished, failed)
    Pool(jobs=2, backfill=False).run(tasks)  # background workers: the test below
    assert len(finished) == 100 and not failed
    assert FakeChild.peak == 2  # never more cores busy than --jobs
    one_core = [event["others"] for combo, event in finished if combo["threads"] == "1"]
    two_core = [event["others"] for combo, event in finished if combo["threads"] == "2"]
    assert max(one_core) == 1  # one-thread workers did run side by side
    assert max(two_core) == 0  # a worker using all cores ran alone


def test_a_background_worker_takes_one_core_units_only_beside_a_wide_worker(monkeypatch
                                                                           ) -> None:
    """Wide tasks run first, alone; beside each, one background worker (idle priority,
    audit.run.pool.priority) takes one-core units, and stops when no wide worker runs."""
    monkeypatch.setattr(pool_module, "Child", FakeChild)
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
            self.events.append({"event": "start", "unit": message["id"]})
            return True

        def event(self, deadline: float) -> dict[str, Any] | None:
            if self.events:
                return self.events.popleft()
            time.sleep(max(0.0, deadline - time.monotonic()))
            raise pool_module.queue.Empty

    pool = Pool(jobs=2, backfill=True)
    finished: list = []
    failed: list = []
    (task,) = fake_tasks([1], 1, finished, failed)
    task.hooks.timeout_of = lambda job: 0.2
    child = Silent("t0", {"CORES": "1"}, {})
    child.background, child.effective = True, {}
    with pool.lock:
        pool.wide, pool.shadow = 1, (0.0, time.monotonic())  # a wide worker runs

    def wide_worker_ends() -> None:
        time.sleep(0.6)
        with pool.lock:
            pool.wide, pool.shadow = 0, (pool.shadowed(), None)

    threading.Thread(target=wide_worker_ends, daemon=True).start()
    started = time.monotonic()
    job = task.pending.popleft()
    assert child.send(job.message())
    assert pool.run_job(task, child, job) == (True, ("timeout", "no result within 0.2 s"))
    assert time.monotonic() - started >= 0.6 + 0.2 - 0.05
    child.background = False  # a normal unit: its timeout counts from its start
    started = time.monotonic()
    with pool.lock:
        pool.wide, pool.shadow = 1, (pool.shadowed(), time.monotonic())
    assert child.send(job.message())
    assert pool.run_job(task, child, job)[1] == ("timeout", "no result within 0.2 s")
    assert time.monotonic() - started < 0.6


def test_jobs_1_runs_everything_one_at_a_time(monkeypatch) -> None:
    monkeypatch.setattr(pool_module, "Child", FakeChild)
    FakeChild.busy = FakeChild.peak = 0
    finished: list = []
    Pool(jobs=1).run(fake_tasks([1, 1, 1], 5, finished, []))
    assert len(finished) == 15 and FakeChild.peak == 1


def test_a_worker_that_dies_before_running_anything_fails_its_tasks_units(monkeypatch) -> None:
    monkeypatch.setattr(pool_module, "Child", FakeChild)
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


def test_a_side_that_cannot_be_traced_makes_the_other_side_not_needed() -> None:
    here = [row("a.f", "x", "1", threads="1")]
    kept = [row("a.f", "x", "2", torch="2.14.1", threads="1")]
    sources = [Source("here", {}, here), Source("kept", {}, kept)]
    assert {cell.source for cell in differing(sources)} == {"here", "kept"}
    assert differing(sources, lambda cell: cell.source == "here") == set()
    both = differing(sources, lambda cell: True)
    assert {cell.source for cell in both} == {"here", "kept"}


# --- trace --for: differences found only once results of two environments meet ------------

def test_trace_for_traces_the_units_that_differ_from_another_environment(runs, tmp_path) -> None:
    folder, rows = runs["parallel"]
    (results,) = folder.glob("*.jsonl")
    here = tmp_path / "here"
    here.mkdir()
    for item in (results, next(folder.glob("*.traces.jsonl.gz"))):
        (here / item.name).write_bytes(item.read_bytes())
    # Another environment (torch 9.9) whose seed.manual_seed_246_rand differs in one
    # settings combination; that scenario holds along this run's axes: never traced yet.
    lines = results.read_text(encoding="utf-8").splitlines()
    header = json.loads(lines[0])
    header["env_id"], header["environment"]["torch"] = "other0123456789a", "9.9.0"
    changed = None
    other_rows = []
    for line in lines[1:]:
        item = json.loads(line)
        item["env_id"], item["torch_version"] = "other0123456789a", "9.9.0"
        if (item["scenario"] == "seed.manual_seed_246_rand" and item["output"] == "first"
                and item["settings"]["threads"] == "2" and changed in (None, item["settings"])):
            item["digest"], changed = "0" * 64, item["settings"]
        other_rows.append(json.dumps(item))
    other = tmp_path / "other" / "torch-9.9.0-other0123456789a.jsonl"
    other.parent.mkdir()
    other.write_text("\n".join([json.dumps(header), *other_rows]) + "\n", encoding="utf-8")
    key = unit_key("seed.manual_seed_246_rand", "cpu", changed)

    def trace_for(*arguments: str) -> str:
        completed = subprocess.run(
            [sys.executable, "-m", "audit", "trace", "--for", str(here), str(other.parent),
             "--matrix", "matrices/default.toml", *arguments],
            cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
        assert completed.returncode == 0, completed.stderr
        return completed.stdout

    # The other side has no traces and is not this run's to trace: nothing to do.
    assert "nothing to trace" in trace_for("--in", str(here))
    assert key not in read_traces(next(here.glob("*.traces.jsonl.gz")))
    # Given as results to trace (same machine): this environment's side is traced.
    assert "traced 1 of 1 units" in trace_for()
    traces = read_traces(next(here.glob("*.traces.jsonl.gz")))
    assert key in traces and len(traces) == len(read_traces(
        next(folder.glob("*.traces.jsonl.gz")))) + 1
    assert "nothing to trace" in trace_for()  # done once


def test_one_context_per_differing_pair_is_traced_unless_it_gives_no_origin() -> None:
    from audit.trace.needs import Selection, groups_of

    # threads 1 vs 2 differ under every capability; avx2 vs default only at threads 2.
    digests = {("1", "default"): "a", ("2", "default"): "b", ("1", "avx2"): "a",
               ("2", "avx2"): "c"}
    rows = [row("a.sum", "x", digest, threads=t, cpu_capability=c)
            for (t, c), digest in digests.items()]
    selection = Selection(groups_of([Source("f", {}, rows)]))
    first = {json.loads(cell.trace)[2]["cpu_capability"] + json.loads(cell.trace)[2]["threads"]
             for cell in selection.cells()}
    # threads: the default-capability context only; capability: threads 2 (where it differs)
    assert first == {"default1", "default2", "avx22"}
    checks = {key[2]: key for key, _, _ in selection.checks()}
    selection.resolved(checks["setting:cpu_capability"])
    assert selection.more(checks["setting:threads"])  # no origin there: every context
    assert len(selection.cells()) == 4
    assert selection.checks() == []  # nothing left to check: as with every unit traced
