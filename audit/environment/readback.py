"""Each setting as it is in effect in this process, read back from torch and its libraries.

The setting definitions (audit.config.settings) name these functions and import this module
only when one is called: config stays torch-free for nox. A value is read from the library
that uses it, not from what was asked for, so a request the machine could not honour shows.
Each function takes the requested value (some readings depend on it) and returns the
canonical spelling of the value in effect.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from audit.config.settings import NOT_APPLICABLE

# --- process settings -------------------------------------------------------------------


def threads(_: str) -> str:
    import torch

    return str(torch.get_num_threads())


def cpu_capability(requested: str) -> str:
    from audit.environment.compat import cpu_capability as reported

    actual = (reported() or "unknown").lower()
    return requested if requested == "auto" and actual == "unknown" else actual


def cublas_workspace(_: str) -> str:
    return os.environ.get("CUBLAS_WORKSPACE_CONFIG") or "unset"


def mkl_cbwr(_: str) -> str:
    """The CNR mode MKL reports for a call; without MKL_CBWR it is off (`unset`), which
    needs no asking: MKL's verbose header measures the CPU's clock first, a cost every
    worker would pay."""
    from audit.environment.native import mkl_report

    if not os.environ.get("MKL_CBWR"):
        return "unset"
    report = mkl_report()
    if report is None or report.cnr is None:
        return "unknown"
    branch, _, strict = report.cnr.lower().partition(",")
    return "unset" if branch == "off" else branch + ("-strict" if strict else "")


def mkl_missing() -> str | None:
    from audit.environment.native import mkl_backend

    return None if mkl_backend() is not None else "this torch build does not use MKL"


def onednn_isa(_: str) -> str:
    """'all' when no cap is set, else the ISA oneDNN reports it dispatches to."""
    from audit.environment.native import onednn_isa_name, onednn_report

    if not (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")):
        return "all"
    report = onednn_report()
    return (onednn_isa_name(report.isa) if report is not None else None) or "unknown"


def onednn_missing() -> str | None:
    from audit.environment.native import onednn_report

    return None if onednn_report() is not None else "this torch build does not use oneDNN"


# --- run settings -----------------------------------------------------------------------


def deterministic(_: str) -> str:
    import torch

    if not torch.are_deterministic_algorithms_enabled():
        return "off"
    warn_getter = getattr(torch, "is_deterministic_algorithms_warn_only_enabled", lambda: False)
    return "warn-only" if warn_getter() else "on"


def attribute_owner(path: str) -> tuple[Any, str]:
    """The module and attribute name of a dotted path like torch.backends.cudnn.benchmark."""
    module_name, attribute = path.rsplit(".", 1)
    return importlib.import_module(module_name), attribute


# The boolean module attributes a setting switches, as the setting's "on" sets them.
CUDNN_BENCHMARK = "torch.backends.cudnn.benchmark"
MKLDNN_ENABLED = "torch.backends.mkldnn.enabled"


def attribute_state(path: str, on_value: Any = True) -> str:
    """'on' when the attribute at `path` holds `on_value`, else 'off'."""
    owner, attribute = attribute_owner(path)
    return "on" if getattr(owner, attribute) == on_value else "off"


def cudnn_benchmark(_: str) -> str:
    return attribute_state(CUDNN_BENCHMARK)


def mkldnn(_: str) -> str:
    return attribute_state(MKLDNN_ENABLED)


def matmul_precision(_: str) -> str:
    import torch

    getter = getattr(torch, "get_float32_matmul_precision", None)
    if getter is None:
        return NOT_APPLICABLE
    try:
        return getter()
    except RuntimeError:  # torch >= 2.9 after allow_tf32 was set over "medium": both APIs mixed
        return "mixed"


def tf32(_: str) -> str:
    import torch

    return "on" if torch.backends.cuda.matmul.allow_tf32 else "off"


def flush_denormal_enabled() -> bool:
    """Whether denormals are flushed now: torch has no getter, so probe the smallest one."""
    import torch

    smallest = torch.tensor([1], dtype=torch.int32).view(torch.float32)
    return int((smallest * 2).view(torch.int32).item()) == 0


def flush_denormal(_: str) -> str:
    return "on" if flush_denormal_enabled() else "off"


def default_dtype(_: str) -> str:
    import torch

    return str(torch.get_default_dtype()).replace("torch.", "")


def python_hash_seed(_: str) -> str:
    """The hash seed this interpreter started with: "0" when hash randomization is off
    (PYTHONHASHSEED=0), the seed when PYTHONHASHSEED fixed one, else "random"."""
    if not sys.flags.hash_randomization:
        return "0"
    seed = os.environ.get("PYTHONHASHSEED", "").strip()
    if sys.flags.ignore_environment or not seed.isdigit():
        return "random"
    return str(int(seed))


def qemu_cpu(_: str) -> str:
    """The QEMU_CPU this process started under, by its name in QEMU_CPU_MODELS."""
    from audit.config.settings import QEMU_CPU_MODELS

    model = os.environ.get("QEMU_CPU", "").strip().lower()
    names = {spelled: name for name, spelled in QEMU_CPU_MODELS.items()}
    return names.get(model, model) if model else "auto"


def qemu_missing() -> str | None:
    """None where this process runs under user-mode emulation (the interpreter's ELF
    machine is foreign to the kernel's), otherwise why qemu_cpu does not apply."""
    from audit.environment.cpu import interpreter_machine, read_text
    from audit.environment.cpu_linux import cpuinfo_fields
    from audit.environment.emulation import foreign_host

    host = foreign_host(interpreter_machine(), read_text("/proc/sys/kernel/arch"),
                        cpuinfo_fields(read_text("/proc/cpuinfo") or ""))
    return None if host is not None else "this process does not run under qemu user-mode emulation"
