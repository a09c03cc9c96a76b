"""Baselines: what one environment produced, kept so a later run can be checked against it.

`report` compares environments with each other; a baseline compares an environment with
itself over time, so a scheduled job can re-run the same matrix and fail on a regression.
Values are keyed by (env-id, device, settings, scenario, output): only like is compared
with like, and a new torch, numpy or machine (a new env-id) is listed as "without
baseline", never failed.

Three parts: the baseline files and saving them (`files`), the check (`check`), and what
is printed (`messages`). Their names, and the row helpers of `audit.judge.rows` that the
pytest plugin uses, are importable from here. No torch and no pandas here: the check runs
in the torch-free report venv.
"""

from __future__ import annotations

from audit.capture.distance_text import describe_gap
from audit.judge.baseline.check import Checker, CheckResult, Regression, check
from audit.judge.baseline.files import (
    ENVIRONMENT_KEYS,
    FORMAT,
    SAFE_ENV_ID,
    SCHEMA,
    SUFFIX,
    Baseline,
    Entry,
    Key,
    baseline_path,
    environment_summary,
    load_baseline,
    refuse_overwrite,
    save,
    save_files,
    write_baseline,
)
from audit.judge.baseline.messages import describe_environment, format_check, grouped_lines
from audit.judge.rows import (
    cell_label,
    comparable,
    env_of,
    has_value,
    measure,
    one_line,
    settings_key,
)

__all__ = [
    "ENVIRONMENT_KEYS", "FORMAT", "SAFE_ENV_ID", "SCHEMA", "SUFFIX", "Baseline", "CheckResult",
    "Checker", "Entry", "Key", "Regression", "baseline_path", "cell_label", "check",
    "comparable", "describe_environment", "describe_gap", "env_of", "environment_summary",
    "format_check", "grouped_lines", "has_value", "load_baseline", "measure", "one_line",
    "refuse_overwrite", "save", "save_files", "settings_key", "write_baseline",
]
