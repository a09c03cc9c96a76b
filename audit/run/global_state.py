"""The global torch state a unit's runs start from, held there after each run.

A scenario may switch torch's global knobs (`torch.set_default_dtype`,
`torch.set_num_threads`, `torch.use_deterministic_algorithms`, ...) while it runs. One that
leaves a knob switched would change every later unit of its worker, and their rows would be
filed under settings nobody chose. So the runner snapshots every knob it controls once a
unit's settings are applied, and after each run puts back any knob the run left changed.

A run that left a knob changed fails its unit with `StateChanged` ("scenario changed
threads 2 -> 1 and did not restore it"), rather than being re-filed under the changed
value: the change happened somewhere inside the run, so its outputs were computed partly
under one value and partly under the other (and its second run would have started where
the first left off), and no cell of the results describes that. A scenario that needs
another value sets it and restores it (try/finally), or asks for it as a setting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from audit.environment import readback
from audit.run.apply_settings import use_deterministic_algorithms


class StateChanged(Exception):
    """A run left a global knob the runner controls changed."""


@dataclass(frozen=True)
class Knob:
    """One global knob: how to read it, how to set it, and its value in words."""

    name: str
    read: Callable[[], Any]
    write: Callable[[Any], None]


def _words(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):  # deterministic: (enabled, warn_only)
        return "off" if not value[0] else "warn-only" if value[1] else "on"
    return str(value).replace("torch.", "")


def _attribute(name: str, path: str) -> Knob:
    """A knob held as an attribute: `path` is dotted from torch (an object, not always a
    module: torch.backends.cuda.matmul)."""
    import torch

    *parents, attribute = path.split(".")[1:]
    owner: Any = torch
    for parent in parents:
        owner = getattr(owner, parent)
    return Knob(name, lambda: getattr(owner, attribute),
                lambda value: setattr(owner, attribute, value))


def _deterministic() -> tuple[bool, bool]:
    import torch

    warn_only = getattr(torch, "is_deterministic_algorithms_warn_only_enabled", lambda: False)
    return bool(torch.are_deterministic_algorithms_enabled()), bool(warn_only())


def _matmul_precision() -> Knob | None:
    import torch

    if getattr(torch, "get_float32_matmul_precision", None) is None:
        return None  # torch < 1.12 has no such knob
    return Knob("matmul_precision", lambda: readback.matmul_precision(""),
                lambda value: value != "mixed" and torch.set_float32_matmul_precision(value))


def knobs() -> list[Knob]:
    """Every knob this torch has, in the order they are put back (allow_tf32 before the
    matmul precision it aliases, so the precision comes back as it was)."""
    import torch

    found = [
        Knob("threads", torch.get_num_threads, torch.set_num_threads),
        Knob("default_dtype", torch.get_default_dtype, torch.set_default_dtype),
        Knob("deterministic", _deterministic,
             lambda value: use_deterministic_algorithms(value[0], warn_only=value[1])),
        Knob("flush_denormal", readback.flush_denormal_enabled, torch.set_flush_denormal),
        _attribute("mkldnn", readback.MKLDNN_ENABLED),
        _attribute("cudnn_enabled", "torch.backends.cudnn.enabled"),
        _attribute("cudnn_benchmark", readback.CUDNN_BENCHMARK),
        _attribute("cudnn_deterministic", "torch.backends.cudnn.deterministic"),
        _attribute("cudnn_tf32", "torch.backends.cudnn.allow_tf32"),
        _attribute("tf32", "torch.backends.cuda.matmul.allow_tf32"),
        _matmul_precision(),
    ]
    return [knob for knob in found if knob is not None]


class Held:
    """The state after a unit's settings were applied; `check` after each run puts back what
    the run changed and raises StateChanged naming it."""

    def __init__(self) -> None:
        self.knobs = knobs()
        self.expected = {knob.name: knob.read() for knob in self.knobs}

    def check(self, raising: bool = True) -> None:
        """Every knob back to its expected value; StateChanged (when `raising`) if any was
        not there."""
        changed = []
        for knob in self.knobs:
            value, expected = knob.read(), self.expected[knob.name]
            if value != expected:
                knob.write(expected)
                changed.append(f"{knob.name} {_words(expected)} \u2192 {_words(value)}")
        if changed and raising:
            them = "it" if len(changed) == 1 else "them"
            raise StateChanged(f"scenario changed {', '.join(changed)} "
                               f"and did not restore {them}")
