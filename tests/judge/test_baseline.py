"""Baselines: save what a run produced, then check later runs of the same environment.

Results files are built here from real tensors (real digests, real samples), so the
distances the check prints come from the same code path a real run takes.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from audit.capture.hashing import digest
from audit.errors import UserError
from audit.judge.baseline import check, format_check, save
from audit.store.results import make_row
from tests.judge import support
from tests.judge.support import results, shifted

SETTINGS = {"threads": "1", "cpu_capability": "avx2"}
LABEL = "[cpu cpu_capability=avx2 threads=1]"
value_row = functools.partial(support.value_row, settings=SETTINGS)


def large() -> torch.Tensor:
    """1000 float32 values: more than a sample keeps whole, so the sample is 256 of them."""
    return torch.linspace(-3.0, 3.0, 1000, dtype=torch.float32)


def failed_row(scenario: str, env_id: str, status: str, error: str) -> dict[str, Any]:
    return make_row(scenario=scenario, output=None, status=status, device="cpu",
                    torch_version="2.13.0+cpu", settings=dict(SETTINGS), env_id=env_id,
                    error=error)


def standard_rows(env_id: str, big: torch.Tensor | None = None) -> list[dict[str, Any]]:
    small = torch.tensor([0.5, -1.25, 3.0], dtype=torch.float32)
    return [
        value_row("rng.randn", "large", large() if big is None else big, env_id),
        value_row("rng.randn", "small", small, env_id),
        value_row("init.linear", "weight", torch.arange(6, dtype=torch.float32), env_id),
    ]


ENV = "aaaa000000000001"


def test_save_then_check_the_same_results_matches_everything(tmp_path: Path) -> None:
    run = results(tmp_path / "run", ENV, standard_rows(ENV))
    assert save([run], tmp_path / "baselines") == 3
    result = check([run], tmp_path / "baselines")
    assert (result.matched, result.regressions, result.missing_baseline) == (3, [], [])
    assert result.exit_code == 0
    assert format_check(result) == [
        "baseline check: 3 matched, 0 differ, 0 without baseline"]


def test_baseline_file_is_stable_bytes_with_the_environment_summary(tmp_path: Path) -> None:
    rows = standard_rows(ENV)
    first = results(tmp_path / "one", ENV, rows)
    second = results(tmp_path / "two", ENV, list(reversed(rows)))
    save([first], tmp_path / "a")
    save([second], tmp_path / "b")
    text = (tmp_path / "a" / f"{ENV}.json").read_bytes()
    assert text == (tmp_path / "b" / f"{ENV}.json").read_bytes()
    data = json.loads(text)
    assert data["environment"] == {"torch": "2.13.0+cpu", "numpy": "2.4.6",
                                   "python": "3.11.7", "os": "Linux 6.1",
                                   "cpu": "Example CPU @ 2.80GHz"}
    assert [item["output"] for item in data["outputs"]] == ["weight", "large", "small"]
    assert text.endswith(b"\n") and b'\n "env_id"' in text  # indent 1, sorted keys
    assert not list((tmp_path / "a").glob(".*.tmp"))  # no temporary file left behind


def test_a_changed_value_is_a_regression_with_its_ulp_distance(tmp_path: Path) -> None:
    save([results(tmp_path / "old", ENV, standard_rows(ENV))], tmp_path / "baselines")
    changed = shifted(large(), [0, 999], 3)  # first and last positions are always sampled
    new = results(tmp_path / "new", ENV, standard_rows(ENV, big=changed))
    result = check([new], tmp_path / "baselines")
    assert result.exit_code == 1
    assert result.matched == 2
    [regression] = result.regressions
    assert (regression.key.scenario, regression.key.output) == ("rng.randn", "large")
    assert regression.baseline_digest == digest(large())
    assert regression.new_digest == digest(changed)
    assert regression.distance is not None and regression.distance.max_ulp == 3
    lines = format_check(result)
    assert lines[0].startswith(f"DIFFERS rng.randn/large {LABEL} env {ENV}: max abs ")
    assert lines[0].endswith("max 3 ULP, 2 of 256 sampled elements")
    assert lines[-1] == "baseline check: 2 matched, 1 differs, 0 without baseline"


def test_a_change_outside_the_sample_still_differs(tmp_path: Path) -> None:
    save([results(tmp_path / "old", ENV, standard_rows(ENV))], tmp_path / "baselines")
    changed = shifted(large(), [1], 1)  # position 1 is between two sampled positions
    result = check([results(tmp_path / "new", ENV, standard_rows(ENV, big=changed))],
                   tmp_path / "baselines")
    assert result.exit_code == 1
    assert format_check(result)[0].endswith(
        "same in 256 sampled elements (digest differs outside the sample)")


def test_an_output_without_baseline_is_listed_not_failed(tmp_path: Path) -> None:
    save([results(tmp_path / "old", ENV, standard_rows(ENV))], tmp_path / "baselines")
    extra = value_row("rng.rand", "new", torch.ones(2), ENV)
    result = check([results(tmp_path / "new", ENV, standard_rows(ENV) + [extra])],
                   tmp_path / "baselines")
    assert result.exit_code == 0
    assert [key.output for key in result.missing_baseline] == ["new"]
    assert format_check(result) == [
        f"NO BASELINE rng.rand/new {LABEL} env {ENV}",
        "baseline check: 3 matched, 0 differ, 1 without baseline"]


def test_a_new_environment_is_listed_as_without_baseline(tmp_path: Path) -> None:
    save([results(tmp_path / "old", ENV, standard_rows(ENV)[:1])], tmp_path / "baselines")
    other = "bbbb000000000002"
    new = results(tmp_path / "new", other, standard_rows(other)[1:], torch_version="2.14.1")
    result = check([new], tmp_path / "baselines")
    assert result.exit_code == 0
    assert list(result.new_environments) == [other]
    assert len(result.missing_baseline) == 2
    assert format_check(result) == [
        f"NO BASELINE env {other} (torch 2.14.1, numpy 2.4.6, python 3.11.7, Linux 6.1, "
        "Example CPU @ 2.80GHz): 2 outputs",
        "baseline check: 0 matched, 0 differ, 2 without baseline, "
        "1 baseline environment not in these results"]
    assert check([new], tmp_path / "baselines", strict=True).exit_code == 1


def test_a_new_environment_is_checked_against_the_nearest_baseline(tmp_path: Path) -> None:
    save([results(tmp_path / "old", ENV, standard_rows(ENV))], tmp_path / "baselines")
    other = "bbbb000000000002"
    changed = shifted(large(), [7], 1)
    new = results(tmp_path / "new", other, standard_rows(other, big=changed),
                  torch_version="2.14.1+cpu")
    result = check([new], tmp_path / "baselines")
    assert (result.matched, result.matched_elsewhere, result.missing_baseline) == (2, 2, [])
    assert result.exit_code == 1
    lines = format_check(result)
    assert lines[0] == f"baseline env {ENV} → env {other}: torch 2.13.0+cpu → 2.14.1+cpu"
    assert lines[1].startswith(f"DIFFERS rng.randn/large {LABEL} env {other}: ")
    allowed = check([new], tmp_path / "baselines", allow=frozenset({"torch"}))
    assert allowed.exit_code == 0 and len(allowed.allowed) == 1
    assert format_check(allowed)[0] == "ALLOWED differences along torch:"


def test_other_settings_are_the_nearest_reference_naming_the_axis(tmp_path: Path) -> None:
    two = {**SETTINGS, "threads": "2"}
    save([results(tmp_path / "old", ENV, [support.value_row(
        "rng.randn", "large", large(), ENV, settings=two)])], tmp_path / "baselines")
    other = "cccc000000000003"  # the env-id hashes the thread count too
    new = results(tmp_path / "new", other, [value_row("rng.randn", "large",
                                                      shifted(large(), [3], 2), other)])
    result = check([new], tmp_path / "baselines")
    (regression,) = result.regressions
    assert regression.axes == (("threads", "2", "1"),)
    assert format_check(result)[0] == f"baseline env {ENV} → env {other}: threads 2 → 1"
    assert check([new], tmp_path / "baselines",
                 allow=frozenset({"cpu_capability"})).exit_code == 1
    assert check([new], tmp_path / "baselines", allow=frozenset({"threads"})).exit_code == 0


def test_another_machine_alike_in_all_else_is_the_axis_named(tmp_path: Path) -> None:
    save([results(tmp_path / "old", ENV, standard_rows(ENV))], tmp_path / "baselines")
    other = "dddd000000000004"
    changed = shifted(large(), [3], 1)
    new = results(tmp_path / "new", other, standard_rows(other, big=changed))
    result = check([new], tmp_path / "baselines")
    assert result.regressions[0].axes == (("machine", ENV, other),)
    assert check([new], tmp_path / "baselines",
                 allow=frozenset({"machine"})).exit_code == 0


def test_the_nearest_reference_is_the_one_differing_on_fewest_axes(tmp_path: Path) -> None:
    two = {**SETTINGS, "threads": "2"}
    four = {"threads": "4", "cpu_capability": "avx512"}
    rows = [support.value_row("rng.randn", "large", shifted(large(), [3], 5), ENV,
                              settings=four),
            support.value_row("rng.randn", "large", large(), ENV, settings=two)]
    save([results(tmp_path / "old", ENV, rows)], tmp_path / "baselines")
    new = results(tmp_path / "new", ENV, [value_row("rng.randn", "large", large(), ENV)])
    result = check([new], tmp_path / "baselines")
    assert (result.matched, result.matched_elsewhere, result.exit_code) == (1, 1, 0)


def test_a_failing_or_nondeterministic_cell_with_a_baseline_is_a_regression(
        tmp_path: Path) -> None:
    save([results(tmp_path / "old", ENV, standard_rows(ENV))], tmp_path / "baselines")
    rows = [failed_row("rng.randn", ENV, "error", "RuntimeError: boom\ntraceback"),
            value_row("init.linear", "weight", torch.arange(6, dtype=torch.float32), ENV,
                      repeatable=False)]
    result = check([results(tmp_path / "new", ENV, rows)], tmp_path / "baselines")
    assert result.exit_code == 1
    assert format_check(result) == [
        f"NONDETERMINISTIC init.linear/weight {LABEL} env {ENV}: "
        "no longer repeatable run to run",
        f"FAILS rng.randn/large {LABEL} env {ENV}: now error: RuntimeError: boom",
        f"FAILS rng.randn/small {LABEL} env {ENV}: now error: RuntimeError: boom",
        "baseline check: 0 matched, 0 differ, 2 now failing, 1 no longer repeatable, "
        "0 without baseline"]


def test_cells_without_a_value_and_without_baseline_are_only_counted(tmp_path: Path) -> None:
    save([results(tmp_path / "old", ENV, standard_rows(ENV))], tmp_path / "baselines")
    rows = standard_rows(ENV) + [
        failed_row("ops.cuda_only", ENV, "unavailable", "no CUDA"),
        value_row("rng.unseeded", "x", torch.ones(3), ENV, repeatable=False)]
    result = check([results(tmp_path / "new", ENV, rows)], tmp_path / "baselines")
    assert (result.exit_code, result.without_value) == (0, 2)
    assert format_check(result)[-1] == (
        "baseline check: 3 matched, 0 differ, 0 without baseline, "
        "2 without a value to compare")


def test_save_refuses_to_overwrite_without_update(tmp_path: Path) -> None:
    run = results(tmp_path / "run", ENV, standard_rows(ENV))
    save([run], tmp_path / "baselines")
    before = (tmp_path / "baselines" / f"{ENV}.json").read_bytes()
    with pytest.raises(UserError, match=r"--update rewrites after review"):
        save([run], tmp_path / "baselines")
    assert (tmp_path / "baselines" / f"{ENV}.json").read_bytes() == before


def test_update_replaces_the_run_s_values_and_keeps_the_others(tmp_path: Path) -> None:
    save([results(tmp_path / "old", ENV, standard_rows(ENV))], tmp_path / "baselines")
    changed = shifted(large(), [0], 1)
    partial = [value_row("rng.randn", "large", changed, ENV)]  # only one output re-run
    assert save([results(tmp_path / "new", ENV, partial)], tmp_path / "baselines",
                update=True) == 1
    data = json.loads((tmp_path / "baselines" / f"{ENV}.json").read_text())
    digests = {item["output"]: item["digest"] for item in data["outputs"]}
    assert digests["large"] == digest(changed)
    assert set(digests) == {"large", "small", "weight"}
    result = check([results(tmp_path / "all", ENV, standard_rows(ENV, big=changed))],
                   tmp_path / "baselines")
    assert (result.matched, result.exit_code) == (3, 0)


def test_corrupt_baseline_json_is_a_user_error_naming_the_file(tmp_path: Path) -> None:
    run = results(tmp_path / "run", ENV, standard_rows(ENV))
    save([run], tmp_path / "baselines")
    path = tmp_path / "baselines" / f"{ENV}.json"
    path.write_text(path.read_text()[:100])
    with pytest.raises(UserError, match=rf"{path}: corrupt baseline"):
        check([run], tmp_path / "baselines")
    with pytest.raises(UserError, match=rf"{path}: corrupt baseline"):
        save([run], tmp_path / "baselines", update=True)


def test_a_baseline_renamed_to_another_environment_is_refused(tmp_path: Path) -> None:
    other = "bbbb000000000002"
    save([results(tmp_path / "run", ENV, standard_rows(ENV))], tmp_path / "baselines")
    (tmp_path / "baselines" / f"{ENV}.json").rename(tmp_path / "baselines" / f"{other}.json")
    run = results(tmp_path / "other", other, standard_rows(other))
    with pytest.raises(UserError, match=r"does not match its file name"):
        check([run], tmp_path / "baselines")


@pytest.mark.parametrize("make", ["missing", "file", "empty"])
def test_an_unusable_baseline_folder_is_a_user_error(tmp_path: Path, make: str) -> None:
    run = results(tmp_path / "run", ENV, standard_rows(ENV))
    folder = tmp_path / "baselines"
    if make == "file":
        folder.write_text("not a folder")
    elif make == "empty":
        folder.mkdir()
    with pytest.raises(UserError, match=str(folder)):
        check([run], folder)


def test_save_refuses_results_that_disagree_about_one_key(tmp_path: Path) -> None:
    first = results(tmp_path / "one", ENV, standard_rows(ENV))
    second = results(tmp_path / "two", ENV, standard_rows(ENV, big=shifted(large(), [0], 1)))
    with pytest.raises(UserError, match=r"rng.randn/large .* disagree"):
        save([first, second], tmp_path / "baselines")
    assert not (tmp_path / "baselines").exists()


def test_save_without_any_comparable_value_is_a_user_error(tmp_path: Path) -> None:
    run = results(tmp_path / "run", ENV, [failed_row("rng.randn", ENV, "error", "boom")])
    with pytest.raises(UserError, match=r"no ok and repeatable outputs"):
        save([run], tmp_path / "baselines")


def test_a_digest_change_with_identical_whole_values_is_named(tmp_path: Path) -> None:
    run = results(tmp_path / "run", ENV, standard_rows(ENV))
    save([run], tmp_path / "baselines")
    path = tmp_path / "baselines" / f"{ENV}.json"
    data = json.loads(path.read_text())
    data["outputs"][-1]["digest"] = "0" * 64  # rng.randn/small, kept whole
    path.write_text(json.dumps(data))
    assert format_check(check([run], tmp_path / "baselines"))[0] == (
        f"DIFFERS rng.randn/small {LABEL} env {ENV}: "
        "identical values, digest differs (layout or parameters)")


def test_a_hostile_output_name_stays_on_one_line(tmp_path: Path) -> None:
    save([results(tmp_path / "old", ENV, standard_rows(ENV))], tmp_path / "baselines")
    extra = value_row("rng.rand", "two\nlines", torch.ones(2), ENV)
    lines = format_check(check([results(tmp_path / "new", ENV, [extra])],
                               tmp_path / "baselines"))
    assert lines[0] == f"NO BASELINE rng.rand/two\\nlines {LABEL} env {ENV}"
    assert lines[-1].endswith("3 baselined outputs not in these results")
