"""Workers side by side (audit.run.pool) and traces on demand (audit.trace.needs, run --trace).

End to end: the default matrix on a small selection, run serially with every unit traced
(fresh worker processes) and in parallel with traces on demand (workers forked from a
server that imported torch, audit.run.pool.forkserver), gives the same digest for every
output of every settings combination, and a report naming an origin for the same differing
outputs (the origin may come from another context of the other axes, so its distance may
differ). The pool's policy is checked with simulated workers in
tests/run/test_pool_scheduling.py, which units need a trace in tests/trace/test_trace_needs.py.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from audit.store.results import unit_key
from audit.trace.files import read_traces
from tests.e2e.support import audit_cli, audit_command, read_results
from tests.support import ROOT

# Differs along threads and cpu_capability (ops.layer_norm), along cpu_capability only
# (init.conv), along nothing (seed.manual_seed_246_rand); all three are quick to run.
SELECTION = ("ops.layer_norm", "init.conv", "seed.manual_seed_246_rand")


def run_command(out: Path, *arguments: str) -> list[str]:
    """`python -m audit run` of the default matrix on SELECTION, results into `out`."""
    select = [item for name in SELECTION for item in ("--select", name)]
    return audit_command("run", "--matrix", "matrices/default.toml", *select, "--devices", "cpu",
                         "--out", str(out), *arguments)


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
    children = {name: subprocess.Popen(run_command(folder / name, *arguments), cwd=ROOT,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True, env=environs[name])
                for name, arguments in variants.items()}
    found = {}
    for name, child in children.items():
        stdout, stderr = child.communicate(timeout=600)
        assert child.returncode == 0, stderr
        found[name] = (folder / name, read_results(folder / name)[1])
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
        completed = audit_cli("report", str(folder), "--out", str(out))
        assert completed.returncode == 0, completed.stderr
        counts[name] = sum(path.read_text(encoding="utf-8").count("first diverges at")
                           for path in out.glob("*.md"))
    assert counts["serial"] > 0 and counts["parallel"] == counts["serial"]


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
        completed = audit_cli("trace", "--for", str(here), str(other.parent), "--matrix",
                              "matrices/default.toml", *arguments)
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


