"""The names of op-trace files (audit.store.traces), torch-free."""

from __future__ import annotations

from pathlib import Path

from audit.store.results import TRACES_SUFFIX, unit_key
from audit.store.traces import trace_key, traces_path


def test_traces_lie_beside_their_results_file() -> None:
    for name in ("run.jsonl", "run.jsonl.gz"):
        assert traces_path(Path("out") / name) == Path("out") / ("run" + TRACES_SUFFIX)
    assert traces_path(Path("odd.txt")) == Path("odd.txt" + TRACES_SUFFIX)


def test_a_trace_key_is_the_unit_key_of_the_settings_in_effect() -> None:
    settings = {"threads": "2"}
    assert trace_key("user.f", "cpu", settings) == unit_key("user.f", "cpu", settings)
