"""The axes a comparison runs along, and how their values are named and ordered.

An *axis* is one thing that varies in the data: the torch version, the device, the machine
(platform), or one setting (a `setting:` column of the frame, `audit.judge.frames`). The
report, the heatmap and the changelog name axes and values through these functions. No
pandas here.
"""

from __future__ import annotations

from typing import Any

from audit.config.settings import SETTINGS
from audit.environment.compat import parse_version

TORCH, DEVICE, PLATFORM = "torch", "device", "platform"
SETTING_PREFIX = "setting:"
DEVICE_ORDER = {"cpu": 0, "cuda": 1, "mps": 2, "xpu": 3}

CAPABILITY = SETTING_PREFIX + "cpu_capability"


def value_label(axis: str, value: Any) -> str:
    """An axis value as the report prints it: cpu_capability `default` is ATen's scalar
    kernels, a choice that must not read as "not set"."""
    text = str(value)
    return "default (scalar)" if axis == CAPABILITY and text == "default" else text


def axis_title(axis: str) -> str:
    return axis[len(SETTING_PREFIX):] if axis.startswith(SETTING_PREFIX) else {
        TORCH: "torch version", DEVICE: "device", PLATFORM: "machine"}[axis]


def value_order(axis: str, value: str) -> tuple[Any, ...]:
    """Natural order of an axis' values: versions numerically, cpu first, numbers as numbers."""
    if axis == TORCH:
        try:
            return (0, parse_version(value), value)
        except ValueError:
            return (1, (), value)
    if axis == DEVICE:
        return (DEVICE_ORDER.get(value, 9), (), value)
    setting = SETTINGS.get(axis[len(SETTING_PREFIX):]) if axis.startswith(SETTING_PREFIX) else None
    if setting is not None and setting.values and value in setting.values:
        return (0, (setting.values.index(value),), value)  # the order the setting lists
    if value.isdigit():
        return (0, (int(value),), value)
    return (1, (), value)
