"""reports/changelog.md from results of several releases."""

from __future__ import annotations

from pathlib import Path

from audit.cli import main
from audit.judge.compare import compare
from audit.publish.changelog import same_since, write_changelog
from audit.store.results import read_all
from tests.support import FIXTURES


def test_changelog_names_the_release_that_changed_an_output(tmp_path: Path) -> None:
    out = tmp_path / "changelog.md"
    assert main(["changelog", str(FIXTURES), "--out", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    step = text.split("### 2.13.0+cpu → 2.14.1")[1]
    assert "1 of 4 outputs changed." in step
    assert "| train.mlp_sgd | loss     | changed: max abs 9.5e-07, max 8 ULP, 2 of 3 elements |" \
        in step
    # a difference between thread counts is shown within each release, not as a release change
    assert "| 2.13.0+cpu | 1 / 4                   |" in text
    assert "ops.sum_large" not in step.split("## Since when")[0]


def test_same_since_moves_forward_only_when_an_output_changes() -> None:
    steps = compare(read_all([str(FIXTURES)])).changelog
    since = same_since(steps)
    assert since[("train.mlp_sgd", "loss")] == "2.14.1"
    assert since[("seed.manual_seed_246_rand", "first")] == "2.13.0+cpu"


def test_changelog_is_byte_stable(tmp_path: Path) -> None:
    first = write_changelog([str(FIXTURES)], tmp_path / "a.md").read_bytes()
    second = write_changelog([str(FIXTURES)], tmp_path / "b.md").read_bytes()
    assert first == second
