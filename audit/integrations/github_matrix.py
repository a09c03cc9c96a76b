"""The GitHub Actions job matrix of a matrix file.

`python -m audit.integrations.github_matrix matrices/ci.toml` prints it.

Prints one line of JSON, `{"include": [{"os": ..., "torch": ..., "devices": ..., ...}]}`:
one job per runner x torch version, each auditing every device its runner has. The CI
system fans the jobs out; each job writes its own self-describing results files and the
report job merges them, so the harness needs no coordinator of its own.

The runners come from the matrix file's `[ci]` table, which only this module reads:

    [ci]
    # GitHub-hosted runner labels: one job per label x torch version
    os = ["ubuntu-latest", "macos-14", "windows-latest"]
    # Self-hosted runners, optional: a runs-on label list (its devices: gpu_devices),
    # or a table with devices of its own
    gpu_runners = [
        ["self-hosted", "linux", "gpu"],
        {labels = ["self-hosted", "macOS", "ARM64"], devices = ["cpu", "mps"]},
    ]
    gpu_devices = ["cpu", "cuda"]

    [ci.devices]             # devices of each hosted runner; ["cpu"] when not listed
    windows-latest = ["cpu"]

A job audits the devices of its runner that the matrix's `audit.devices` also names. Stdlib
and audit.config.matrix only: no torch, no numpy, so a bare Python on a CI runner can run it.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any, Sequence

from audit.config import matrix as matrix_file
from audit.config.matrix import KNOWN_DEVICES
from audit.errors import UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.9 / 3.10
    import tomli as tomllib

CI_KEYS = {"os", "gpu_runners", "gpu_devices", "devices"}
RUNNER_KEYS = {"labels", "devices"}
DEFAULT_DEVICES = ("cpu",)
DEFAULT_GPU_DEVICES = ("cpu", "cuda")
DEFAULT_PYTHON = "3.11"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")  # artifact names forbid " : < > | * ? \ / and more


def _labels(value: Any, where: str, allow_empty: bool = False) -> tuple[str, ...]:
    """A list of non-empty strings (one string is a list of one), non-empty unless allowed."""
    if isinstance(value, str):
        value = [value]
    if (not isinstance(value, list) or not (value or allow_empty)
            or not all(isinstance(item, str) and item.strip() for item in value)):
        size = "a" if allow_empty else "a non-empty"
        raise UserError(f"{where} must be {size} list of non-empty strings")
    return tuple(item.strip() for item in value)


def _devices(value: Any, where: str) -> tuple[str, ...]:
    devices = _labels(value, where)
    for device in devices:
        if device not in KNOWN_DEVICES:
            raise UserError(f"{where}: unknown device {device!r} "
                            f"(known: {', '.join(KNOWN_DEVICES)})")
    return devices


def _slug(text: str) -> str:
    """A name safe in an artifact name and a file name: 'self-hosted, gpu' -> 'self-hosted-gpu'."""
    return _UNSAFE.sub("-", text).strip("-") or "runner"


def read_ci_table(path: Path) -> dict[str, Any]:
    """The raw `[ci]` table of a matrix file that audit.config.matrix.load has already accepted."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    if "ci" not in data:
        raise UserError(f"{path}: no [ci] table: add one naming the runners, e.g. "
                        f"[ci] os = [\"ubuntu-latest\"]")
    table = data["ci"]
    if not isinstance(table, dict):
        raise UserError(f"{path}: ci must be a table ([ci])")
    unknown = sorted(set(table) - CI_KEYS)
    if unknown:
        raise UserError(f"{path}: [ci]: unknown key {unknown[0]!r} "
                        f"(known: {', '.join(sorted(CI_KEYS))})")
    return table


