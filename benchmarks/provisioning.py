"""How long a torch venv takes to build with uv and with pip, cold and warm package cache.

Installs `torch==2.13.0+cpu` (default) into fresh venvs from the sources pip is configured
with: pip reads its own configuration; uv gets them as options
(`audit.integrations.uv_sources.pip_config_sources().uv_options()`), since it reads none of pip's.
  uv cold   fresh UV_CACHE_DIR in the temp folder (same filesystem as the venvs)
  uv warm   a second venv with that same cache (uv hard-links from its cache)
  pip cold  `--no-cache-dir`
  pip warm  `--cache-dir` filled by a first run (also reported: "pip filling cache")
Times are venv creation + install; the size is the venv's files, each inode once. The wheel
files are read once beforehand, so "cold" means the package cache, not the OS page cache.
Every venv is removed right after it is measured, the temp folder at the end.

    python benchmarks/provisioning.py [--quick] [--requirement REQ] [--tmp DIR]
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import emit_json, tree_size

from audit.integrations.uv_sources import pip_config_sources

MB = 1_000_000


def uv_binary() -> str:
    beside = Path(sys.executable).parent / "uv"
    found = str(beside) if beside.exists() else shutil.which("uv")
    if not found:
        sys.exit("provisioning: uv not found next to this python or on PATH")
    return found


def run(command: list[str], environ: dict[str, str] | None = None) -> float:
    """Seconds `command` takes; its output is shown only when it fails."""
    started = time.perf_counter()
    done = subprocess.run(command, env=environ, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-3000:] + done.stderr[-3000:])
        raise SystemExit(f"provisioning: failed ({done.returncode}): {' '.join(command)}")
    return elapsed


def torch_version(venv: Path) -> str:
    python = str(venv / "bin" / "python")
    return subprocess.run([python, "-c", "import torch; print(torch.__version__)"],
                          capture_output=True, text=True, check=False).stdout.strip() or "?"


def warm_page_cache(find_links: tuple[str, ...]) -> None:
    """Read the local wheels once so every variant finds them in the OS page cache."""
    for folder in find_links:
        for wheel in glob.glob(os.path.join(folder.replace("file://", ""), "torch-*.whl")):
            with open(wheel, "rb") as stream:
                while stream.read(1 << 24):
                    pass


def linked_size(path: Path) -> int:
    """Bytes of files under `path` that are hard links shared with something else (a cache)."""
    total = 0
    for directory, _, files in os.walk(path):
        for name in files:
            info = os.lstat(os.path.join(directory, name))
            if info.st_nlink > 1 and not os.path.islink(os.path.join(directory, name)):
                total += info.st_size
    return total


def measure(label: str, venv: Path, create: list[str], install: list[str],
            environ: dict[str, str]) -> dict[str, Any]:
    """Create + install one venv, record the times, size and torch version, remove it."""
    create_s = run(create, environ)
    install_s = run(install, environ)
    result = {"label": label, "create_s": create_s, "install_s": install_s,
              "total_s": create_s + install_s, "venv_mb": tree_size(venv) / MB,
              "hard_linked_mb": linked_size(venv) / MB, "torch": torch_version(venv)}
    shutil.rmtree(venv, ignore_errors=True)
    print(f"  {label:<18} {result['total_s']:7.2f} s (create {create_s:5.2f} s + install "
          f"{install_s:6.2f} s), venv {result['venv_mb']:6.1f} MB "
          f"({result['hard_linked_mb']:.0f} MB hard-linked), torch {result['torch']}",
          flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="uv only (cold and warm)")
    parser.add_argument("--requirement", default="torch==2.13.0+cpu")
    parser.add_argument("--tmp", help="folder for venvs and caches (default: system temp)")
    args = parser.parse_args()

    sources = pip_config_sources()
    uv_options = sources.uv_options()
    uv = uv_binary()
    python = sys.executable
    root = Path(tempfile.mkdtemp(prefix="repro-audit-provisioning-", dir=args.tmp))
    print(f"provisioning {args.requirement} with uv ({uv}) and pip, python {python}, "
          f"temp folder {root}")
    print(f"  uv options from pip's configuration: {' '.join(uv_options) or '(none)'}")
    warm_page_cache(sources.find_links)
    results: list[dict[str, Any]] = []
    uv_cache_mb = pip_cache_mb = None
    try:
        uv_environ = {**os.environ, "UV_CACHE_DIR": str(root / "uv-cache")}
        for label in ("uv cold", "uv warm"):
            venv = root / label.replace(" ", "-")
            results.append(measure(
                label, venv, [uv, "venv", "--quiet", "--python", python, str(venv)],
                [uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"),
                 *uv_options, args.requirement], uv_environ))
        uv_cache_mb = tree_size(root / "uv-cache") / MB
        if not args.quick:
            pip_environ = dict(os.environ)
            pip_cache = str(root / "pip-cache")
            for label, cache in (("pip cold", ["--no-cache-dir"]),
                                 ("pip filling cache", ["--cache-dir", pip_cache]),
                                 ("pip warm", ["--cache-dir", pip_cache])):
                venv = root / label.replace(" ", "-")
                results.append(measure(
                    label, venv, [python, "-m", "venv", str(venv)],
                    [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", *cache,
                     args.requirement], pip_environ))
            pip_cache_mb = tree_size(root / "pip-cache") / MB
    finally:
        shutil.rmtree(root, ignore_errors=True)

    by_label = {result["label"]: result for result in results}
    print(f"  uv cache after both: {uv_cache_mb:.1f} MB"
          + (f"; pip cache after filling: {pip_cache_mb:.1f} MB" if pip_cache_mb is not None
             else ""))
    if pip_cache_mb is not None and pip_cache_mb < 10:
        print("  (pip caches HTTP downloads and built wheels only: wheels it reads from a local "
              "find-links folder or file:// index are not cached, so warm = cold for pip here)")
    ratios = {}
    if "pip cold" in by_label:
        ratios = {
            "pip_cold_over_uv_cold": by_label["pip cold"]["total_s"]
            / by_label["uv cold"]["total_s"],
            "pip_warm_over_uv_warm": by_label["pip warm"]["total_s"]
            / by_label["uv warm"]["total_s"],
        }
        print(f"  pip / uv: cold {ratios['pip_cold_over_uv_cold']:.1f}x, "
              f"warm {ratios['pip_warm_over_uv_warm']:.1f}x")
    print(f"  removed {root}")
    emit_json("provisioning", {"requirement": args.requirement, "uv_options": uv_options,
                               "results": results, "ratios": ratios,
                               "uv_cache_mb": uv_cache_mb, "pip_cache_mb": pip_cache_mb})


if __name__ == "__main__":
    main()
