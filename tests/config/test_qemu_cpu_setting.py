"""The qemu_cpu setting: QEMU_CPU for a worker process, read back from the environment, and
n/a on a machine qemu does not emulate (every machine but an emulated one)."""

from __future__ import annotations

import pytest

from audit.config.settings import (
    NOT_APPLICABLE,
    PROCESS,
    SETTINGS,
    parse_cli,
    process_environ,
    unset_value,
)

QEMU_CPU = SETTINGS["qemu_cpu"]


def test_it_is_a_process_setting_recorded_as_n_a_where_results_predate_it() -> None:
    assert QEMU_CPU.scope == PROCESS
    assert unset_value("qemu_cpu", "cpu") == unset_value("qemu_cpu", "cuda") == NOT_APPLICABLE


def test_its_values_parse_on_the_command_line_and_name_the_qemu_cpu_they_set() -> None:
    assert parse_cli(["qemu_cpu=max,MAX-SVE256,max-nosve,auto"]) == {
        "qemu_cpu": ["max", "max-sve256", "max-nosve", "auto"]}
    assert process_environ({"qemu_cpu": "max-sve256", "threads": "1"})["QEMU_CPU"] == \
        "max,sve-default-vector-length=32"
    assert process_environ({"qemu_cpu": "max-nosve"}) == {"QEMU_CPU": "max,sve=off"}
    assert process_environ({"qemu_cpu": "neoverse-n1"}) == {"QEMU_CPU": "neoverse-n1"}
    assert process_environ({"qemu_cpu": "auto"}) == {"QEMU_CPU": None}  # qemu's own default


@pytest.mark.parametrize(("environ", "effective"), [
    (None, "auto"), ("max", "max"), ("max,sve-default-vector-length=32", "max-sve256"),
    ("MAX,SVE=OFF", "max-nosve"), ("cortex-a35", "cortex-a35")])
def test_the_value_in_effect_is_read_back_from_the_environment(
        monkeypatch: pytest.MonkeyPatch, environ: str | None, effective: str) -> None:
    if environ is None:
        monkeypatch.delenv("QEMU_CPU", raising=False)
    else:
        monkeypatch.setenv("QEMU_CPU", environ)
    assert QEMU_CPU.effective("") == effective


@pytest.mark.parametrize(("kernel", "machine", "emulated"), [
    ("x86_64", "aarch64", True),  # qemu-aarch64 on an x86-64 kernel
    ("aarch64", "x86_64", True),
    ("x86_64", "x86_64", False), ("x86_64", "AMD64", False), ("x86_64", "i686", False),
    ("aarch64", "arm64", False), (None, "aarch64", False),  # no /proc: macOS, Windows
])
def test_it_applies_only_under_emulation(monkeypatch: pytest.MonkeyPatch, kernel: str | None,
                                         machine: str, emulated: bool) -> None:
    """The interpreter's own machine against the kernel's (audit.environment.emulation)."""
    from audit.environment import cpu

    files = {"/proc/sys/kernel/arch": kernel}
    monkeypatch.setattr(cpu, "read_text", lambda path: files.get(path))
    monkeypatch.setattr(cpu, "interpreter_machine", lambda: machine)
    missing = QEMU_CPU.needs()
    if emulated:
        assert missing is None
    else:
        assert missing == "this process does not run under qemu user-mode emulation"


def test_this_machine_is_not_emulated() -> None:
    """CI and this project's machines run natively: qemu_cpu is n/a there."""
    assert QEMU_CPU.needs() == "this process does not run under qemu user-mode emulation"
