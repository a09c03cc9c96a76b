"""Settings: canonical values, one-line errors listing what is allowed, stable combinations,
device applicability, and run settings that apply and restore torch's global state."""

from __future__ import annotations

from typing import Any, Callable, Iterator

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from audit.config.settings import (
    NOT_APPLICABLE,
    PROCESS,
    RUN,
    SETTINGS,
    combinations,
    for_device,
    parse_choices,
    parse_cli,
    process_environ,
)
from audit.errors import UserError

CPU_ONLY = {"cpu_capability", "mkldnn", "flush_denormal", "mkl_cbwr", "onednn_isa"}
CUDA_ONLY = {"cublas_workspace", "cudnn_benchmark", "tf32"}


# --- parsing ----------------------------------------------------------------------------

@pytest.mark.parametrize(("choices", "expected"), [
    ({"cpu_capability": "AVX2"}, {"cpu_capability": ["avx2"]}),
    ({"cpu_capability": [" Default ", "AVX512", "avx512"]},
     {"cpu_capability": ["default", "avx512"]}),
    ({"threads": " 2 "}, {"threads": ["2"]}),
    ({"threads": [1, "02", " 2", 4]}, {"threads": ["1", "2", "4"]}),
    ({"deterministic": ["ON", "Warn-Only", "off"]},
     {"deterministic": ["on", "warn-only", "off"]}),
    ({"default_dtype": "Float64", "matmul_precision": ["HIGHEST", "medium"]},
     {"default_dtype": ["float64"], "matmul_precision": ["highest", "medium"]}),
    ({"cublas_workspace": ":4096:8"}, {"cublas_workspace": [":4096:8"]}),
    ({}, {}),
])
def test_parse_choices_canonicalises(choices: dict[str, Any], expected: dict) -> None:
    assert parse_choices(choices, "m.toml: [settings]") == expected


def test_parse_cli_canonicalises() -> None:
    parsed = parse_cli(["threads=1, 2,02", " cpu_capability =AVX2,Default", "deterministic=ON"])
    assert parsed == {"threads": ["1", "2"], "cpu_capability": ["avx2", "default"],
                      "deterministic": ["on"]}
    assert list(parsed) == ["threads", "cpu_capability", "deterministic"]  # order kept


@pytest.mark.parametrize(("name", "value"), [
    (name, "bogus") for name, setting in SETTINGS.items() if setting.values is not None
])
def test_bad_value_lists_the_allowed_values(name: str, value: str) -> None:
    with pytest.raises(UserError) as caught:
        parse_choices({name: ["off" if "off" in (SETTINGS[name].values or ()) else "x", value]},
                      "m.toml: [settings]")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("m.toml: [settings]: ")
    assert repr(name) in message
    assert ", ".join(SETTINGS[name].values or ()) in message


@pytest.mark.parametrize("value", ["0", "-1", "1.5", "two", "", " ", "\u00b2", "1e3", "0x10",
                                   "9" * 5000, "65537", "+2", True, 2.0, None, [1]])
def test_bad_threads(value: Any) -> None:
    with pytest.raises(UserError) as caught:
        parse_choices({"threads": [value]}, "--settings")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("--settings: setting 'threads' takes a positive integer")


@pytest.mark.parametrize("argument", ["threads", "threads=", "=1", "nope=1", "threads=1,,2",
                                      "Threads=1"])
def test_bad_cli_settings(argument: str) -> None:
    with pytest.raises(UserError) as caught:
        parse_cli([argument])
    message = str(caught.value)
    assert "\n" not in message and message.startswith("--settings")


def test_unknown_setting_lists_the_known_ones() -> None:
    with pytest.raises(UserError) as caught:
        parse_choices({"thread": [1]}, "m.toml: [settings]")
    assert "'thread'" in str(caught.value)
    assert all(name in str(caught.value) for name in SETTINGS)


def test_empty_values() -> None:
    with pytest.raises(UserError, match="'deterministic' has no values"):
        parse_choices({"deterministic": []}, "m.toml")


