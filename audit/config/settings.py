"""Settings: the knobs that may change results, their values, and what a value needs.

A *process* setting is read at start-up (an environment variable, a thread pool) and needs
a child process of its own; a *run* setting is switched inside the process around each
scenario run. Each setting records the value actually in effect, so a capability the CPU
lacks is reported as unavailable instead of silently replaced: the functions that apply a
setting and read it back need torch (audit.run.apply_settings, audit.environment.readback),
and each setting says itself why a requested value did not take effect.
"""

from __future__ import annotations

import importlib
import itertools
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping

from audit.errors import UserError

PROCESS = "process"
RUN = "run"
NOT_APPLICABLE = "n/a"
MAX_THREADS = 65536  # more is surely a typo (torch.set_num_threads takes a C int)


@dataclass(frozen=True)
class Setting:
    """One knob: its allowed values, scope, how to apply and read it, and why it may not take."""

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
    # Requested values that any value in effect fulfils (cpu_capability auto).
    fulfilled_by_any: tuple[str, ...] = ()
    # Why a requested value did not take effect, given the value in effect instead.
    unapplied: str = "{name} {requested} did not take effect here ({actual} in effect{hint})"
    # Also any integer from 0 to this, besides `values` (python_hash_seed: "random" or a seed).
    max_integer: int | None = None
    # The value a worker runs with when the matrix does not choose one; None: as inherited.
    run_default: str | None = None
    # Whether a report notes that files lacking this setting were read at `default`.
    note_unset: bool = True

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
        if (self.max_integer is not None and text.isascii() and text.isdigit()
                and len(text) <= 10 and int(text) <= self.max_integer):
            return str(int(text))
        if text not in self.values:
            allowed = ", ".join(self.values)
            if self.max_integer is not None:
                allowed += f", or an integer from 0 to {self.max_integer}"
            raise UserError(
                f"{origin}: setting {self.name!r} has no value {value!r} (one of: {allowed})")
        return text

    def applies_to(self, device: str) -> bool:
        return self.devices is None or device in self.devices

    def not_applied(self, requested: str, actual: str | None) -> str | None:
        """Why `requested` did not take effect, with `actual` read back in its place; None
        when it did (or when nothing was read back: a unit that crashed)."""
        if actual is None or actual == requested or requested in self.fulfilled_by_any:
            return None
        hint = f"; {self.hint}" if self.hint else ""
        return self.unapplied.format(name=self.name, requested=requested, actual=actual,
                                     hint=hint)


def late(path: str) -> Callable[..., Any]:
    """The function `module:name`, imported at its first call.

    Applying a setting or reading it back needs torch or a native library; these functions
    live in the run and environment stages, and config, imported by nox on the host,
    imports neither.
    """
    module, _, name = path.partition(":")

    def call(*args: Any) -> Any:
        return getattr(importlib.import_module(module), name)(*args)

    call.__name__ = call.__qualname__ = name
    return call


def _apply(name: str) -> Callable[[str], Callable[[], None] | None]:
    return late(f"audit.run.apply_settings:{name}")


def _read(name: str) -> Callable[..., Any]:
    return late(f"audit.environment.readback:{name}")


# --- how process settings reach a worker: its environment variables ----------------------

def _threads_environ(value: str) -> dict[str, str | None]:
    return {"OMP_NUM_THREADS": value, "MKL_NUM_THREADS": value, "REPRO_AUDIT_THREADS": value}


def _capability_environ(value: str) -> dict[str, str | None]:
    return {"ATEN_CPU_CAPABILITY": None if value == "auto" else value}


def _cublas_environ(value: str) -> dict[str, str | None]:
    return {"CUBLAS_WORKSPACE_CONFIG": None if value == "unset" else value}


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


ONEDNN_ISA_VALUES = ("all", "sse41", "avx", "avx2", "avx2_vnni", "avx2_vnni_2", "avx512_core",
                     "avx512_core_vnni", "avx512_core_bf16", "avx512_core_fp16",
                     "avx512_core_amx", "avx512_core_amx_fp16")


def _onednn_isa_environ(value: str) -> dict[str, str | None]:
    spelled = None if value == "all" else value.upper()
    # oneDNN < 2.0 (torch < 1.7) read DNNL_MAX_CPU_ISA; later versions read both.
    return {"ONEDNN_MAX_CPU_ISA": spelled, "DNNL_MAX_CPU_ISA": spelled}


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


# PYTHONHASHSEED, read by Python at start-up: "random" (Python's own default, a seed per
# process) or a fixed seed. Workers run with seed 0 unless the matrix asks otherwise, so an
# output that depends on hash() of a str shows along this axis, never along threads.
MAX_HASH_SEED = 4294967295


def _hash_seed_environ(value: str) -> dict[str, str | None]:
    return {"PYTHONHASHSEED": value}


