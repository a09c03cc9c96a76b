"""The names of op-trace files: where a results file's traces lie, and a unit's key in them.

The report, `repro-audit keep` and the runs all find traces by these rules, so they live here
with the other on-disk formats (torch-free) rather than in the trace stage that records them.
"""

from __future__ import annotations

from pathlib import Path

from audit.store.results import TRACES_SUFFIX, unit_key

# A unit's trace is stored under its unit key, made from the settings in effect.
trace_key = unit_key


def traces_path(results: Path) -> Path:
    """The traces beside a results file: `x.jsonl` (or `x.jsonl.gz`) -> `x.traces.jsonl.gz`."""
    name = Path(results).name
    for suffix in (".jsonl.gz", ".jsonl"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return Path(results).with_name(name + TRACES_SUFFIX)
