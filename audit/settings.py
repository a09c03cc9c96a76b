"""Settings: the knobs that may change results, how each is applied, what is in effect.

A *process* setting is read at start-up (an environment variable, a thread pool) and needs
a child process of its own; a *run* setting is switched inside the process around each
scenario run. Each setting records the value actually in effect, so a capability the CPU
lacks is reported as unavailable instead of silently replaced.
"""

from __future__ import annotations

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
    """One knob: its allowed values, scope and how to apply and read it."""

    name: str
    scope: str
    values: tuple[str, ...] | None  # None: any positive integer (threads)
    description: str
    devices: tuple[str, ...] | None = None  # None: applies to every device
    environ: Callable[[str], dict[str, str | None]] | None = None  # process: env vars to set
    apply: Callable[[str], Callable[[], None] | None] | None = None  # run: returns a restore
    effective: Callable[[str], str] = field(default=lambda requested: requested)

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
    from audit.compat import cpu_capability

    actual = (cpu_capability() or "unknown").lower()
    return requested if requested == "auto" and actual == "unknown" else actual


def _cublas_environ(value: str) -> dict[str, str | None]:
    return {"CUBLAS_WORKSPACE_CONFIG": None if value == "unset" else value}


# --- run settings -----------------------------------------------------------------------

def _apply_deterministic(value: str) -> Callable[[], None]:
    import torch

    before = torch.are_deterministic_algorithms_enabled()
    warn_getter = getattr(torch, "is_deterministic_algorithms_warn_only_enabled", lambda: False)
    before_warn = warn_getter()
    if value == "warn-only":
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch.use_deterministic_algorithms(value == "on")

    def restore() -> None:
        if before_warn:
            torch.use_deterministic_algorithms(before, warn_only=True)
        else:
            torch.use_deterministic_algorithms(before)

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
        Setting("cublas_workspace", PROCESS, ("unset", ":4096:8", ":16:8"),
                "CUBLAS_WORKSPACE_CONFIG, needed for deterministic cuBLAS",
                devices=("cuda",), environ=_cublas_environ),
        Setting("deterministic", RUN, ("off", "on", "warn-only"),
                "torch.use_deterministic_algorithms", apply=_apply_deterministic,
                effective=_deterministic_effective),
        Setting("cudnn_benchmark", RUN, ("off", "on"), "torch.backends.cudnn.benchmark",
                devices=("cuda",), apply=_cudnn_apply, effective=_cudnn_effective),
        Setting("matmul_precision", RUN, ("highest", "high", "medium"),
                "torch.set_float32_matmul_precision", apply=_apply_matmul_precision,
                effective=_matmul_precision_effective),
        Setting("tf32", RUN, ("off", "on"), "allow TF32 in CUDA matmul and cuDNN",
                devices=("cuda",), apply=_apply_tf32, effective=_tf32_effective),
        Setting("mkldnn", RUN, ("on", "off"), "torch.backends.mkldnn.enabled (oneDNN kernels)",
                devices=("cpu",), apply=_mkldnn_apply, effective=_mkldnn_effective),
        Setting("flush_denormal", RUN, ("off", "on"), "torch.set_flush_denormal",
                devices=("cpu",), apply=_apply_flush_denormal,
                effective=_flush_denormal_effective),
        Setting("default_dtype", RUN, ("float32", "float64"), "torch.set_default_dtype",
                apply=_apply_default_dtype, effective=_default_dtype_effective),
    ]
}

ALWAYS_RECORDED = ("threads", "cpu_capability")  # in effect in every run, chosen or not


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