@given(name=st.sampled_from(sorted(SETTINGS)),
       value=st.one_of(st.text(max_size=12), st.integers(), st.floats(), st.booleans(),
                       st.sampled_from([" AVX2 ", "On", "02", "WARN-ONLY", ":16:8"])))
def test_validate_fuzz(name: str, value: Any) -> None:
    """Canonical and idempotent when accepted; a one-line UserError naming the origin if not."""
    setting = SETTINGS[name]
    try:
        canonical = setting.validate(value, "origin")
    except UserError as error:
        assert str(error).startswith("origin: setting ") and "\n" not in str(error)
        return
    assert setting.validate(canonical, "origin") == canonical
    if setting.values is None:
        assert canonical.isascii() and canonical.isdigit() and int(canonical) > 0
    elif canonical not in setting.values:  # a setting that also takes a bounded integer
        assert setting.max_integer is not None and canonical.isascii() and canonical.isdigit()
        assert int(canonical) <= setting.max_integer and str(int(canonical)) == canonical


# --- combinations and devices -----------------------------------------------------------

def test_combinations_order_is_stable() -> None:
    choices = {"threads": ["1", "2"], "deterministic": ["off", "on"],
               "cpu_capability": ["default", "avx2"], "default_dtype": ["float32", "float64"]}
    process = list(combinations(choices, PROCESS))
    assert process == [
        {"threads": "1", "cpu_capability": "default"}, {"threads": "1", "cpu_capability": "avx2"},
        {"threads": "2", "cpu_capability": "default"}, {"threads": "2", "cpu_capability": "avx2"},
    ]
    assert [list(combo) for combo in process] == [["threads", "cpu_capability"]] * 4
    run = list(combinations(choices, RUN))
    assert run == [
        {"deterministic": "off", "default_dtype": "float32"},
        {"deterministic": "off", "default_dtype": "float64"},
        {"deterministic": "on", "default_dtype": "float32"},
        {"deterministic": "on", "default_dtype": "float64"},
    ]
    assert list(combinations(choices, PROCESS)) == process  # same again
    assert list(combinations(dict(choices), RUN)) == run


def test_combinations_without_choices() -> None:
    assert list(combinations({}, PROCESS)) == [{}]
    assert list(combinations({"threads": ["1"]}, RUN)) == [{}]


def every_setting() -> dict[str, str]:
    return {name: (setting.values[0] if setting.values else "1")
            for name, setting in SETTINGS.items()}


def test_for_device_cpu() -> None:
    applied = for_device(every_setting(), "cpu")
    assert {name for name, value in applied.items() if value == NOT_APPLICABLE} == CUDA_ONLY
    assert list(applied) == list(SETTINGS)


def test_for_device_cuda() -> None:
    applied = for_device(every_setting(), "cuda")
    assert {name for name, value in applied.items() if value == NOT_APPLICABLE} == CPU_ONLY


def test_for_device_mps() -> None:
    applied = for_device(every_setting(), "mps")
    assert {name for name, value in applied.items()
            if value == NOT_APPLICABLE} == CPU_ONLY | CUDA_ONLY


def test_device_lists_match_the_settings() -> None:
    assert {name for name, s in SETTINGS.items() if s.devices == ("cpu",)} == CPU_ONLY
    assert {name for name, s in SETTINGS.items() if s.devices == ("cuda",)} == CUDA_ONLY


def test_process_environ() -> None:
    environ = process_environ({"threads": "3", "cpu_capability": "auto",
                               "cublas_workspace": ":4096:8"})
    assert environ["OMP_NUM_THREADS"] == environ["MKL_NUM_THREADS"] == "3"
    assert environ["REPRO_AUDIT_THREADS"] == "3"
    assert environ["ATEN_CPU_CAPABILITY"] is None  # auto: unset
    assert environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert process_environ({"cpu_capability": "AVX2".lower()})["ATEN_CPU_CAPABILITY"] == "avx2"


def test_scopes() -> None:
    for setting in SETTINGS.values():
        assert setting.scope in (PROCESS, RUN)
        if setting.scope == RUN:
            assert setting.apply is not None and setting.environ is None
        else:
            assert setting.environ is not None and setting.apply is None


