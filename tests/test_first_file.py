"""A new user's first steps: a scenario file written the natural way, a report with only
the package's own dependencies installed."""

from __future__ import annotations

from pathlib import Path

import pytest

from audit.cli import main
from audit.publish import heatmap
from audit.store.results import read_all
from tests.support import FIXTURES, pyproject

UNDOCUMENTED = '''
import torch
from audit import scenario


@scenario("first.undocumented")
def undocumented(ctx):
    torch.manual_seed(0)
    return {"v": torch.rand(3)}
'''


@pytest.fixture
def scenario_file(tmp_path: Path, clean_registry: None) -> Path:
    path = tmp_path / "mine.py"
    path.write_text(UNDOCUMENTED, encoding="utf-8")
    return path


def test_a_scenario_without_description_or_docstring_is_listed(scenario_file: Path,
                                                                capsys) -> None:
    assert main(["list", "--scenarios", str(scenario_file)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "first.undocumented" in lines  # the name alone, no trailing spaces


def test_a_scenario_without_description_or_docstring_runs(scenario_file: Path,
                                                          tmp_path: Path) -> None:
    out = tmp_path / "results"
    assert main(["run", "--scenarios", str(scenario_file), "--select", "first.*",
                 "--devices", "cpu", "--out", str(out)]) == 0
    (results,) = read_all([str(out)])
    assert [(row["scenario"], row["output"], row["status"], row["repeatable"])
            for row in results.rows] == [("first.undocumented", "v", "ok", True)]


def test_a_report_without_matplotlib_says_which_extra_in_one_line(tmp_path: Path, capsys,
                                                                  monkeypatch) -> None:
    monkeypatch.setattr(heatmap, "available", lambda: False)
    assert main(["report", str(FIXTURES), "--out", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        "repro-audit: no heatmap: matplotlib is not installed "
        "(pip install 'repro-audit[heatmap]'); the report is written without it"]
    assert (tmp_path / "README.md").read_text("utf-8").startswith("# repro-audit report")
    assert not (tmp_path / heatmap.FILE_NAME).exists()


def test_a_plain_install_brings_what_run_and_report_import() -> None:
    declared = pyproject()["project"]["dependencies"]
    names = {item.split(">")[0].split(";")[0].strip() for item in declared}
    assert {"numpy", "blake3", "pandas", "tabulate"} <= names
