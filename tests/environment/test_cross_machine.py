"""Cross-machine audits without a run: old files read at stated unset values, machines told
apart (vendor, family, model, microarchitecture), what the environment records of the CPU
and of the native libraries (MKL, oneDNN)."""

from __future__ import annotations

import sys

import pytest

from audit.config.settings import NOT_APPLICABLE, unset_value, with_unset_values
from audit.environment.collect import collect, cpu_label, microarchitecture, platform_label
from audit.environment.native import parse_mkl, parse_onednn
from audit.judge.compare import SETTING_PREFIX, frame
from audit.store.results import read_all
from tests.environment.support import HAS_MKL, HAS_ONEDNN
from tests.support import OLD_FILE


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
