"""Settings: the knobs that may change results, how each is applied, what is in effect.

A *process* setting is read at start-up (an environment variable, a thread pool) and needs
a child process of its own; a *run* setting is switched inside the process around each
scenario run. Each setting records the value actually in effect, so a capability the CPU
lacks is reported as unavailable instead of silently replaced.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

from audit.errors import UserError

PROCESS = "process"
RUN = "run"
NOT_APPLICABLE = "n/a"
MAX_THREADS = 65536  # more is surely a typo (torch.set_num_threads takes a C int)


@dataclass(frozen=True)
class Setting:
    """One knob: its allowed values, scope and how to apply and read it."""

    name: str
    scope: str
    values: tuple[str, ...] | None  # None: any positive integer (threads)
    description: str
    devices: tuple[str, ...] | None = None  # None: applies to every device
    environ: Callable[[str], dict[str, str | None]] | None = None  # process: env vars to set
    apply: Callable[[str], Callable[[], None] | None] | None = None  # run: returns a restore
    effective: Callable[[str], str] = field(default=lambda requested: requested)
    # The value in effect when nobody sets it (what a results file that does not record
    # this setting ran with); None where it depends on the machine (threads: always recorded).
    default: str | None = None
    # The library or build feature the setting needs; None when torch itself is enough.
    needs: Callable[[], str | None] | None = None  # returns why it is unavailable, or None
    hint: str = ""  # why a value may not take effect on some machines

    def validate(self, value: str, origin: str) -> str:
        """The canonical spelling of `value`, or a UserError naming `origin` and the value."""
        text = str(value).strip().lower()
        if self.values is None:
            # ASCII only: "²".isdigit() is true but int("²") fails.
            if (text.isascii() and text.isdigit() and len(text) <= 9
                    and 0 < int(text) <= MAX_THREADS):
                return str(int(text))
            raise UserError(
                f"{origin}: setting {self.name!r} takes a positive integer "
                f"(1 to {MAX_THREADS}), not {value!r}")
        if text not in self.values:
            allowed = ", ".join(self.values)
            raise UserError(
                f"{origin}: setting {self.name!r} has no value {value!r} (one of: {allowed})")
        return text

    def applies_to(self, device: str) -> bool:
        return self.devices is None or device in self.devices


# --- process settings -------------------------------------------------------------------

def _threads_environ(value: str) -> dict[str, str | None]:
    return {"OMP_NUM_THREADS": value, "MKL_NUM_THREADS": value, "REPRO_AUDIT_THREADS": value}


def _threads_effective(_: str) -> str:
    import torch

    return str(torch.get_num_threads())


def _capability_environ(value: str) -> dict[str, str | None]:
    return {"ATEN_CPU_CAPABILITY": None if value == "auto" else value}


def _capability_effective(requested: str) -> str:
    from audit.environment.compat import cpu_capability

    actual = (cpu_capability() or "unknown").lower()
    return requested if requested == "auto" and actual == "unknown" else actual


def _cublas_environ(value: str) -> dict[str, str | None]:
    return {"CUBLAS_WORKSPACE_CONFIG": None if value == "unset" else value}


def _cublas_effective(_: str) -> str:
    import os

    return os.environ.get("CUBLAS_WORKSPACE_CONFIG") or "unset"


# MKL's conditional numerical reproducibility (CNR) branches, as MKL_CBWR spells them.
# Branches other than auto and compatible take effect on Intel CPUs only: elsewhere MKL
# silently uses auto, which the effective value (read back from MKL itself) shows.
MKL_CBWR_BRANCHES = ("auto", "compatible", "sse4_2", "avx2", "avx512", "avx512_e1")
MKL_CBWR_VALUES = ("unset", *MKL_CBWR_BRANCHES, *(f"{b}-strict" for b in MKL_CBWR_BRANCHES))


def _mkl_cbwr_environ(value: str) -> dict[str, str | None]:
    if value == "unset":
        return {"MKL_CBWR": None}
    branch, _, strict = value.partition("-")
    return {"MKL_CBWR": branch.upper() + (",STRICT" if strict else "")}


def _mkl_cbwr_effective(_: str) -> str:
    """The CNR mode MKL reports for a call; without MKL_CBWR it is off (`unset`), which
    needs no asking: MKL's verbose header measures the CPU's clock first, 0.2 to 1 s of
    every worker."""
    from audit.environment.native import mkl_report

    if not os.environ.get("MKL_CBWR"):
        return "unset"
    report = mkl_report()
    if report is None or report.cnr is None:
        return "unknown"
    branch, _, strict = report.cnr.lower().partition(",")
    return "unset" if branch == "off" else branch + ("-strict" if strict else "")


def _mkl_missing() -> str | None:
    from audit.environment.native import mkl_backend

    return None if mkl_backend() is not None else "this torch build does not use MKL"


ONEDNN_ISA_VALUES = ("all", "sse41", "avx", "avx2", "avx2_vnni", "avx2_vnni_2", "avx512_core",
                     "avx512_core_vnni", "avx512_core_bf16", "avx512_core_fp16",
                     "avx512_core_amx", "avx512_core_amx_fp16")


def _onednn_isa_environ(value: str) -> dict[str, str | None]:
    spelled = None if value == "all" else value.upper()
    # oneDNN < 2.0 (torch < 1.7) read DNNL_MAX_CPU_ISA; later versions read both.
    return {"ONEDNN_MAX_CPU_ISA": spelled, "DNNL_MAX_CPU_ISA": spelled}


def _onednn_isa_effective(requested: str) -> str:
    """'all' when no cap is set, else the ISA oneDNN reports it dispatches to."""
    import os

    from audit.environment.native import onednn_isa_name, onednn_report

    if not (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")):
        return "all"
    report = onednn_report()
    return (onednn_isa_name(report.isa) if report is not None else None) or "unknown"


def _onednn_missing() -> str | None:
    from audit.environment.native import onednn_report

    return None if onednn_report() is not None else "this torch build does not use oneDNN"


# qemu user-mode emulation: the CPU model qemu emulates, QEMU_CPU, read by qemu when a process
# starts. Values are spelled without commas, so that `--settings qemu_cpu=max,max-nosve`
# parses; each names the QEMU_CPU it sets. "auto" leaves qemu's own default (max).
QEMU_CPU_MODELS = {
    "max": "max",  # every feature qemu emulates: SVE at qemu's default vector length
    "max-sve128": "max,sve-default-vector-length=16",
    "max-sve256": "max,sve-default-vector-length=32",
    "max-nosve": "max,sve=off",
    **{chip: chip for chip in ("a64fx", "neoverse-n1", "cortex-a76", "cortex-a72",
                               "cortex-a57", "cortex-a53")},
}


def _qemu_cpu_environ(value: str) -> dict[str, str | None]:
    return {"QEMU_CPU": None if value == "auto" else QEMU_CPU_MODELS[value]}


def _architecture(machine: str) -> str:
    """One name per architecture family: a 32-bit userland on its own 64-bit kernel is not
    emulated."""
    machine = machine.strip().lower()
    families = {"amd64": "x86_64", "i386": "x86_64", "i686": "x86_64", "arm64": "aarch64",
                "armv7l": "aarch64", "armv8l": "aarch64"}
    return families.get(machine, machine)


def _kernel_architecture() -> str | None:
    """The machine the kernel runs on, which qemu user mode leaves as it is (it reports its
    guest's machine through uname): the kernel's own word, else what /proc/cpuinfo lists."""
    import re

    try:
        with open("/proc/sys/kernel/arch", encoding="ascii") as file:
            return _architecture(file.read())
    except (OSError, ValueError):
        pass
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as file:
            cpuinfo = file.read(1 << 16)
    except OSError:
        return None
    if re.search(r"^vendor_id\s*:", cpuinfo, re.MULTILINE):
        return "x86_64"
    if re.search(r"^CPU implementer\s*:", cpuinfo, re.MULTILINE):
        return "aarch64"
    return None


def _qemu_missing() -> str | None:
    import platform

    kernel = _kernel_architecture()
    if kernel is not None and kernel != _architecture(platform.machine()):
        return None
    return "this process does not run under qemu user-mode emulation"


def _qemu_cpu_effective(_: str) -> str:
    model = os.environ.get("QEMU_CPU", "").strip().lower()
    names = {spelled: name for name, spelled in QEMU_CPU_MODELS.items()}
    return names.get(model, model) if model else "auto"


# --- run settings -----------------------------------------------------------------------

def _use_deterministic_algorithms(mode: bool, warn_only: bool = False) -> None:
    """`torch.use_deterministic_algorithms`, without importing torch._inductor for it.

    From torch 2.1 on it imports `torch._inductor.config` (1.2 s in every worker) to set
    inductor's `deterministic` flag. Until something imports that module, the flag is
    handed over as the variable the module reads when it is imported; once it is
    imported, torch's own call sets it. The ATen flag is set the same way either way.
    """
    import os
    import sys

    import torch

    setter = getattr(torch._C, "_set_deterministic_algorithms", None)
    if "torch._inductor.config" in sys.modules or setter is None:
        torch.use_deterministic_algorithms(mode, warn_only=warn_only)
        return
    if mode:
        os.environ["TORCHINDUCTOR_DETERMINISTIC"] = "1"
    else:
        os.environ.pop("TORCHINDUCTOR_DETERMINISTIC", None)
    setter(mode, warn_only=warn_only)


def _apply_deterministic(value: str) -> Callable[[], None]:
    import torch

    before = torch.are_deterministic_algorithms_enabled()
    warn_getter = getattr(torch, "is_deterministic_algorithms_warn_only_enabled", lambda: False)
    before_warn = warn_getter()
    if value == "warn-only":
        _use_deterministic_algorithms(True, warn_only=True)
    else:
        _use_deterministic_algorithms(value == "on")

    def restore() -> None:
        if before_warn:
            _use_deterministic_algorithms(before, warn_only=True)
        else:
            _use_deterministic_algorithms(before)

    return restore


def _deterministic_effective(_: str) -> str:
    import torch

    if not torch.are_deterministic_algorithms_enabled():
        return "off"
    warn_getter = getattr(torch, "is_deterministic_algorithms_warn_only_enabled", lambda: False)
    return "warn-only" if warn_getter() else "on"


def _attribute_setting(path: str, on_value: Any, off_value: Any) -> tuple[Callable, Callable]:
    """apply / effective for a boolean-ish module attribute like torch.backends.cudnn.benchmark."""

    def resolve() -> tuple[Any, str]:
        import importlib

        module_name, attribute = path.rsplit(".", 1)
        return importlib.import_module(module_name), attribute

    def apply(value: str) -> Callable[[], None]:
        owner, attribute = resolve()
        before = getattr(owner, attribute)
        setattr(owner, attribute, on_value if value == "on" else off_value)
        return lambda: setattr(owner, attribute, before)

    def effective(_: str) -> str:
        owner, attribute = resolve()
        return "on" if getattr(owner, attribute) == on_value else "off"

    return apply, effective


def _apply_matmul_precision(value: str) -> Callable[[], None]:
    import torch

    setter = getattr(torch, "set_float32_matmul_precision", None)
    if setter is None:
        from audit.scenarios.registry import Unavailable

        raise Unavailable("torch.set_float32_matmul_precision is missing in this torch")
    before = torch.get_float32_matmul_precision()
    setter(value)
    return lambda: setter(before)


def _matmul_precision_effective(requested: str) -> str:
    import torch

    getter = getattr(torch, "get_float32_matmul_precision", None)
    if getter is None:
        return NOT_APPLICABLE
    try:
        return getter()
    except RuntimeError:  # torch >= 2.9 after allow_tf32 was set over "medium": both APIs mixed
        return "mixed"


def _apply_tf32(value: str) -> Callable[[], None]:
    import torch

    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    # allow_tf32 is an alias of the matmul precision ("highest" or "high"): keep the
    # precision to restore too, or a "medium" before would come back as "high" (or, in
    # torch >= 2.9, as a state in which get_float32_matmul_precision raises).
    precision = _matmul_precision_effective("")
    torch.backends.cuda.matmul.allow_tf32 = value == "on"
    torch.backends.cudnn.allow_tf32 = value == "on"

    def restore() -> None:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before
        if precision not in (NOT_APPLICABLE, "mixed"):
            torch.set_float32_matmul_precision(precision)

    return restore


def _tf32_effective(_: str) -> str:
    import torch

    return "on" if torch.backends.cuda.matmul.allow_tf32 else "off"


def _flush_denormal_enabled() -> bool:
    """Whether denormals are flushed now: torch has no getter, so probe the smallest one."""
    import torch

    smallest = torch.tensor([1], dtype=torch.int32).view(torch.float32)
    return int((smallest * 2).view(torch.int32).item()) == 0


def _apply_flush_denormal(value: str) -> Callable[[], None]:
    import torch

    before = _flush_denormal_enabled()
    if not torch.set_flush_denormal(value == "on") and value == "on":
        from audit.scenarios.registry import Unavailable

        raise Unavailable("this CPU does not support flushing denormals (no SSE3)")
    return lambda: torch.set_flush_denormal(before)


def _flush_denormal_effective(_: str) -> str:
    return "on" if _flush_denormal_enabled() else "off"


def _apply_default_dtype(value: str) -> Callable[[], None]:
    import torch

    before = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, value))
    return lambda: torch.set_default_dtype(before)


def _default_dtype_effective(_: str) -> str:
    import torch

    return str(torch.get_default_dtype()).replace("torch.", "")


_cudnn_apply, _cudnn_effective = _attribute_setting("torch.backends.cudnn.benchmark", True, False)
_mkldnn_apply, _mkldnn_effective = _attribute_setting("torch.backends.mkldnn.enabled", True, False)

SETTINGS: dict[str, Setting] = {
    setting.name: setting
    for setting in [
        Setting("threads", PROCESS, None, "torch intra-op threads (and OpenMP / MKL pools)",
                environ=_threads_environ, effective=_threads_effective),
        Setting("cpu_capability", PROCESS, ("auto", "default", "avx2", "avx512"),
                "ATEN_CPU_CAPABILITY: the vector ISA ATen dispatches to ('default' = scalar)",
                devices=("cpu",), environ=_capability_environ, effective=_capability_effective),
        Setting("mkl_cbwr", PROCESS, MKL_CBWR_VALUES,
                "MKL_CBWR: MKL's conditional numerical reproducibility branch (matmul, "
                "linear algebra); 'compatible' is the branch every x86 CPU runs",
                devices=("cpu",), environ=_mkl_cbwr_environ, effective=_mkl_cbwr_effective,
                default="unset", needs=_mkl_missing,
                hint="MKL takes branches other than auto and compatible on Intel CPUs only"),
        Setting("onednn_isa", PROCESS, ONEDNN_ISA_VALUES,
                "ONEDNN_MAX_CPU_ISA: the highest ISA oneDNN (convolutions, mkldnn) may use",
                devices=("cpu",), environ=_onednn_isa_environ, effective=_onednn_isa_effective,
                default="all", needs=_onednn_missing,
                hint="oneDNN caps the ISA at what this CPU has"),
        Setting("qemu_cpu", PROCESS, ("auto", *QEMU_CPU_MODELS),
                "QEMU_CPU: the CPU model qemu user mode emulates (SVE and its vector length)",
                environ=_qemu_cpu_environ, effective=_qemu_cpu_effective,
                default=NOT_APPLICABLE, needs=_qemu_missing),  # results before it: not emulated
        Setting("cublas_workspace", PROCESS, ("unset", ":4096:8", ":16:8"),
                "CUBLAS_WORKSPACE_CONFIG, needed for deterministic cuBLAS",
                devices=("cuda",), environ=_cublas_environ, effective=_cublas_effective,
                default="unset"),
        Setting("deterministic", RUN, ("off", "on", "warn-only"),
                "torch.use_deterministic_algorithms", apply=_apply_deterministic,
                effective=_deterministic_effective, default="off"),
        Setting("cudnn_benchmark", RUN, ("off", "on"), "torch.backends.cudnn.benchmark",
                devices=("cuda",), apply=_cudnn_apply, effective=_cudnn_effective,
                default="off"),
        Setting("matmul_precision", RUN, ("highest", "high", "medium"),
                "torch.set_float32_matmul_precision", apply=_apply_matmul_precision,
                effective=_matmul_precision_effective, default="highest"),
        Setting("tf32", RUN, ("off", "on"), "allow TF32 in CUDA matmul and cuDNN",
                devices=("cuda",), apply=_apply_tf32, effective=_tf32_effective,
                default="off"),
        Setting("mkldnn", RUN, ("on", "off"), "torch.backends.mkldnn.enabled (oneDNN kernels)",
                devices=("cpu",), apply=_mkldnn_apply, effective=_mkldnn_effective,
                default="on"),
        Setting("flush_denormal", RUN, ("off", "on"), "torch.set_flush_denormal",
                devices=("cpu",), apply=_apply_flush_denormal,
                effective=_flush_denormal_effective, default="off"),
        Setting("default_dtype", RUN, ("float32", "float64"), "torch.set_default_dtype",
                apply=_apply_default_dtype, effective=_default_dtype_effective,
                default="float32"),
    ]
}



def unset_value(name: str, device: str) -> str | None:
    """What `name` was on `device` in a run that did not record it: n/a where the setting
    does not apply, else its value when nobody sets it (None: no such value, threads)."""
    setting = SETTINGS.get(name)
    if setting is None:
        return None
    return setting.default if setting.applies_to(device) else NOT_APPLICABLE


def with_unset_values(settings: Mapping[str, str], device: str) -> dict[str, str]:
    """`settings` with every known setting it lacks at its unset value, so that a row of a
    file that recorded fewer settings compares with one that recorded all of them."""
    completed = dict(settings)
    for name in SETTINGS:
        if name not in completed:
            value = unset_value(name, device)
            if value is not None:
                completed[name] = value
    return completed


def in_effect(scope: str, requested: Mapping[str, str] | None = None) -> dict[str, str]:
    """Every setting of `scope` as it is in effect in this process now, chosen or not.

    A setting whose library this build lacks (MKL, oneDNN) reads as n/a.
    """
    requested = requested or {}
    values: dict[str, str] = {}
    for name, setting in SETTINGS.items():
        if setting.scope != scope:
            continue
        if setting.needs is not None and setting.needs() is not None:
            values[name] = NOT_APPLICABLE
            continue
        values[name] = setting.effective(requested.get(name, ""))
    return values


def parse_choices(choices: Mapping[str, Any], origin: str) -> dict[str, list[str]]:
    """Validate {name: value or list of values}; `origin` names the file or flag for errors."""
    parsed: dict[str, list[str]] = {}
    for name, values in choices.items():
        setting = SETTINGS.get(name)
        if setting is None:
            known = ", ".join(SETTINGS)
            raise UserError(f"{origin}: unknown setting {name!r} (known: {known})")
        if not isinstance(values, (list, tuple)):
            values = [values]
        if not values:
            raise UserError(f"{origin}: setting {name!r} has no values")
        canonical = [setting.validate(str(value), origin) for value in values]
        parsed[name] = list(dict.fromkeys(canonical))
    return parsed


def parse_cli(arguments: list[str]) -> dict[str, list[str]]:
    """`--settings NAME=V1,V2` arguments to {name: [values]}."""
    choices: dict[str, list[str]] = {}
    for argument in arguments:
        name, sep, values = argument.partition("=")
        if not sep or not values:
            raise UserError(f"--settings {argument!r}: expected NAME=V1,V2")
        choices[name.strip()] = [value.strip() for value in values.split(",")]
    return parse_choices(choices, "--settings")


def combinations(choices: Mapping[str, list[str]], scope: str) -> Iterator[dict[str, str]]:
    """Every combination of the chosen values of settings of one scope, in a stable order."""
    names = [name for name in choices if SETTINGS[name].scope == scope]
    for values in itertools.product(*(choices[name] for name in names)):
        yield dict(zip(names, values))


def for_device(combo: Mapping[str, str], device: str) -> dict[str, str]:
    """The combination as it applies on `device`: settings for other devices become n/a."""
    return {
        name: (value if SETTINGS[name].applies_to(device) else NOT_APPLICABLE)
        for name, value in combo.items()
    }


def process_environ(combo: Mapping[str, str]) -> dict[str, str | None]:
    """Environment variables a child process needs for a process-settings combination."""
    environ: dict[str, str | None] = {}
    for name, value in combo.items():
        setting = SETTINGS[name]
        if setting.environ is not None:
            environ.update(setting.environ(value))
    return environ
