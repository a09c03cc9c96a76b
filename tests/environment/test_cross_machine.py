"""Cross-machine audits: every setting recorded, old files read at stated unset values,
the new portability settings applied in a child and read back, machines told apart."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from audit.cli import main
from audit.config.settings import NOT_APPLICABLE, SETTINGS, unset_value, with_unset_values
from audit.environment.collect import collect, cpu_label, microarchitecture, platform_label
from audit.environment.native import mkl_report, onednn_report, parse_mkl, parse_onednn
from audit.judge.compare import PLATFORM, SETTING_PREFIX, compare, frame
from audit.store.kept import keep
from audit.store.results import read_all

ROOT = Path(__file__).resolve().parents[2]
# Written by the release matrix on another machine, before rows recorded every setting.
OLD_FILE = ROOT / "reports/releases/results/torch-2.13.0_cpu-4ccc1049d8526322.jsonl.gz"
HAS_MKL = torch.backends.mkl.is_available() and mkl_report() is not None
HAS_ONEDNN = torch.backends.mkldnn.is_available() and onednn_report() is not None


def audit_run(tmp_path: Path, *arguments: str) -> tuple[dict, list[dict]]:
    out = tmp_path / "results"
    completed = subprocess.run(
        [sys.executable, "-m", "audit", "run", "--select", "ops.matmul_float32",
         "--devices", "cpu,cuda", "--out", str(out), *arguments],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert completed.returncode == 0, completed.stderr
    (results,) = out.glob("*.jsonl")
    lines = [json.loads(line) for line in results.read_text(encoding="utf-8").splitlines()]
    return lines[0], lines[1:]


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
        cwd=ROOT, env={**__import__("os").environ, "MKL_CBWR": "AVX2"}, capture_output=True,
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
    completed = subprocess.run(
        [sys.executable, "-m", "audit", "run", "--select", "ops.conv2d", "--devices", "cpu",
         "--settings", "threads=1", "--settings", "onednn_isa=all,avx2", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert completed.returncode == 0, completed.stderr
    rows = [json.loads(line) for line in next(out.glob("*.jsonl")).read_text().splitlines()][1:]
    assert {row["settings"]["onednn_isa"] for row in rows} == {"all", "avx2"}
    assert all(row["status"] == "ok" for row in rows)


def test_unset_values_complete_a_partial_record() -> None:
    completed = with_unset_values({"threads": "2", "cpu_capability": "avx2"}, "cpu")
    assert completed["deterministic"] == "off" and completed["mkl_cbwr"] == "unset"
    assert completed["tf32"] == NOT_APPLICABLE and completed["threads"] == "2"
    assert unset_value("cpu_capability", "cuda") == NOT_APPLICABLE
    assert unset_value("threads", "cpu") is None  # machine-dependent: always recorded


# --- files written before every setting was recorded -------------------------------------

def test_old_files_read_at_stated_unset_values() -> None:
    data = frame(read_all([str(OLD_FILE)]))
    assert set(data[SETTING_PREFIX + "deterministic"].unique()) == {"off"}
    assert set(data[SETTING_PREFIX + "mkl_cbwr"].unique()) == {"unset"}
    assert set(data[SETTING_PREFIX + "tf32"].unique()) == {NOT_APPLICABLE}
    for column in (c for c in data.columns if c.startswith(SETTING_PREFIX)):
        assert not {"default", "not recorded"} & set(data[column].unique()), column
    assert ("deterministic", "off") in data.attrs["assumed"]


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


def test_machine_label_tells_two_cpus_of_one_vendor_apart() -> None:
    def label(model_number: int, stepping: int) -> str:
        cpu = {"model": "Intel(R) Xeon(R) Processor @ 2.80GHz", "vendor": "GenuineIntel",
               "family": 6, "model_number": model_number, "stepping": stepping,
               "microarchitecture": microarchitecture("GenuineIntel", 6, model_number,
                                                      stepping)}
        return platform_label({"os": "Linux 6.1", "machine": "x86_64", "cpu": cpu})

    assert label(0x55, 7) == ("Linux x86_64, Intel(R) Xeon(R) Processor @ 2.80GHz "
                              "(Cascade Lake, family 6 model 85)")
    assert label(0x8F, 8) != label(0x55, 7)
    assert "Sapphire Rapids" in label(0x8F, 8)
    assert label(0x01, 3).endswith("(family 6 model 1 stepping 3)")  # not in the table
    assert cpu_label({"cpu": {"model": "Old record"}}) == "Old record"


@pytest.mark.parametrize(("vendor", "family", "model", "stepping", "expected"), [
    ("AuthenticAMD", 0x1A, 0x02, 1, "Zen 5"), ("AuthenticAMD", 0x19, 0x01, 1, "Zen 3"),
    ("AuthenticAMD", 0x19, 0x11, 1, "Zen 4"), ("AuthenticAMD", 0x17, 0x31, 0, "Zen 2"),
    ("GenuineIntel", 6, 0x55, 4, "Skylake-SP"), ("GenuineIntel", 6, 0x55, 11, "Cooper Lake"),
    ("GenuineIntel", 6, 0x6A, 6, "Ice Lake-SP"), ("GenuineIntel", 6, 0xCF, 2, "Emerald Rapids"),
    ("GenuineIntel", 6, 0x01, 0, None), ("HygonGenuine", 0x18, 0, 1, None),
])
def test_microarchitecture_names(vendor, family, model, stepping, expected) -> None:
    assert microarchitecture(vendor, family, model, stepping) == expected


def test_a_model_number_whose_name_the_flags_rule_out_names_no_microarchitecture() -> None:
    from audit.publish.report import machine_facts

    amx = ["amx_bf16", "amx_tile", "avx512f"]
    # Seen here: a virtual Xeon with AMX (Sapphire Rapids or later) showing model 167.
    assert microarchitecture("GenuineIntel", 6, 0xA7, 1) == "Rocket Lake"
    assert microarchitecture("GenuineIntel", 6, 0xA7, 1, amx) is None
    assert microarchitecture("GenuineIntel", 6, 0x8F, 8, amx) == "Sapphire Rapids"
    assert microarchitecture("AuthenticAMD", 0x1A, 0x02, 1, ["avx512f"]) == "Zen 5"
    cpu = {"model": "Intel(R) Xeon(R) Processor", "vendor": "GenuineIntel", "family": 6,
           "model_number": 0xA7, "stepping": 1, "microarchitecture": None, "flags": amx,
           "model_number_says": "Rocket Lake"}
    assert cpu_label({"cpu": cpu}) == "Intel(R) Xeon(R) Processor (family 6 model 167 stepping 1)"
    assert machine_facts({"cpu": cpu})["CPU vendor, family / model / stepping"] == (
        "GenuineIntel 6 / 167 / 1 (model 167 is Rocket Lake's, which has no amx_bf16, "
        "amx_tile: a virtual CPU showing another model number)")


# --- what the environment records ------------------------------------------------------

def test_environment_capture_explains_the_machine() -> None:
    environment = collect()
    cpu = environment["cpu"]
    assert isinstance(cpu["model"], str) and cpu["model"]
    assert isinstance(cpu["flags"], list) and isinstance(cpu["cores"], int)
    if sys.platform.startswith("linux") and cpu["vendor"] in ("GenuineIntel", "AuthenticAMD"):
        assert all(isinstance(cpu[key], int) for key in ("family", "model_number", "stepping"))
        assert cpu["microarchitecture"] is None or isinstance(cpu["microarchitecture"], str)
    assert environment["blas"] in (None, *["mkl", "open", "openblas", "accelerate", "blis",
                                           "eigen", "generic"]) or isinstance(
        environment["blas"], str)
    if HAS_MKL:
        assert environment["mkl"]["version"].startswith(("oneMKL", "Intel(R)"))
        assert isinstance(environment["mkl"]["code_path"], str)
    if HAS_ONEDNN:
        assert environment["onednn"]["version"].startswith(("oneDNN v", "DNNL v", "v"))
        assert environment["onednn"]["isa"].startswith("Intel ")


def test_native_reports_parse_what_the_libraries_print() -> None:
    amd = parse_mkl(
        "MKL_VERBOSE oneMKL 2024.0 Update 2 Product build 20240605 for Intel(R) 64 "
        "architecture Intel(R) Architecture processors, Lnx 2.60GHz lp64 gnu_thread\n"
        "MKL_VERBOSE SGEMM(N,N,64,64,64,0x1,0x2,64,0x3,64,0x4,0x5,64) 8.64ms CNR:OFF Dyn:1 "
        "FastMM:1 TID:0  NThr:2\n")
    assert (amd.version, amd.code_path, amd.cnr) == (
        "oneMKL 2024.0 Update 2 Product build 20240605", "Intel(R) Architecture processors",
        "OFF")
    intel = parse_mkl(
        "MKL_VERBOSE Intel(R) MKL 2020.0 Product build 20191122 for Intel(R) 64 architecture "
        "Intel(R) Advanced Vector Extensions 512 (Intel(R) AVX-512) enabled processors, Lnx "
        "2.80GHz lp64 gnu_thread\nMKL_VERBOSE DGEMM(...) 1ms CNR:COMPATIBLE,STRICT Dyn:1\n")
    assert intel.code_path.startswith("Intel(R) Advanced Vector Extensions 512")
    assert intel.cnr == "COMPATIBLE,STRICT"
    onednn = parse_onednn(
        "onednn_verbose,v1,info,oneDNN v3.12.0 (commit 80afa71049cd69a3df32adcccb623b12cd7baa22)\n"
        "onednn_verbose,v1,info,cpu,runtime:OpenMP,nthr:2\n"
        "onednn_verbose,v1,info,cpu,isa:Intel AVX-512 with Intel DL Boost and bfloat16 support\n")
    assert onednn.version.startswith("oneDNN v3.12.0")
    assert onednn.isa == "Intel AVX-512 with Intel DL Boost and bfloat16 support"


# --- kept results ------------------------------------------------------------------------

def test_keep_replaces_the_same_machine_and_torch_and_nothing_else(tmp_path: Path) -> None:
    kept = tmp_path / "kept"
    first = keep([str(OLD_FILE)], kept)
    assert first == [f"kept {kept / OLD_FILE.name}: Linux x86_64, Intel(R) Xeon(R) Processor "
                     "@ 2.80GHz, torch 2.13.0+cpu"]
    assert (kept / OLD_FILE.name).read_bytes() == OLD_FILE.read_bytes()
    # The same machine and torch again, under another env-id: it replaces the first.
    with gzip.open(OLD_FILE, "rt", encoding="utf-8") as stream:
        lines = stream.read().splitlines()
    header = json.loads(lines[0])
    header["env_id"] = "0123456789abcdef"
    again = tmp_path / "torch-2.13.0_cpu-0123456789abcdef.jsonl"
    again.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n", encoding="utf-8")
    (tmp_path / "torch-2.13.0_cpu-0123456789abcdef.traces.jsonl.gz").write_bytes(b"t")
    second = keep([str(again)], kept)
    assert second == [f"kept {kept / (again.name + '.gz')}: Linux x86_64, Intel(R) Xeon(R) "
                      f"Processor @ 2.80GHz, torch 2.13.0+cpu (replaces {OLD_FILE.name})"]
    assert sorted(path.name for path in kept.iterdir()) == [
        "torch-2.13.0_cpu-0123456789abcdef.jsonl.gz",
        "torch-2.13.0_cpu-0123456789abcdef.traces.jsonl.gz"]
    first_bytes = (kept / (again.name + ".gz")).read_bytes()
    keep([str(again)], kept)  # the same results: the same bytes (no timestamp inside)
    assert (kept / (again.name + ".gz")).read_bytes() == first_bytes
    with gzip.open(kept / (again.name + ".gz"), "rt", encoding="utf-8") as stream:
        assert stream.read().splitlines() == again.read_text(encoding="utf-8").splitlines()


def test_keep_leaves_out_a_torch_that_could_not_be_audited(tmp_path: Path) -> None:
    from audit.store.results import write_unavailable

    failed = write_unavailable(tmp_path / "torch-9.9-unavailable.jsonl", "9.9", "no wheel")
    assert keep([str(failed)], tmp_path / "kept") == [
        "not kept torch-9.9-unavailable.jsonl: torch could not be audited there"]
    assert not list((tmp_path / "kept").iterdir())


def test_keep_names_a_file_that_is_not_results(tmp_path: Path) -> None:
    other = tmp_path / "notes.jsonl"
    other.write_text('{"hello": 1}\n', encoding="utf-8")
    assert main(["keep", str(other), "--to", str(tmp_path / "kept")]) == 2
