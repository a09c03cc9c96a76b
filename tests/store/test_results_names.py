"""Names of a run's files (audit.store.names)."""

from __future__ import annotations

from pathlib import Path

from audit.store.names import journal_path, results_name, trace_journal_path


def test_results_and_journal_names() -> None:
    assert results_name("2.13.0+cpu", "abc") == "torch-2.13.0_cpu-abc.jsonl"
    assert results_name("2.1.0", "abc", (2, 5)) == "torch-2.1.0-abc-shard2of5.jsonl"
    final = Path("out") / "torch-2.1.0-abc.jsonl"
    assert journal_path(final) == Path("out") / ".torch-2.1.0-abc.jsonl.partial"
    assert trace_journal_path(final) == Path("out") / ".torch-2.1.0-abc.jsonl.traces-journal"
