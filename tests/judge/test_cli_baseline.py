"""`repro-audit baseline` and `diff` exit codes through the command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from audit.cli import main
from tests.support import FIXTURES

OLD = str(FIXTURES / "torch-2.13.0_cpu-aaaa000000000001.jsonl")
NEW = str(FIXTURES / "torch-2.14.1-bbbb000000000002.jsonl")


def test_baseline_save_then_check_passes_then_fails_on_a_change(tmp_path: Path,
                                                                capsys) -> None:
    baselines = tmp_path / "baselines"
    assert main(["baseline", "save", str(FIXTURES), "--to", str(baselines)]) == 0
    assert main(["baseline", "check", str(FIXTURES), "--against", str(baselines)]) == 0
    assert main(["baseline", "save", str(FIXTURES), "--to", str(baselines)]) == 2  # no --update
    # 2.14's results under 2.13's env-id: the loss now differs from its baseline
    new_baselines = tmp_path / "only_old"
    assert main(["baseline", "save", OLD, "--to", str(new_baselines)]) == 0
    renamed = tmp_path / "renamed"
    renamed.mkdir()
    (renamed / "x.jsonl").write_text(
        Path(NEW).read_text("utf-8").replace("bbbb000000000002", "aaaa000000000001"), "utf-8")
    capsys.readouterr()
    assert main(["baseline", "check", str(renamed), "--against", str(new_baselines)]) == 1
    assert "train.mlp_sgd/loss" in capsys.readouterr().out


def test_baseline_check_against_a_missing_folder_is_exit_2(tmp_path: Path) -> None:
    assert main(["baseline", "check", str(FIXTURES), "--against", str(tmp_path / "no")]) == 2


@pytest.mark.parametrize(("a", "b", "code"), [(OLD, OLD, 0), (OLD, NEW, 1)])
def test_diff_exit_codes(a: str, b: str, code: int) -> None:
    assert main(["diff", a, b]) == code