def _runners(path: Path, ci: dict[str, Any]) -> list[tuple[str, Any, tuple[str, ...]]]:
    """(name, runs-on value, devices) of every runner, hosted ones first."""
    where = f"{path}: ci"
    hosted = _labels(ci.get("os", []), f"{where}.os", allow_empty=True)
    devices_table = ci.get("devices", {})
    if not isinstance(devices_table, dict):
        raise UserError(f"{where}.devices must be a table ([ci.devices]: runner label = "
                        f"[devices])")
    for label in devices_table:
        if label not in hosted:
            raise UserError(f"{where}.devices: {label!r} is not a runner of ci.os "
                            f"({', '.join(hosted) or 'none'})")
    runners: list[tuple[str, Any, tuple[str, ...]]] = [
        (label, label, _devices(devices_table[label], f"{where}.devices.{label}")
         if label in devices_table else DEFAULT_DEVICES)
        for label in hosted
    ]
    gpu_runners = ci.get("gpu_runners", [])
    if not isinstance(gpu_runners, list):
        raise UserError(f"{where}.gpu_runners must be a list of runs-on label lists or "
                        f"{{labels = [...], devices = [...]}} tables, "
                        f"e.g. [[\"self-hosted\", \"linux\", \"gpu\"]]")
    gpu_devices = _devices(ci.get("gpu_devices", list(DEFAULT_GPU_DEVICES)),
                           f"{where}.gpu_devices")
    for index, item in enumerate(gpu_runners):
        at = f"{where}.gpu_runners[{index}]"
        devices = gpu_devices
        if isinstance(item, dict):  # {labels = [...], devices = [...]}: a runner of its own
            unknown = sorted(set(item) - RUNNER_KEYS)
            if unknown:
                raise UserError(f"{at}: unknown key {unknown[0]!r} "
                                f"(known: {', '.join(sorted(RUNNER_KEYS))})")
            if "labels" not in item:
                raise UserError(f"{at}: 'labels' is missing (the runs-on labels)")
            if "devices" in item:
                devices = _devices(item["devices"], f"{at}.devices")
            item = item["labels"]
            at += ".labels"
        labels = _labels(item, at)
        runners.append(("-".join(labels), list(labels), devices))
    return runners


def job_matrix(path: str | Path) -> dict[str, list[dict[str, Any]]]:
    """The `strategy.matrix` of the audit workflow: {"include": [one job per runner x torch]}.

    Each job has `os` (a name for the runner), `runner` (the runs-on value: a label or a
    label list), `torch` (the session-safe version label), `version`, `python`, `devices`
    (comma-separated, for `repro-audit run --devices`), `session` (the nox session) and
    `artifact` (a name unique to the job).
    """
    file = Path(path)
    matrix = matrix_file.load(file)  # every non-CI key checked, file errors named
    runners = _runners(file, read_ci_table(file))
    if not matrix.torch:
        raise UserError(f"{file}: no [[torch]] entries: nothing for CI to audit")
    if not runners:
        raise UserError(f"{file}: ci.os and ci.gpu_runners are both empty: no runner to "
                        f"audit on")
    include: list[dict[str, Any]] = []
    artifacts: dict[str, str] = {}
    for name, runs_on, runner_devices in runners:
        devices = [device for device in runner_devices if device in matrix.devices]
        if not devices:  # the matrix audits none of this runner's devices
            continue
        for entry in matrix.torch:
            artifact = f"results-{_slug(name)}-torch-{_slug(entry.label)}"
            if artifact in artifacts:
                raise UserError(f"{file}: ci: runner {name!r} is listed twice "
                                f"(two jobs would be named {artifact!r})")
            artifacts[artifact] = name
            include.append({
                "os": name,
                "runner": runs_on,
                "torch": entry.label,
                "version": entry.version,
                "python": entry.python or DEFAULT_PYTHON,
                "devices": ",".join(devices),
                "session": f"audit(torch='{entry.label}')",
                "artifact": artifact,
            })
    if not include:
        raise UserError(f"{file}: audit.devices ({', '.join(matrix.devices)}) names none of "
                        f"the devices of the runners in [ci]: no job to run")
    return {"include": include}


def main(argv: Sequence[str] | None = None) -> int:
    """Print the job matrix as one line of JSON; bad input is one line on stderr, exit 2."""
    parser = argparse.ArgumentParser(
        prog="python -m audit.integrations.github_matrix",
        description="Print the GitHub Actions job matrix (JSON) of a matrix file's [ci] table.")
    parser.add_argument("matrix", nargs="?", default="matrices/ci.toml",
                        help="matrix file (default: matrices/ci.toml)")
    args = parser.parse_args(argv)
    try:
        jobs = job_matrix(args.matrix)
    except UserError as error:
        print(f"repro-audit: error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(jobs, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
