"""Cross-machine audits end to end: every setting recorded on every row, the portability
settings (mkl_cbwr, onednn_isa) applied in a child and read back, a report of files written
before and after rows recorded every setting, and two machines compared along their axis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from audit.cli import main
from audit.config.settings import NOT_APPLICABLE, SETTINGS
from audit.environment.collect import collect
from audit.judge.compare import PLATFORM, compare
from audit.store.results import read_all
from tests.e2e.support import audit_cli, read_results
from tests.environment.support import HAS_MKL, HAS_ONEDNN
from tests.support import OLD_FILE, ROOT


def audit_run(tmp_path: Path, *arguments: str) -> tuple[dict, list[dict]]:
    out = tmp_path / "results"
    completed = audit_cli("run", "--select", "ops.matmul_float32", "--devices", "cpu,cuda",
                          "--out", str(out), *arguments)
    assert completed.returncode == 0, completed.stderr
    return read_results(out)


@pytest.fixture(scope="module")
def portability_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, list[dict]]:
    if not HAS_MKL:
        pytest.skip("this torch build has no MKL to set MKL_CBWR for")
    return audit_run(tmp_path_factory.mktemp("cbwr"), "--settings", "threads=1",
                     "--settings", "mkl_cbwr=unset,compatible")


# --- every setting on every row -----------------------------------------------------------

def test_every_row_records_every_setting_in_effect(portability_run) -> None:
    _, rows = portability_run
    assert rows
    for row in rows:
        assert set(row["settings"]) == set(SETTINGS), row["settings"]
        for name, setting in SETTINGS.items():
            if not setting.applies_to(row["device"]):
                assert row["settings"][name] == NOT_APPLICABLE
        if row["status"] == "ok":  # nobody chose these: the values torch has unset
            assert row["settings"]["deterministic"] == "off"
            assert row["settings"]["default_dtype"] == "float32"
            assert row["settings"]["matmul_precision"] == "highest"
            assert row["settings"]["onednn_isa"] == "all"


def test_mkl_cbwr_is_applied_in_the_child_and_changes_a_matmul(portability_run) -> None:
    _, rows = portability_run
    ok = [row for row in rows if row["status"] == "ok" and row["output"] == "matmul.out"]
    by_value = {row["settings"]["mkl_cbwr"]: row["digest"] for row in ok}
    assert set(by_value) == {"unset", "compatible"}
    # Measured on the machines this project runs on (Intel Xeon and AMD EPYC): the
    # COMPATIBLE branch computes a 64x64 float32 matmul with other bits.
    assert by_value["unset"] != by_value["compatible"]


@pytest.mark.skipif(not HAS_MKL, reason="this torch build has no MKL")
def test_mkl_cbwr_reads_back_what_mkl_reports(tmp_path: Path) -> None:
    """A branch this CPU cannot take (non-Intel: anything but auto and compatible) is
    unavailable with the reason; one it takes is recorded as MKL reports it."""
    _, rows = audit_run(tmp_path, "--settings", "threads=1", "--settings", "mkl_cbwr=avx2",
                        "--devices", "cpu")
    probe = subprocess.run(
        [sys.executable, "-c",
         "from audit.environment.native import mkl_report; print(mkl_report().cnr)"],
        cwd=ROOT, env={**os.environ, "MKL_CBWR": "AVX2"}, capture_output=True,
        text=True, check=True).stdout.strip()
    if probe == "AVX2":
        assert {row["settings"]["mkl_cbwr"] for row in rows} == {"avx2"}
        assert all(row["status"] == "ok" for row in rows)
    else:
        assert {row["status"] for row in rows} == {"unavailable"}
        assert all(row["error"]
                   == "mkl_cbwr avx2 did not take effect here (auto in effect; MKL takes "
                   "branches other than auto and compatible on Intel CPUs only)" for row in rows)


@pytest.mark.skipif(not HAS_ONEDNN, reason="this torch build has no oneDNN")
@pytest.mark.skipif("avx2" not in (collect()["cpu"]["flags"] or []),
                    reason="the CPU has no AVX2 to cap oneDNN at")
def test_onednn_isa_is_applied_in_the_child_and_recorded(tmp_path: Path) -> None:
    out = tmp_path / "results"
    completed = audit_cli("run", "--select", "ops.conv2d", "--devices", "cpu", "--settings",
                          "threads=1", "--settings", "onednn_isa=all,avx2", "--out", str(out))
    assert completed.returncode == 0, completed.stderr
    _, rows = read_results(out)
    assert {row["settings"]["onednn_isa"] for row in rows} == {"all", "avx2"}
    assert all(row["status"] == "ok" for row in rows)


def test_report_of_old_and_new_files_says_so_once_and_shows_no_made_up_value(
        tmp_path: Path, portability_run) -> None:
    header, rows = portability_run
    new_file = tmp_path / "new.jsonl"
    new_file.write_text("\n".join(json.dumps(record) for record in [header, *rows]) + "\n")
    assert main(["report", str(OLD_FILE), str(new_file), "--out", str(tmp_path / "r")]) == 0
    text = (tmp_path / "r" / "README.md").read_text(encoding="utf-8")
    assert text.count("does not record every setting") == 1
    assert "deterministic=off" in text.split("## Summary")[0]
    summary = text.split("## Summary")[1].split("\n## ")[0]
    assert "| off, default" not in summary and ", default |" not in summary


# --- machines ------------------------------------------------------------------------------

def synthetic_machine(source: list[dict], path: Path, cpu: dict, change: str | None) -> Path:
    """The rows of a real run as if from another machine: its own CPU record and env-id,
    and (optionally) one output with other bits."""
    header, rows = json.loads(json.dumps(source[0])), json.loads(json.dumps(source[1:]))
    env_id = "machine" + str(abs(hash(json.dumps(cpu, sort_keys=True))))[:9]
    header["environment"]["cpu"] = cpu
    header["env_id"] = env_id
    for row in rows:
        row["env_id"] = env_id
        if change and row.get("output") == change:
            row["digest"] = "f" * 64
    path.write_text("\n".join(json.dumps(record) for record in [header, *rows]) + "\n")
    return path


def test_two_machines_compare_along_the_machine_axis(tmp_path: Path, portability_run) -> None:
    header, rows = portability_run
    source = [header, *[row for row in rows if row["settings"]["mkl_cbwr"] == "unset"]]
    intel = {"model": "Intel(R) Xeon(R) CPU", "vendor": "GenuineIntel", "family": 6,
             "model_number": 0x55, "stepping": 7, "microarchitecture": "Cascade Lake",
             "flags": ["avx2", "avx512f"], "cores": 2}
    amd = {"model": "AMD EPYC", "vendor": "AuthenticAMD", "family": 26, "model_number": 2,
           "stepping": 1, "microarchitecture": "Zen 5", "flags": ["avx2", "avx512f"],
           "cores": 2}
    files = [synthetic_machine(source, tmp_path / "intel.jsonl", intel, None),
             synthetic_machine(source, tmp_path / "amd.jsonl", amd, "matmul.out")]
    result = compare(read_all([str(path) for path in files]))
    assert PLATFORM in result.axes
    table = result.tables[PLATFORM]
    assert table.values == ["Linux x86_64, AMD EPYC (Zen 5, family 26 model 2)",
                            "Linux x86_64, Intel(R) Xeon(R) CPU (Cascade Lake, family 6 "
                            "model 85)"]
    compared = {row["output"] for row in source[1:] if row["status"] == "ok"}
    assert len(table.cells) == len(compared)  # every output compared against the other
    assert table.breaking() == [("ops.matmul_float32", "matmul.out")]