SETTINGS: dict[str, Setting] = {
    setting.name: setting
    for setting in [
        Setting("threads", PROCESS, None, "torch intra-op threads (and OpenMP / MKL pools)",
                environ=_threads_environ, effective=_read("threads"),
                unapplied="threads {requested} requested, torch used {actual}"),
        Setting("cpu_capability", PROCESS, ("auto", "default", "avx2", "avx512"),
                "ATEN_CPU_CAPABILITY: the vector ISA ATen dispatches to ('default' = scalar)",
                devices=("cpu",), environ=_capability_environ,
                effective=_read("cpu_capability"),
                fulfilled_by_any=("auto",),  # whatever ATen picks is what auto asks for
                unapplied="cpu_capability {requested} is not available here "
                          "(torch used {actual})"),
        Setting("mkl_cbwr", PROCESS, MKL_CBWR_VALUES,
                "MKL_CBWR: MKL's conditional numerical reproducibility branch (matmul, "
                "linear algebra); 'compatible' is the branch every x86 CPU runs",
                devices=("cpu",), environ=_mkl_cbwr_environ, effective=_read("mkl_cbwr"),
                default="unset", needs=_read("mkl_missing"),
                hint="MKL takes branches other than auto and compatible on Intel CPUs only"),
        Setting("onednn_isa", PROCESS, ONEDNN_ISA_VALUES,
                "ONEDNN_MAX_CPU_ISA: the highest ISA oneDNN (convolutions, mkldnn) may use",
                devices=("cpu",), environ=_onednn_isa_environ, effective=_read("onednn_isa"),
                default="all", needs=_read("onednn_missing"),
                hint="oneDNN caps the ISA at what this CPU has"),
        Setting("qemu_cpu", PROCESS, ("auto", *QEMU_CPU_MODELS),
                "QEMU_CPU: the CPU model qemu user mode emulates (SVE and its vector length)",
                environ=_qemu_cpu_environ, effective=_read("qemu_cpu"),
                default=NOT_APPLICABLE, needs=_read("qemu_missing")),  # earlier: not emulated
        Setting("python_hash_seed", PROCESS, ("random",),
                "PYTHONHASHSEED: Python's str / bytes hash() seed ('random': one per process)",
                environ=_hash_seed_environ, effective=_read("python_hash_seed"),
                # files written before it ran every process with a random seed; noting
                # that in every report of old files would say only what Python does
                default="random", max_integer=MAX_HASH_SEED, run_default="0",
                note_unset=False),
        Setting("cublas_workspace", PROCESS, ("unset", ":4096:8", ":16:8"),
                "CUBLAS_WORKSPACE_CONFIG, needed for deterministic cuBLAS",
                devices=("cuda",), environ=_cublas_environ,
                effective=_read("cublas_workspace"), default="unset"),
        Setting("deterministic", RUN, ("off", "on", "warn-only"),
                "torch.use_deterministic_algorithms", apply=_apply("deterministic"),
                effective=_read("deterministic"), default="off"),
        Setting("cudnn_benchmark", RUN, ("off", "on"), "torch.backends.cudnn.benchmark",
                devices=("cuda",), apply=_apply("cudnn_benchmark"),
                effective=_read("cudnn_benchmark"), default="off"),
        Setting("matmul_precision", RUN, ("highest", "high", "medium"),
                "torch.set_float32_matmul_precision", apply=_apply("matmul_precision"),
                effective=_read("matmul_precision"), default="highest"),
        Setting("tf32", RUN, ("off", "on"), "allow TF32 in CUDA matmul and cuDNN",
                devices=("cuda",), apply=_apply("tf32"), effective=_read("tf32"),
                default="off"),
        Setting("mkldnn", RUN, ("on", "off"), "torch.backends.mkldnn.enabled (oneDNN kernels)",
                devices=("cpu",), apply=_apply("mkldnn"), effective=_read("mkldnn"),
                default="on"),
        Setting("flush_denormal", RUN, ("off", "on"), "torch.set_flush_denormal",
                devices=("cpu",), apply=_apply("flush_denormal"),
                effective=_read("flush_denormal"), default="off"),
        Setting("default_dtype", RUN, ("float32", "float64"), "torch.set_default_dtype",
                apply=_apply("default_dtype"), effective=_read("default_dtype"),
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


def run_defaults(device: str) -> dict[str, str]:
    """The settings a run gives a value of its own when the matrix chooses none."""
    return {name: setting.run_default for name, setting in SETTINGS.items()
            if setting.run_default is not None and setting.applies_to(device)}


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


def process_environ(combo: Mapping[str, str], run_defaults: bool = False
                    ) -> dict[str, str | None]:
    """Environment variables a child process needs for a process-settings combination
    (with `run_defaults`, also each setting it does not choose at its `run_default`)."""
    environ: dict[str, str | None] = {}
    for name, setting in SETTINGS.items():
        value = combo.get(name, setting.run_default if run_defaults else None)
        if value is not None and setting.environ is not None:
            environ.update(setting.environ(value))
    return environ
