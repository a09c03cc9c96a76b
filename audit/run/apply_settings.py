"""Settings applied inside a worker: process settings at start-up, run settings per unit.

The run settings' appliers are here (audit.config.settings names them and imports this
module only when one is called: config stays torch-free for nox). Each applier switches
torch's global state and returns a function that restores it. What is in effect afterwards
is read back (audit.environment.readback), never assumed.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping

from audit.config.settings import NOT_APPLICABLE, PROCESS, RUN, SETTINGS, in_effect
from audit.environment import readback
from audit.scenarios.registry import Unavailable

# --- the appliers of run settings (each returns a restore) -------------------------------


def use_deterministic_algorithms(mode: bool, warn_only: bool = False) -> None:
    """`torch.use_deterministic_algorithms`, without importing torch._inductor for it.

    From torch 2.1 on it imports `torch._inductor.config` (an import every worker would
    pay for) to set inductor's `deterministic` flag. Until something imports that module,
    the flag is handed over as the variable the module reads when it is imported; once it
    is imported, torch's own call sets it. The ATen flag is set the same way either way.
    """
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


def deterministic(value: str) -> Callable[[], None]:
    import torch

    before = torch.are_deterministic_algorithms_enabled()
    warn_getter = getattr(torch, "is_deterministic_algorithms_warn_only_enabled", lambda: False)
    before_warn = warn_getter()
    if value == "warn-only":
        use_deterministic_algorithms(True, warn_only=True)
    else:
        use_deterministic_algorithms(value == "on")

    def restore() -> None:
        if before_warn:
            use_deterministic_algorithms(before, warn_only=True)
        else:
            use_deterministic_algorithms(before)

    return restore


def set_attribute(path: str, value: str, on_value: Any = True, off_value: Any = False
                  ) -> Callable[[], None]:
    """Set a boolean-ish module attribute like torch.backends.cudnn.benchmark."""
    owner, attribute = readback.attribute_owner(path)
    before = getattr(owner, attribute)
    setattr(owner, attribute, on_value if value == "on" else off_value)
    return lambda: setattr(owner, attribute, before)


def cudnn_benchmark(value: str) -> Callable[[], None]:
    return set_attribute(readback.CUDNN_BENCHMARK, value)


def mkldnn(value: str) -> Callable[[], None]:
    return set_attribute(readback.MKLDNN_ENABLED, value)


def matmul_precision(value: str) -> Callable[[], None]:
    import torch

    setter = getattr(torch, "set_float32_matmul_precision", None)
    if setter is None:
        raise Unavailable("torch.set_float32_matmul_precision is missing in this torch")
    before = torch.get_float32_matmul_precision()
    setter(value)
    return lambda: setter(before)


def tf32(value: str) -> Callable[[], None]:
    import torch

    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    # allow_tf32 is an alias of the matmul precision ("highest" or "high"): keep the
    # precision to restore too, or a "medium" before would come back as "high" (or, in
    # torch >= 2.9, as a state in which get_float32_matmul_precision raises).
    precision = readback.matmul_precision("")
    torch.backends.cuda.matmul.allow_tf32 = value == "on"
    torch.backends.cudnn.allow_tf32 = value == "on"

    def restore() -> None:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before
        if precision not in (NOT_APPLICABLE, "mixed"):
            torch.set_float32_matmul_precision(precision)

    return restore


def flush_denormal(value: str) -> Callable[[], None]:
    import torch

    before = readback.flush_denormal_enabled()
    if not torch.set_flush_denormal(value == "on") and value == "on":
        raise Unavailable("this CPU does not support flushing denormals (no SSE3)")
    return lambda: torch.set_flush_denormal(before)


def default_dtype(value: str) -> Callable[[], None]:
    import torch

    before = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, value))
    return lambda: torch.set_default_dtype(before)


# --- in the worker ----------------------------------------------------------------------


def apply_threads() -> None:
    """The thread count the `threads` process setting asked for (its environment variable):
    OpenMP and MKL read theirs at start-up, torch's intra-op pool is set here."""
    import torch

    threads = os.environ.get("REPRO_AUDIT_THREADS")
    if threads:
        torch.set_num_threads(int(threads))


def process_settings(requested: Mapping[str, str]
                     ) -> tuple[dict[str, str], dict[str, str | None]]:
    """Process settings as in effect, and why a setting's library is missing here.

    Read before any scenario runs: oneDNN tells its ISA only once per process.
    """
    effective = in_effect(PROCESS, requested)
    missing = {name: SETTINGS[name].needs() for name in effective
               if effective[name] == NOT_APPLICABLE and SETTINGS[name].needs is not None}
    return effective, missing


class RunSettings:
    """A unit's run settings: applied before its runs, read back, restored after."""

    def __init__(self, requested: Mapping[str, str]) -> None:
        self.requested = dict(requested)
        self.restores: list[Callable[[], None]] = []
        self.effective: dict[str, str] = {}  # every run setting as read back, chosen or not

    def apply(self) -> None:
        """Apply each requested value; an Unavailable when one did not take effect."""
        for name, value in self.requested.items():
            setting = SETTINGS[name]
            if value != NOT_APPLICABLE and setting.apply is not None:
                restore = setting.apply(value)
                if restore is not None:
                    self.restores.append(restore)
        # Read back after all are applied (one may undo another), chosen or not.
        self.effective = in_effect(RUN, self.requested)
        for name, value in self.requested.items():
            if value != NOT_APPLICABLE and self.effective[name] != value:
                raise Unavailable(f"{name}={value} did not take effect "
                                  f"(torch reports {self.effective[name]})")

    def read_back(self) -> dict[str, str]:
        """Every run setting and the thread count as in effect now (after a unit's runs)."""
        return {**in_effect(RUN, self.requested), "threads": readback.threads("")}

    def restore(self) -> None:
        """Torch's state as before `apply`, last applied first."""
        for restore in reversed(self.restores):
            restore()
        self.restores = []
