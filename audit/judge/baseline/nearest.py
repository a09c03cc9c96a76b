"""The nearest reference of a value that has no baseline of its own.

A value checked in an environment or under settings the baseline folder never saw is
compared with the same test's same output saved elsewhere: the reference that differs on
the fewest axes (a setting, the device, torch / numpy / Python / OS / CPU, or, when none of
those differ but the env-id does, the machine), ties broken by the reference's key so the
choice is stable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from audit.judge.baseline.files import Entry, Key

ENVIRONMENT_AXES = ("torch", "numpy", "python", "os", "cpu")
Axis = tuple[str, str, str]  # (axis, the baseline's value, this run's value)


@dataclass(frozen=True)
class Reference:
    """A baselined value of another environment or settings, and how they differ."""

    key: Key
    entry: Entry
    axes: tuple[Axis, ...]

    @property
    def names(self) -> frozenset[str]:
        return frozenset(axis for axis, _, _ in self.axes)

    def describe(self) -> str:
        """`threads 2 → 1, torch 2.13.0 → 2.14.1`."""
        return describe_axes(self.axes)


def describe_axes(axes: tuple[Axis, ...]) -> str:
    return ", ".join(f"{axis} {was} → {now}" for axis, was, now in axes) or \
        "same environment and settings"


def settings_axes(was_key: str, now_key: str) -> tuple[Axis, ...]:
    """The settings that differ between two sorted-JSON settings keys."""
    was, now = json.loads(was_key), json.loads(now_key)
    return tuple((name, str(was.get(name)), str(now.get(name)))
                 for name in sorted(set(was) | set(now)) if was.get(name) != now.get(name))


def differing_axes(reference: Key, reference_env: dict[str, Any], key: Key,
                   env: dict[str, Any]) -> tuple[Axis, ...]:
    """The axes along which `reference` (saved in `reference_env`) and `key` differ."""
    axes: list[Axis] = []
    if reference.device != key.device:
        axes.append(("device", reference.device, key.device))
    axes += settings_axes(reference.settings, key.settings)
    for name in ENVIRONMENT_AXES:
        if reference_env.get(name) != env.get(name):
            axes.append((name, str(reference_env.get(name)), str(env.get(name))))
    if reference.env_id != key.env_id and not axes:
        # The env-id also hashes what a setting changes (the thread count in torch's parallel
        # info): the machine is named only when nothing else explains the other env-id.
        axes.append(("machine", reference.env_id, key.env_id))
    return tuple(axes)


class References:
    """Every baselined value of a folder by (scenario, output), read on first use."""

    def __init__(self, baselines: list[Any]) -> None:
        self.by_output: dict[tuple[str, str], list[tuple[Key, Entry, dict[str, Any]]]] = {}
        for baseline in baselines:
            for key, entry in baseline.entries.items():
                self.by_output.setdefault((key.scenario, key.output), []).append(
                    (key, entry, baseline.environment))

    def nearest(self, key: Key, env: dict[str, Any]) -> Reference | None:
        """The reference with the fewest differing axes (None: the output was never saved)."""
        best: Reference | None = None
        for other, entry, other_env in self.by_output.get((key.scenario, key.output), []):
            axes = differing_axes(other, other_env, key, env)
            if best is None or (len(axes), other) < (len(best.axes), best.key):
                best = Reference(other, entry, axes)
        return best

    def __bool__(self) -> bool:
        return bool(self.by_output)
