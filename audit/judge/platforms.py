"""Across machines, what a user gets: one release, each platform at its automatic choices.

Two machines rarely share every setting value: an aarch64 torch has no MKL (`mkl_cbwr` is
n/a there), ATen picks `avx512` on one CPU and `default` or `sve256` on another, a build
label (`+cpu`, `+cu128`) differs between wheels of one release. Along the machine axis a
cell is therefore compared twice over: like for like (every other axis equal, as along any
axis: where a setting was pinned on purpose on both machines), and as a user gets it, each
setting read as `auto` where the machine ran its automatic value (the capability its
torch picks by itself, a setting's unset value, qemu's default model) or where the setting
does not apply (n/a). Each pair of cells counts once. No other axis changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
import pandas as pd

from audit.config.settings import NOT_APPLICABLE, SETTINGS
from audit.judge.axes import CAPABILITY, PLATFORM, SETTING_PREFIX, TORCH, value_order
from audit.judge.cells import matched_pairs
from audit.judge.frames import AUTOMATIC_CAPABILITY

AUTO = "auto"
VIEW_PREFIX = "auto:"  # the column of a setting as a user gets it
QEMU_DEFAULT_MODEL = "max"  # the model qemu user mode emulates when QEMU_CPU is not set


def release(version: str) -> str:
    """'2.9.1+cu128' -> '2.9.1': the local build label is the build, not the release."""
    return str(version).split("+", 1)[0]


def merge_build_labels(data: pd.DataFrame) -> pd.DataFrame:
    """The torch axis by release where one release came with several build labels (the
    labels stay in each environment); unchanged where every release has one label."""
    if TORCH not in data.columns or data.empty:
        return data
    versions = [str(value) for value in data[TORCH].cat.categories]
    labels: dict[str, set[str]] = {}
    for version in versions:
        labels.setdefault(release(version), set()).add(version)
    if all(len(found) == 1 for found in labels.values()):
        return data
    renamed = [release(v) if len(labels[release(v)]) > 1 else v for v in versions]
    codes, categories = pd.factorize(pd.Index(renamed, dtype=object))
    merged = data.copy()
    merged[TORCH] = pd.Categorical.from_codes(codes[data[TORCH].cat.codes.to_numpy()],
                                              pd.Index(categories, dtype=object))
    return merged


def as_user_gets(name: str, value: str, automatic_capability: str) -> str:
    """A setting's value as a user gets it: `auto` where it is the machine's own choice."""
    if value in (NOT_APPLICABLE, AUTO):
        return AUTO
    if name == "cpu_capability":
        return AUTO if value == automatic_capability else value
    if name == "qemu_cpu":
        return AUTO if value == QEMU_DEFAULT_MODEL else value
    setting = SETTINGS.get(name)
    return AUTO if setting is not None and value == setting.default else value


def user_view(cells: pd.DataFrame, context: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """`cells` with a view column per setting of `context`, and the context that uses them."""
    automatic, automatic_values = pd.factorize(
        cells[AUTOMATIC_CAPABILITY].astype(object).to_numpy()
        if AUTOMATIC_CAPABILITY in cells.columns else np.full(len(cells), "unknown"))
    also, views = [], {}
    for column in context:
        if not column.startswith(SETTING_PREFIX):
            also.append(column)
            continue
        name = column[len(SETTING_PREFIX):]
        # by codes: each (value, automatic capability) combination is read once
        codes, values = pd.factorize(cells[column].astype(object).to_numpy())
        combined, combinations_found = pd.factorize(codes * len(automatic_values) + automatic)
        read = [as_user_gets(name, str(values[code // len(automatic_values)]),
                             str(automatic_values[code % len(automatic_values)]))
                for code in combinations_found]
        view_codes, view_values = pd.factorize(pd.Index(read, dtype=object))
        views[VIEW_PREFIX + column] = pd.Categorical.from_codes(
            view_codes[combined], pd.Index(view_values, dtype=object))
        also.append(VIEW_PREFIX + column)
    return cells.assign(**views), also


@dataclass
class PairCoverage:
    """What one pair of machines compared, and why the outputs they share but did not
    compare were left out."""

    first: str
    second: str
    shared: int  # outputs both machines produced (any status)
    compared: int
    left_out: dict[str, int] = field(default_factory=dict)  # reason: outputs
    automatic: tuple[str, str] = ("", "")  # each machine's automatic cpu_capability


def automatic_capabilities(data: pd.DataFrame, machine: str) -> str:
    """The cpu_capability values torch picked by itself on `machine`, as the report says."""
    if AUTOMATIC_CAPABILITY not in data.columns:
        return "unknown"
    found = data.loc[data[PLATFORM] == machine, AUTOMATIC_CAPABILITY].astype(object)
    values = sorted(set(found), key=lambda value: value_order(CAPABILITY, value))
    return ", ".join(values) or "unknown"


def pair_coverage(data: pd.DataFrame, comparable: pd.DataFrame, context: list[str],
                  also: list[str]) -> list[PairCoverage]:
    """Every pair of machines: outputs shared, compared, and left out with the reason."""
    machines = sorted(set(data[PLATFORM].astype(object)))
    produced = {machine: set(zip(*(data.loc[data[PLATFORM] == machine, column].astype(object)
                                   for column in ("scenario", "output"))))
                for machine in machines}
    usable = {machine: set(zip(*(comparable.loc[comparable[PLATFORM] == machine, column]
                                 .astype(object) for column in ("scenario", "output"))))
              for machine in machines}
    ran = {machine: {scenario for scenario, _ in produced[machine]} for machine in machines}
    coverage = []
    for first, second in combinations(machines, 2):
        # an output of one machine whose scenario the other ran (and failed) is shared too
        shared = {key for key in produced[first] | produced[second]
                  if isinstance(key[1], str) and key[0] in ran[first] & ran[second]}
        merged = matched_pairs(comparable, PLATFORM, context, first, second, also)
        compared = set(zip(merged["scenario"].astype(object), merged["output"].astype(object)))
        left_out: dict[str, int] = {}
        for key in shared - compared:
            if key not in usable[first] or key not in usable[second]:
                reason = ("no value to compare on one machine (an error, unavailable, or "
                          "not repeatable run to run)")
            else:
                reason = "no cell where the other axes match (torch release, device, threads, " \
                         "a setting pinned on one machine only)"
            left_out[reason] = left_out.get(reason, 0) + 1
        coverage.append(PairCoverage(first, second, len(shared), len(compared & shared),
                                     dict(sorted(left_out.items())),
                                     (automatic_capabilities(data, first),
                                      automatic_capabilities(data, second))))
    return coverage
