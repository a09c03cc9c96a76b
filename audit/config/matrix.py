"""Matrix files (matrices/*.toml): which torch versions, devices, scenarios and settings.

Every key is checked: a typo is a one-line error naming the file and the key, never a
silently smaller audit. This module imports no torch: noxfile.py reads matrices with it.
"""

from __future__ import annotations

import math
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit.config.settings import parse_choices
from audit.errors import UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.9 / 3.10
    import tomli as tomllib

SOURCES = ("pip-config", "registry")
AUDIT_KEYS = {"select", "devices", "timeout", "scenario_files", "description", "trace"}
TORCH_KEYS = {"version", "from", "find_links", "index_url", "extra_index_urls", "numpy",
              "python", "packages"}
KNOWN_DEVICES = ("cpu", "cuda", "mps", "xpu")
# [ci] is read by audit.integrations.github_matrix only
TOP_KEYS = {"audit", "settings", "torch", "ci"}


@dataclass(frozen=True)
class TorchVersion:
    """One torch release to audit and where its wheels come from."""

    version: str
    source: str = "pip-config"  # "pip-config": pip's configured sources, then the registry
    find_links: tuple[str, ...] = ()
    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    numpy: str | None = None  # a requirement such as "<2", None: whatever resolves
    python: str | None = None
    packages: tuple[str, ...] = ()  # more requirements for this venv

    @property
    def requirement(self) -> str:
        return f"torch=={self.version}"

    @property
    def label(self) -> str:
        """Session-safe name: '2.13.0+cpu' -> '2.13.0-cpu'."""
        return self.version.replace("+", "-")


@dataclass(frozen=True)
class Matrix:
    path: Path
    select: tuple[str, ...] = ()
    devices: tuple[str, ...] = ("cpu", "cuda", "mps")
    timeout: float = 300.0
    trace: bool = False  # record op traces (run --trace) so reports name divergence origins
    scenario_files: tuple[str, ...] = ()
    settings: dict[str, list[str]] = field(default_factory=dict)
    # [[settings.also]]: further products, each the main one with some settings replaced
    # (a few probes of a setting without multiplying the whole matrix by its values)
    also: tuple[dict[str, list[str]], ...] = ()
    torch: tuple[TorchVersion, ...] = ()


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise UserError(f"{where} must be a string or a list of strings")
    return tuple(value)


def _check_keys(table: Any, allowed: set[str], where: str) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise UserError(f"{where} must be a table")
    unknown = sorted(set(table) - allowed)
    if unknown:
        known = ", ".join(sorted(allowed))
        raise UserError(f"{where}: unknown key {unknown[0]!r} (known: {known})")
    return table


def _resolve(folder: Path, name: str, where: str) -> str:
    try:
        return str((folder / name).resolve())
    except (OSError, ValueError) as error:  # a NUL byte, a symlink loop
        raise UserError(f"{where}: {name!r} is not a usable path ({error})") from None


def _boolean(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise UserError(f"{where} must be true or false, not {value!r}")
    return value


def parse_torch(entry: Any, where: str) -> TorchVersion:
    entry = _check_keys(entry, TORCH_KEYS, where)
    version = entry.get("version")
    if not isinstance(version, str) or not version.strip():
        raise UserError(f"{where}: 'version' must be a version string such as \"2.13.0\"")
    source = entry.get("from", "pip-config")
    if source not in SOURCES:
        raise UserError(f"{where}: 'from' is {source!r}; one of: {', '.join(SOURCES)}")
    index_url = entry.get("index_url")
    if index_url is not None and not isinstance(index_url, str):
        raise UserError(f"{where}: 'index_url' must be a string")
    for key in ("numpy", "python"):
        if entry.get(key) is not None and not isinstance(entry[key], str):
            raise UserError(f"{where}: {key!r} must be a string")
    return TorchVersion(
        version=version.strip(), source=source,
        find_links=_strings(entry.get("find_links", []), f"{where}.find_links"),
        index_url=index_url,
        extra_index_urls=_strings(entry.get("extra_index_urls", []), f"{where}.extra_index_urls"),
        numpy=entry.get("numpy"), python=entry.get("python"),
        packages=_strings(entry.get("packages", []), f"{where}.packages"),
    )


def load(path: str | Path) -> Matrix:
    """Read and validate a matrix file; every error names the file and the key."""
    file = Path(path)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{file}: matrix file not found") from None
    except UnicodeDecodeError:
        raise UserError(f"{file}: not a text file") from None
    except tomllib.TOMLDecodeError as error:
        raise UserError(f"{file}: not valid TOML: {error}") from None
    except OSError as error:  # a folder, no permission, ...
        raise UserError(f"{file}: cannot read the matrix file: {error.strerror or error}") from None
    except ValueError as error:  # a path with a NUL byte
        raise UserError(f"{str(file)!r}: not a usable path: {error}") from None
    where = str(file)
    _check_keys(data, TOP_KEYS, where)
    audit = _check_keys(data.get("audit", {}), AUDIT_KEYS, f"{where}: [audit]")
    devices = _strings(audit.get("devices", list(KNOWN_DEVICES[:3])), f"{where}: audit.devices")
    for device in devices:
        if device not in KNOWN_DEVICES:
            raise UserError(f"{where}: audit.devices: unknown device {device!r} "
                            f"(known: {', '.join(KNOWN_DEVICES)})")
    timeout = audit.get("timeout", 300.0)
    if (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
            or not math.isfinite(timeout) or not 0 < timeout <= threading.TIMEOUT_MAX):
        raise UserError(f"{where}: audit.timeout must be a positive number of seconds, "
                        f"not {timeout!r}")
    settings = data.get("settings", {})
    if not isinstance(settings, dict):
        raise UserError(f"{where}: [settings] must be a table")
    settings = dict(settings)
    also_tables = settings.pop("also", [])
    if not isinstance(also_tables, list) or not all(isinstance(t, dict) for t in also_tables):
        raise UserError(f"{where}: settings.also must be an array of tables "
                        "([[settings.also]])")
    main = parse_choices(settings, f"{where}: [settings]")
    also = tuple({**main, **parse_choices(table, f"{where}: settings.also[{index}]")}
                 for index, table in enumerate(also_tables))
    entries = data.get("torch", [])
    if not isinstance(entries, list):
        raise UserError(f"{where}: torch must be an array of tables ([[torch]])")
    versions = tuple(parse_torch(entry, f"{where}: torch[{i}]") for i, entry in enumerate(entries))
    seen: dict[str, int] = {}
    for index, version in enumerate(versions):
        if version.label in seen:
            raise UserError(f"{where}: torch[{index}]: version {version.version!r} is listed "
                            f"twice (also torch[{seen[version.label]}])")
        seen[version.label] = index
    scenario_files = tuple(
        _resolve(file.parent, name, f"{where}: audit.scenario_files")
        for name in _strings(audit.get("scenario_files", []), f"{where}: audit.scenario_files")
    )
    return Matrix(
        path=file,
        select=_strings(audit.get("select", []), f"{where}: audit.select"),
        devices=devices,
        timeout=float(timeout),
        trace=_boolean(audit.get("trace", False), f"{where}: audit.trace"),
        scenario_files=scenario_files,
        settings=main,
        also=also,
        torch=versions,
    )
