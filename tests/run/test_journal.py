"""A run's journals (audit.run.journal): rows survive a torn last line, both journals
hidden beside the results file, removed together."""

from __future__ import annotations

from pathlib import Path

from audit.run.journal import Journal
from audit.store.results import make_row


def row(output: str) -> dict:
    return make_row(scenario="a.one", device="cpu", settings={}, torch_version="2",
                    env_id="e", output=output, status="ok")


def test_rows_come_back_and_a_torn_line_is_dropped(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "torch-2-e.jsonl", traces=False)
    with journal:
        journal.write_rows([row("x"), row("y")])
    assert journal.path.name == ".torch-2-e.jsonl.partial"
    with open(journal.path, "a", encoding="utf-8") as stream:
        stream.write('{"record": "row", "scen')
    assert [item["output"] for item in journal.previous()] == ["x", "y"]
    assert not journal.traces_path.exists() and journal.traced_lines() == {}
    journal.remove()
    assert not journal.path.exists() and journal.previous() == []


def test_traces_are_journalled_with_traces_on(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "r.jsonl", traces=True)
    with journal:
        journal.write_trace("k1", {"ops": []})
    assert journal.traces_path.name == ".r.jsonl.traces-journal"
    assert list(journal.traced_lines()) == ["k1"]
    journal.remove()
    assert not journal.traces_path.exists()
