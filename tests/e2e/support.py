"""What the end-to-end tests share: `python -m audit` in a subprocess, and what it wrote."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT


def audit_command(*arguments: str) -> list[str]:
    """The command line `python -m audit ARGUMENTS`, under this interpreter."""
    return [sys.executable, "-m", "audit", *arguments]


def audit_cli(*arguments: str, env: dict[str, str] | None = None,
              timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`python -m audit ARGUMENTS` run to its end from the repository's root, its output
    captured as text; the exit status is the caller's to check."""
    return subprocess.run(audit_command(*arguments), cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def read_results(out: Path) -> tuple[dict, list[dict]]:
    """The header and the rows of the one results file a run wrote into `out`."""
    (results,) = out.glob("*.jsonl")
    lines = [json.loads(line) for line in results.read_text(encoding="utf-8").splitlines()]
    return lines[0], lines[1:]
