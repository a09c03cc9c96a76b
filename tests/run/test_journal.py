"""A run's journals (audit.run.journal): rows survive a torn last line, both journals
hidden beside the results file, removed together."""

from __future__ import annotations

from pathlib import Path

import pytest

from audit.errors import UserError
from audit.run.journal import Journal
from audit.store.results import dumps, make_row


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


RUN = {"selection": ["a.one", "a.two"], "settings": {"threads": ["1"]}}


def unit_rows(scenario: str, count: int) -> list[dict]:
    return [make_row(scenario=scenario, device="cpu", settings={}, torch_version="2",
                     env_id="e", output=f"o{index}", status="ok") for index in range(count)]


def test_a_unit_cut_off_mid_write_is_discarded_whole_and_named(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    journal = Journal(tmp_path / "r.jsonl", traces=False, run=RUN)
    with journal:
        journal.write_rows(unit_rows("a.one", 3))
        journal.write_rows(unit_rows("a.two", 48))
    text = journal.path.read_text("utf-8")
    journal.path.write_text(text[: len(text) - len(text.splitlines()[-1]) // 2], "utf-8")
    resumed = Journal(tmp_path / "r.jsonl", traces=False, run=RUN)
    rows = resumed.resume()
    assert [row["scenario"] for row in rows] == ["a.one"] * 3  # none of a.two's 48
    assert "a.two" in capsys.readouterr().err
    with resumed:  # the journal now holds the whole units only, and goes on from there
        resumed.write_rows(unit_rows("a.two", 48))
    assert len(Journal(tmp_path / "r.jsonl", traces=False, run=RUN).resume()) == 51


def test_resume_refuses_a_journal_of_another_run(tmp_path: Path) -> None:
    with Journal(tmp_path / "r.jsonl", traces=False, run=RUN) as journal:
        journal.write_rows(unit_rows("a.one", 1))
    other = Journal(tmp_path / "r.jsonl", traces=False,
                    run={**RUN, "settings": {"threads": ["2"]}})
    with pytest.raises(UserError, match=r"another run \(settings: .*threads.*1.*2"):
        other.resume()
    journal.path.write_text(dumps(unit_rows("a.one", 1)[0]) + "\n", "utf-8")  # older format
    with pytest.raises(UserError, match="no run header"):
        Journal(tmp_path / "r.jsonl", traces=False, run=RUN).resume()


def test_a_journal_with_no_finished_unit_starts_afresh(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "r.jsonl", traces=False, run=RUN)
    with journal:
        pass
    assert Journal(tmp_path / "r.jsonl", traces=False, run={"other": 1}).resume() == []


def test_a_torn_traces_journal_line_is_ended_before_the_next(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "r.jsonl", traces=True)
    with journal:
        journal.write_trace("k1", {"ops": []})
    journal.traces_path.write_text(journal.traces_path.read_text("utf-8")[:-4], "utf-8")
    with journal:
        journal.write_trace("k2", {"ops": []})
    assert list(journal.traced_lines()) == ["k2"]
