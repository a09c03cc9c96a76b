"""`python -m audit run` end to end in a subprocess: rows, settings in effect, repeatability."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch

from tests.e2e.support import audit_cli, read_results

USER_SCENARIOS = textwrap.dedent('''
    import torch
    from audit import scenario

    @scenario("user.seeded", "seeded draws")
    def seeded(ctx):
        torch.manual_seed(0)
        return {"x": torch.rand(8, device=ctx.device), "nested": {"y": [torch.randn(3)]}}

    @scenario("user.unseeded", "forgets to seed")
    def unseeded(ctx):
        return {"x": torch.rand(8)}

    @scenario("user.large_sum", "a float32 sum of 4M elements, split across threads")
    def large_sum(ctx):
        return {"sum": ctx.fixed(2 ** 22).sum()}
''')


def run_audit(tmp_path: Path, *arguments: str) -> tuple[dict, list[dict]]:
    scenarios = tmp_path / "my_scenarios.py"
    scenarios.write_text(USER_SCENARIOS, encoding="utf-8")
    out = tmp_path / "results"
    completed = audit_cli("run", "--scenarios", str(scenarios), "--out", str(out), *arguments)
    assert completed.returncode == 0, completed.stderr
    return read_results(out)


@pytest.fixture(scope="module")
def two_thread_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, list[dict]]:
    return run_audit(tmp_path_factory.mktemp("run"), "--select", "user.*",
                     "--select", "seed.manual_seed_246_rand", "--settings", "threads=1,2",
                     "--devices", "cpu,cuda")


def test_header_records_the_environment(two_thread_run: tuple[dict, list[dict]]) -> None:
    header, rows = two_thread_run
    assert header["record"] == "repro-audit/header" and header["schema"] == 2
    assert header["environment"]["torch"] == torch.__version__
    assert {row["env_id"] for row in rows} == {header["env_id"]}


def test_every_row_has_the_schema_keys(two_thread_run: tuple[dict, list[dict]]) -> None:
    _, rows = two_thread_run
    keys = {"scenario", "output", "status", "digest", "repeatable", "device", "torch_version",
            "settings", "env_id", "error", "dtype", "shape", "sample"}
    for row in rows:
        assert keys <= set(row)


def test_each_value_sample_is_written_once(two_thread_run: tuple[dict, list[dict]]) -> None:
    """Schema 2: the first row of a digest carries its sample, later ones null."""
    _, rows = two_thread_run
    seen: set[str] = set()
    repeats = 0
    for row in rows:
        if not row["digest"]:
            continue
        if row["digest"] in seen:
            assert row["sample"] is None, row
            repeats += 1
        else:
            assert isinstance(row["sample"], dict), row
            seen.add(row["digest"])
    assert repeats >= 2  # the seeded outputs agree across 1 and 2 threads


def test_requested_settings_are_written_where_they_differ(two_thread_run) -> None:
    _, rows = two_thread_run
    assert any("requested" in row for row in rows)
    for row in rows:
        assert row.get("requested", {}) != row["settings"], row


def ok_rows(rows: list[dict], scenario: str) -> list[dict]:
    return [row for row in rows if row["scenario"] == scenario and row["status"] == "ok"]


def test_threads_are_recorded_as_in_effect(two_thread_run: tuple[dict, list[dict]]) -> None:
    _, rows = two_thread_run
    seeded = ok_rows(rows, "user.seeded")
    assert sorted({row["settings"]["threads"] for row in seeded}) == ["1", "2"]
    assert {row["output"] for row in seeded} == {"x", "nested.y.0"}
    assert all(row["settings"]["cpu_capability"] not in (None, "n/a") for row in seeded)


def test_seeded_outputs_repeat_and_agree_across_threads(two_thread_run) -> None:
    _, rows = two_thread_run
    for scenario in ("user.seeded", "seed.manual_seed_246_rand"):
        found = ok_rows(rows, scenario)
        assert found and all(row["repeatable"] is True for row in found)
        by_output: dict[str, set[str]] = {}
        for row in found:
            by_output.setdefault(row["output"], set()).add(row["digest"])
        assert all(len(digests) == 1 for digests in by_output.values())


def test_a_scenario_without_a_seed_is_nondeterministic(two_thread_run) -> None:
    _, rows = two_thread_run
    found = ok_rows(rows, "user.unseeded")
    assert len(found) == 2 and all(row["repeatable"] is False for row in found)


def test_large_sum_is_repeatable_within_each_thread_count(two_thread_run) -> None:
    _, rows = two_thread_run
    found = ok_rows(rows, "user.large_sum")
    assert len(found) == 2 and all(row["repeatable"] for row in found)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the absent-CUDA path")
def test_absent_cuda_is_unavailable_with_a_reason(two_thread_run) -> None:
    _, rows = two_thread_run
    cuda = [row for row in rows if row["device"] == "cuda"]
    assert cuda and all(row["status"] == "unavailable" for row in cuda)
    assert all(row["error"].startswith("device cuda:") for row in cuda)
    assert {row["scenario"] for row in cuda} >= {"user.seeded", "user.unseeded"}
