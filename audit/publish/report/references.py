"""Published reference values: does a value printed in a public source (a tutorial's
tensor) still come out, and where."""

from __future__ import annotations

from typing import Any

import numpy as np

from audit.capture.distance import values
from audit.capture.sample import Sample
from audit.judge.axes import DEVICE, TORCH
from audit.judge.compare import Comparison
from audit.publish.markdown import escape, short_list, table
from audit.store.results import ResultsFile


def references_section(files: list[ResultsFile], result: Comparison) -> list[str]:
    """Do published values (a tutorial's printed tensor) still come out, and where?"""
    references: dict[tuple[str, str], dict[str, Any]] = {}
    for item in files:
        for scenario, outputs in (item.header.get("references") or {}).items():
            for output, reference in outputs.items():
                references[(scenario, output)] = reference
    if not references:
        return []
    lines = ["## Published reference values", "",
             "Values printed in a public source, compared at their printed precision.", ""]
    rows = []
    data = result.data
    for (scenario, output), reference in sorted(references.items()):
        found = data[(data["scenario"] == scenario) & (data["output"] == output)
                     & (data["status"] == "ok")]
        good, bad = set(), set()
        for _, record in found.iterrows():
            label = f"torch {record[TORCH]} {record[DEVICE]}"
            (good if reproduces(record["sample"], reference) else bad).add(label)
        rows.append([escape(scenario), escape(output), escape(reference.get("source", "")),
                     short_list(good) or "none", short_list(bad) or "none"])
    return lines + [table(["scenario", "output", "source", "reproduces in",
                           "does not reproduce in"], rows), ""]


def reproduces(sample_json: Any, reference: dict[str, Any]) -> bool:
    """True when the output, rounded as printed, equals the published values."""
    if not isinstance(sample_json, dict) or sample_json.get("index") is not None:
        return False
    kept = values(Sample.from_json(sample_json))
    printed = np.asarray(reference.get("values", []), dtype=np.float64).reshape(-1)
    if kept is None or kept.shape != printed.shape:
        return False
    tolerance = 0.5 * 10.0 ** -int(reference.get("decimals", 4)) + 1e-12
    return bool(np.all(np.abs(kept - printed) <= tolerance))