# --- run settings apply and restore -----------------------------------------------------

def flush_denormal_on() -> bool:
    smallest = torch.tensor([1], dtype=torch.int32).view(torch.float32)
    return int((smallest * 2).view(torch.int32).item()) == 0


def global_state() -> dict[str, Any]:
    warn_only = getattr(torch, "is_deterministic_algorithms_warn_only_enabled", lambda: False)
    return {
        "deterministic": (torch.are_deterministic_algorithms_enabled(), warn_only()),
        "default_dtype": torch.get_default_dtype(),
        "mkldnn": torch.backends.mkldnn.enabled,
        "matmul_precision": SETTINGS["matmul_precision"].effective(""),
        "flush_denormal": flush_denormal_on(),
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "tf32": (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32),
    }


@pytest.fixture(autouse=True)
def torch_state() -> Iterator[None]:
    """Whatever a failing test leaves, the next test starts from torch's state before."""
    before = global_state()
    yield
    deterministic, warn_only = before["deterministic"]
    torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
    torch.set_default_dtype(before["default_dtype"])
    torch.backends.mkldnn.enabled = before["mkldnn"]
    torch.set_flush_denormal(before["flush_denormal"])
    torch.backends.cudnn.benchmark = before["cudnn_benchmark"]
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before["tf32"]
    torch.set_float32_matmul_precision(before["matmul_precision"])  # after its alias, tf32


SETUPS: dict[str, Callable[[], None]] = {
    "defaults": lambda: None,
    "changed": lambda: (torch.use_deterministic_algorithms(True, warn_only=True),
                        torch.set_default_dtype(torch.float64),
                        setattr(torch.backends.mkldnn, "enabled", False),
                        setattr(torch.backends.cudnn, "allow_tf32", False),
                        torch.set_float32_matmul_precision("medium"),
                        torch.set_flush_denormal(True),
                        setattr(torch.backends.cudnn, "benchmark", True)),
}
# torch.backends.cuda.matmul.allow_tf32 is an alias of the matmul precision (True = "high").
ALIASES = {"tf32": "matmul_precision", "matmul_precision": "tf32"}

RUN_VALUES = [(name, value) for name, setting in SETTINGS.items() if setting.scope == RUN
              for value in setting.values or ()]


@pytest.mark.parametrize("setup", sorted(SETUPS))
@pytest.mark.parametrize(("name", "value"), RUN_VALUES)
def test_apply_then_restore(name: str, value: str, setup: str) -> None:
    if name == "flush_denormal" and not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush denormals")
    SETUPS[setup]()
    before = global_state()
    restore = SETTINGS[name].apply(value)
    assert SETTINGS[name].effective(value) == value
    ignored = {name, ALIASES.get(name)}
    others = {key: item for key, item in global_state().items() if key not in ignored}
    assert others == {key: item for key, item in before.items() if key not in ignored}
    assert restore is not None
    restore()
    assert global_state() == before


def test_tf32_restores_a_medium_matmul_precision() -> None:
    torch.set_float32_matmul_precision("medium")
    for value in ("off", "on"):
        restore = SETTINGS["tf32"].apply(value)
        assert SETTINGS["tf32"].effective(value) == value
        restore()
        assert torch.get_float32_matmul_precision() == "medium"


def test_deterministic_apply_is_visible() -> None:
    assert not torch.are_deterministic_algorithms_enabled()
    restore = SETTINGS["deterministic"].apply("on")
    assert torch.are_deterministic_algorithms_enabled()
    restore()
    assert not torch.are_deterministic_algorithms_enabled()


def test_default_dtype_apply_is_visible() -> None:
    restore = SETTINGS["default_dtype"].apply("float64")
    assert torch.empty(1).dtype == torch.float64
    restore()
    assert torch.empty(1).dtype == torch.float32


def test_flush_denormal_apply_is_visible() -> None:
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush denormals")
    restore = SETTINGS["flush_denormal"].apply("on")
    assert flush_denormal_on()
    restore()
    assert not flush_denormal_on()
