"""Names of a run's files: the results file, and the hidden journals beside it while it runs.

A results file is named by its torch version and env-id (and shard), so runs of different
environments write side by side in one folder and a rerun of one replaces its own file.
The journals are hidden (a leading dot) so that a run killed half-way leaves no file that
looks like results.
"""

from __future__ import annotations

from pathlib import Path


def results_name(torch_version: str, env_id: str, shard: tuple[int, int] | None = None) -> str:
    suffix = f"-shard{shard[0]}of{shard[1]}" if shard else ""
    return f"torch-{torch_version.replace('+', '_')}-{env_id}{suffix}.jsonl"


def journal_path(results: Path) -> Path:
    """The rows of the run writing `results`, one line per row as each unit finishes."""
    return results.parent / f".{results.name}.partial"


def trace_journal_path(results: Path) -> Path:
    """The traces of the run writing `results`, one line per traced unit (`run --trace`)."""
    return results.parent / f".{results.name}.traces-journal"


def lock_path(folder: Path) -> Path:
    """The lock a run holds on its output folder while it runs (audit.run.lock)."""
    return folder / ".repro-audit.lock"
