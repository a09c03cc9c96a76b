"""What could not be compared: conflicting digests, outputs that do not repeat run to run,
and cells without a value (errors, timeouts, unavailable)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

from audit.config.settings import SETTINGS
from audit.judge.axes import DEVICE, SETTING_PREFIX, TORCH, value_label
from audit.judge.compare import Comparison
from audit.publish.markdown import escape, short_list, table


def conflicts_section(result: Comparison) -> list[str]:
    if result.conflicts is None or result.conflicts.empty:
        return []
    rows = [[escape(record.env_id), escape(record.scenario), escape(record.output),
             str(record.digests), short_list(Path(f).name for f in record.files)]
            for record in result.conflicts.itertuples(index=False)]
    return ["## Conflicting results", "",
            "The same environment reported different digests for the same cell in different "
            "files: one of them is stale, or something that changes results is not recorded "
            "in the environment. These cells are compared with every digest they have.", "",
            table(["env-id", "scenario", "output", "digests", "files"], rows), ""]


def nondeterministic_section(result: Comparison) -> list[str]:
    lines = ["## Nondeterministic run to run", ""]
    data = result.nondeterministic
    if data.empty:
        return lines + ["Every output repeated bit for bit between two runs in the same "
                        "process.", ""]
    lines += ["The same cell gave different bits in two runs in one process (all RNG states "
              "scrambled in between): the scenario does not control its randomness, or an op "
              "is nondeterministic on that setup.", ""]
    settings = [c for c in data.columns if c.startswith(SETTING_PREFIX)]
    where: dict[tuple[str, str], set[str]] = defaultdict(set)
    columns = [data[column].to_numpy(dtype=object)
               for column in ("scenario", "output", TORCH, DEVICE, *settings)]
    for scenario, output, torch, device, *chosen in zip(*columns):
        where[(scenario, output)].add(context_label(torch, device, zip(settings, chosen),
                                                    result.axes))
    rows = []
    for (scenario, output), labels in sorted(where.items()):
        rows.append([escape(scenario), escape(output), str(len(labels)),
                     short_list(labels, 3)])
    return lines + [table(["scenario", "output", "setups", "where"], rows), ""]


def context_label(torch: Any, device: Any, settings: Iterable[tuple[str, Any]],
                  varied: Iterable[str] = ()) -> str:
    """'torch 2.14.1 cpu threads=2': where a cell was, its settings by column name.

    Every row records every setting; a label names those that vary in the results
    (`varied`, columns) and those not at their unset value, not the dozen nobody touched.
    """
    parts = [f"torch {torch}", str(device)]
    varied = set(varied)
    for column, value in settings:
        name = column[len(SETTING_PREFIX):]
        setting = SETTINGS.get(name)
        unset = setting.default if setting is not None else None
        if value != "n/a" and (column in varied or value != unset):
            parts.append(f"{name}={value_label(column, value)}")
    return " ".join(parts)


def problems_section(result: Comparison) -> list[str]:
    lines = ["## Errors and unavailable cells", ""]
    data = result.problems
    if data.empty:
        return lines + ["None.", ""]
    rows = []
    keys = ["status", "error", DEVICE, TORCH]
    for (status, error, device, torch), group in data.fillna({"error": ""}).groupby(
            keys, sort=False, observed=True):
        rows.append([status, escape(error), escape(device), escape(torch),
                     str(group["scenario"].nunique()), short_list(group["scenario"], 4)])
    rows.sort(key=lambda row: (row[0], row[2], row[3], row[1]))
    return lines + [table(["status", "reason", "device", "torch", "scenarios", "which"], rows),
                    ""]
