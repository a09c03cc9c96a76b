"""The report on fixed results files: exact markdown, byte-stable, escaped."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from audit.cli import main
from audit.publish.report import escape, render
from audit.store.results import dumps, make_row, read_all
from tests.support import DATA, FIXTURES

EXPECTED = DATA / "report_expected.md"


def without_heatmap(text: str) -> str:
    """The report less its heatmap link (drawn only where matplotlib is installed)."""
    return re.sub(r"!\[Share of each scenario[^\n]*\n\n", "", text)


def test_report_matches_snapshot(tmp_path: Path) -> None:
    assert main(["report", str(FIXTURES), "--out", str(tmp_path)]) == 0
    written = (tmp_path / "README.md").read_text(encoding="utf-8")
    assert without_heatmap(written) == EXPECTED.read_text("utf-8")


def test_report_is_byte_stable_whatever_the_file_order(tmp_path: Path) -> None:
    files = sorted(FIXTURES.glob("*.jsonl"))
    forward = render(read_all([str(path) for path in files]))
    backward = render(read_all([str(path) for path in reversed(files)]))
    assert forward == backward


def test_report_says_where_and_how_far() -> None:
    text = EXPECTED.read_text(encoding="utf-8")
    # a 1-ULP difference of a float32 sum between 1 and 2 threads
    row = "| ops.sum_large | sum      | reference       | **differs**: max abs 1.2e-07, max 1 ULP"
    assert row in text
    # the loss trajectory changed between torch versions in 2 of its 3 elements
    assert "max 8 ULP, 2 of 3 elements" in text
    assert "rng.unseeded" in text.split("## Nondeterministic run to run")[1]
    assert "ValueError: bad \\| thing" in text


def test_hostile_names_are_escaped() -> None:
    text = EXPECTED.read_text(encoding="utf-8")
    assert "user.pipe\\|\\`&lt;b&gt;\\`" in text
    assert "<b>" not in text
    assert escape("a|b`<i>&") == "a\\|b\\`&lt;i&gt;&amp;"


def test_report_skips_a_corrupt_line_and_keeps_the_rest(
        tmp_path: Path, fixture_copies: list[Path], capsys: pytest.CaptureFixture) -> None:
    victim = fixture_copies[0]
    lines = victim.read_text(encoding="utf-8").splitlines(keepends=True)
    lines.insert(2, '{"record": "repro-audit/row", "scenario": \n')
    victim.write_text("".join(lines), encoding="utf-8")
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "out")]) == 0
    assert f"{victim}:3: not valid JSON" in capsys.readouterr().err
    written = (tmp_path / "out" / "README.md").read_text("utf-8")
    assert without_heatmap(written) == EXPECTED.read_text("utf-8")


def test_report_of_an_empty_folder_is_a_one_line_error(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    assert main(["report", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and str(tmp_path) in error


def test_a_long_axis_table_gets_a_page_of_its_own(tmp_path: Path, monkeypatch) -> None:
    import audit.publish.report

    monkeypatch.setattr(audit.publish.report, "PAGE_FROM", 0)
    (tmp_path / "across-stale.md").write_text("old", encoding="utf-8")
    assert main(["report", str(FIXTURES), "--out", str(tmp_path)]) == 0
    text = (tmp_path / "README.md").read_text(encoding="utf-8")
    page = (tmp_path / "across-threads.md").read_text(encoding="utf-8")
    assert "the table is on its own page, [across-threads.md](across-threads.md)" in text
    assert "| ops.sum_large | sum      | reference       | **differs**" in page
    assert "[Back to the report](README.md)" in page
    assert not (tmp_path / "across-stale.md").exists()


def test_a_problem_without_a_reason_is_listed(tmp_path: Path, fixture_copies: list[Path]
                                               ) -> None:
    """A row may carry no error text (a foreign writer, an old one): listed, reason blank."""
    victim = fixture_copies[0]
    header = json.loads(victim.read_text(encoding="utf-8").splitlines()[0])
    row = make_row(scenario="user.silent", output=None, status="crashed", device="cpu",
                   torch_version=header["environment"]["torch"], settings={},
                   env_id=header["env_id"], error=None)
    with open(victim, "a", encoding="utf-8") as stream:
        stream.write(dumps(row) + "\n")
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "out")]) == 0
    problems = (tmp_path / "out" / "README.md").read_text("utf-8").split(
        "## Errors and unavailable cells")[1]
    (line,) = [line for line in problems.splitlines() if "user.silent" in line]
    assert re.match(r"\| crashed +\| +\| cpu ", line), line
