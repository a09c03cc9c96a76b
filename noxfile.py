"""nox sessions of repro-audit.

`nox` runs the default audit: one `audit` session per torch version of the matrix (each in
its own uv virtualenv) and then `report`. `nox -s tests` and `nox -s lint` check the code.
Choose another matrix with REPRO_AUDIT_MATRIX=matrices/other.toml.

uv reads none of pip's configuration, so the package sources pip is configured with on
this machine (`pip config list`: local find-links folders and indexes) are passed to uv
explicitly for every matrix entry that says `from = "pip-config"`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from audit import matrix as matrix_file  # noqa: E402 - torch-free modules of the package
from audit.errors import UserError  # noqa: E402
from audit.results import write_unavailable  # noqa: E402
from audit.sources import PackageSources, pip_config_sources, torch_sources  # noqa: E402

nox.options.default_venv_backend = "uv"
nox.options.sessions = ["audit", "report"]

PYPROJECT = nox.project.load_toml("pyproject.toml")
MATRIX_PATH = Path(os.environ.get("REPRO_AUDIT_MATRIX", "matrices/default.toml"))
RESULTS = Path(os.environ.get("REPRO_AUDIT_RESULTS", "results"))
REPORTS = Path(os.environ.get("REPRO_AUDIT_REPORTS", "reports"))
BASELINES = Path(os.environ.get("REPRO_AUDIT_BASELINES", "baselines"))

try:
    MATRIX = matrix_file.load(MATRIX_PATH)
except UserError as error:
    sys.exit(f"noxfile: {error}")
VERSIONS = {entry.label: entry for entry in MATRIX.torch}


def install_sources(entry: matrix_file.TorchVersion | None = None) -> PackageSources:
    pip_sources = pip_config_sources()
    return torch_sources(entry, pip_sources) if entry is not None else pip_sources


def install_torch(session: nox.Session, entry: matrix_file.TorchVersion) -> None:
    """torch (and the numpy it needs) from where the matrix says, then this package."""
    options = install_sources(entry).uv_options()
    requirements = [entry.requirement, *entry.packages]
    if entry.numpy:
        requirements.append(f"numpy{entry.numpy}")
    session.install(*options, *requirements)
    session.install(*options, "--no-deps", ".")
    session.install(*options, "blake3", *(["numpy"] if not entry.numpy else []))


@nox.session
@nox.parametrize("torch", list(VERSIONS))
def audit(session: nox.Session, torch: str) -> None:
    """Run the matrix's scenarios under one torch version; results go to results/."""
    entry = VERSIONS[torch]
    unavailable = RESULTS / f"torch-{entry.label}-unavailable.jsonl"
    try:
        install_torch(session, entry)
        session.run("python", "-c", "import torch", silent=True)
    except nox.command.CommandFailed:
        reason = (f"torch=={entry.version} could not be installed or imported here "
                  f"(source: {entry.source}; see the nox log)")
        write_unavailable(unavailable, entry.version, reason)
        session.skip(reason)
    unavailable.unlink(missing_ok=True)
    session.run("python", "-m", "audit", "run", "--matrix", str(MATRIX_PATH),
                "--out", str(RESULTS), *session.posargs)


@nox.session
def report(session: nox.Session) -> None:
    """Merge every results file under results/ into reports/README.md."""
    session.install(*install_sources().uv_options(), "--no-deps", ".")
    session.install(*install_sources().uv_options(), "numpy", "blake3", "pandas", "tabulate")
    session.run("python", "-m", "audit", "report", str(RESULTS), "--out", str(REPORTS),
                *session.posargs)


@nox.session
def baseline(session: nox.Session) -> None:
    """Check results/ against the reviewed baselines/: the session fails on a regression.

    `repro-audit baseline check` exits 1 when an output differs from its baseline and 2 on
    bad input; either fails the session, so a scheduled `nox -s audit baseline` fails.
    Outputs and environments without a baseline are listed, never failed.
    """
    session.install(*install_sources().uv_options(), "--no-deps", ".")
    session.install(*install_sources().uv_options(), "numpy", "blake3")
    session.run("python", "-m", "audit", "baseline", "check", str(RESULTS),
                "--against", str(BASELINES), *session.posargs)


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite, in a venv with the first torch of the matrix (CPU is enough)."""
    entry = MATRIX.torch[0]
    install_torch(session, entry)
    groups = nox.project.dependency_groups(PYPROJECT, "test")
    session.install(*install_sources().uv_options(), *groups)
    session.run("python", "-m", "pytest", *(session.posargs or ["-q"]))


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over the package, tests, benchmarks and this file."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "lint"))
    session.run("ruff", "check", ".")
