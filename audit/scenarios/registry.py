"""The scenario registry: `@scenario("family.name")` and loading user scenario files.

A scenario is a seeded generation script. It takes a `Context` and returns a mapping of
output names to tensors (nested mappings, lists, tuples and `state_dict()`s are flattened
to dotted names by `audit.capture.outputs`). This module imports no torch, so the report side of
the package stays usable in an environment without it.
"""

from __future__ import annotations

import fnmatch
import importlib
import importlib.util
import math
import os
import sys
import threading
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from audit.config.matrix import KNOWN_DEVICES
from audit.environment.compat import parse_version
from audit.errors import UserError

ScenarioFunction = Callable[[Any], Any]
USER_MODULE_PREFIX = "audit_user_scenarios_"  # modules load_file makes from user files


class Unavailable(Exception):
    """Raised by a scenario when this environment lacks what it needs (an op, a dtype)."""


@dataclass(frozen=True)
class Scenario:
    """One registered scenario and what it needs to run."""

    name: str
    function: ScenarioFunction
    description: str  # "" when neither given nor documented
    devices: tuple[str, ...] | None = None  # None: every device the run audits
    min_torch: str | None = None
    modules: tuple[str, ...] = ()  # optional packages it imports (cells unavailable without)
    timeout: float | None = None  # seconds; None: the run's --timeout
    references: Mapping[str, Any] = field(default_factory=dict)  # published values per output
    source: str = ""  # module or file it came from

    @property
    def family(self) -> str:
        return self.name.split(".", 1)[0]


_REGISTRY: dict[str, Scenario] = {}


def scenario(
    name: str,
    description: str | None = None,
    *,
    devices: Iterable[str] | None = None,
    min_torch: str | None = None,
    modules: Iterable[str] = (),
    timeout: float | None = None,
    references: Mapping[str, Any] | None = None,
) -> Callable[[ScenarioFunction], ScenarioFunction]:
    """Register the decorated function as scenario `name` ("family.name").

    `description` defaults to the first line of the function's docstring, and may be
    absent altogether: a name is enough, as it is for a test.
    `devices` limits where it runs ("cpu" only for numpy and python scenarios).
    Every argument is checked here, so a bad one is one line naming the file and the
    scenario (see `load_file`), never a scenario that silently does not run.
    """
    if not isinstance(name, str) or "." not in name or not all(
            part.strip() for part in name.split(".")):
        raise UserError(f"scenario name {name!r} must look like 'family.name'")
    checked = _checked_arguments(name, description, devices, min_torch, modules, timeout,
                                 references)

    def register(function: ScenarioFunction) -> ScenarioFunction:
        doc = (function.__doc__ or "").strip().splitlines()
        text = description or (doc[0].strip() if doc else "")
        existing = _REGISTRY.get(name)
        source = getattr(function, "__module__", "")
        if existing is not None and existing.source != source:
            raise UserError(f"scenario {name!r} is defined twice: in {_origin(existing.source)} "
                            f"and in {_origin(source)}")
        if existing is not None:  # load_file forgets a file's scenarios before it runs again
            first = getattr(getattr(existing.function, "__code__", None), "co_firstlineno", None)
            raise UserError(f"scenario {name!r} is defined twice in {_origin(source)}"
                            + (f" (first at line {first})" if first else ""))
        _REGISTRY[name] = Scenario(name=name, function=function, description=text,
                                   source=source, **checked)
        return function

    return register


def _checked_arguments(name: str, description: Any, devices: Any, min_torch: Any,
                       modules: Any, timeout: Any, references: Any) -> dict[str, Any]:
    """`scenario`'s arguments as `Scenario` holds them; a UserError naming the first bad one.

    Unchecked, a bad one surfaced late and far away: a timeout of "abc" or an unknown device
    made the scenario vanish from the run, a min_torch of "garbage!" was a traceback.
    """
    where = f"scenario {name!r}"
    if description is not None and not isinstance(description, str):
        raise UserError(f"{where}: description={description!r} must be a string")
    if devices is not None:
        devices = _names(where, "devices", devices, "('cpu',)")
        if not devices:
            raise UserError(f"{where}: devices=() names no device (leave it out for every one)")
        for device in devices:
            if device not in KNOWN_DEVICES:
                raise UserError(f"{where}: devices={devices!r}: unknown device {device!r} "
                                f"(known: {', '.join(KNOWN_DEVICES)})")
    if min_torch is not None:
        try:
            parse_version(min_torch if isinstance(min_torch, str) else "")
        except ValueError:
            raise UserError(f"{where}: min_torch={min_torch!r} is not a version string "
                            "such as '2.1'") from None
    modules = _names(where, "modules", modules, "('scipy',)")
    for module in modules:
        if not all(part.isidentifier() for part in module.split(".")):
            raise UserError(f"{where}: modules={modules!r}: {module!r} is not a module name")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                or not math.isfinite(timeout)
                                or not 0 < timeout <= threading.TIMEOUT_MAX):
        raise UserError(f"{where}: timeout={timeout!r} must be a positive number of seconds")
    if references is not None and not isinstance(references, Mapping):
        raise UserError(f"{where}: references must be a mapping of output names to values, "
                        f"not {type(references).__name__}")
    return {"devices": devices, "min_torch": min_torch, "modules": modules,
            "timeout": timeout, "references": dict(references or {})}


def _names(where: str, argument: str, value: Any, example: str) -> tuple[str, ...]:
    """The strings of a tuple, list or other iterable; a bare string is refused, since
    `tuple("cpu")` would be ('c', 'p', 'u')."""
    if not isinstance(value, (str, bytes, Mapping)) and isinstance(value, Iterable):
        items = tuple(value)
        if all(isinstance(item, str) for item in items):
            return items
    raise UserError(f"{where}: {argument}={value!r} must be a tuple of strings, "
                    f"such as {example}")


BUILTIN_MODULES = (
    "audit.scenarios.seed",
    "audit.scenarios.rng",
    "audit.scenarios.state",
    "audit.scenarios.init",
    "audit.scenarios.ops",
    "audit.scenarios.train",
    "audit.scenarios.data",
    "audit.scenarios.numpy_random",
    "audit.scenarios.python_random",
)


def load_builtin() -> None:
    """Import every built-in scenario family (each registers itself on import)."""
    for module in BUILTIN_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            if error.name != module:  # a family module exists but an import inside it failed
                raise


def _origin(source: str) -> str:
    """A module name as the user knows it: the file path for a user scenario file."""
    if source.startswith(USER_MODULE_PREFIX):
        return str(getattr(sys.modules.get(source), "__file__", None) or source)
    return source


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else ""


def _line_in(file: Path, error: BaseException) -> str:
    """':N', N the deepest line of `file` in the error's traceback ('' when it is not there)."""
    numbers = [frame.lineno for frame in traceback.extract_tb(error.__traceback__)
               if frame.filename == str(file)]
    return f":{numbers[-1]}" if numbers else ""


def load_file(path: str | Path) -> None:
    """Import a user's scenario file from its path (it is code: it runs as the user).

    Any failure is a UserError of one line naming the file (and the line where known).
    """
    file = Path(path)
    if not file.is_file():
        raise UserError(f"{file}: scenario file not found")
    module_name = f"{USER_MODULE_PREFIX}{abs(hash(str(file.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, file)
    if spec is None or spec.loader is None:
        raise UserError(f"{file}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    _importable_beside(file)
    sys.modules[module_name] = module
    for name in [name for name, item in _REGISTRY.items() if item.source == module_name]:
        del _REGISTRY[name]  # loaded again: it defines them anew (twice in one run is refused)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as error:
        sys.modules.pop(module_name, None)
        where = f"{error.filename or file}:{error.lineno or '?'}"
        if error.filename and error.filename != str(file):  # in a module the file imports
            raise UserError(f"{file}: does not import: syntax error in {where}: "
                            f"{error.msg}") from None
        raise UserError(f"{where}: syntax error: {error.msg}") from None
    except UserError as error:  # e.g. a scenario name without a dot
        sys.modules.pop(module_name, None)
        raise UserError(f"{file}{_line_in(file, error)}: {_first_line(error)}") from None
    except (Exception, SystemExit) as error:  # noqa: BLE001 - user code fails as a UserError
        sys.modules.pop(module_name, None)
        raise UserError(
            f"{file}{_line_in(file, error)}: does not import: "
            f"{type(error).__name__}: {_first_line(error)}{_missing_module_hint(error)}"
        ) from None


def _importable_beside(file: Path) -> None:
    """Put the file's folder and the working directory on sys.path (as `python -m audit`
    and `python mine.py` have them), so the user's own package next to it imports."""
    for folder in (str(file.resolve().parent), os.getcwd()):
        if folder not in sys.path:
            sys.path.insert(0, folder)


def _missing_module_hint(error: BaseException) -> str:
    """What to do about a module the file imports that is not found, or ''."""
    if not isinstance(error, ModuleNotFoundError):
        return ""
    return (f" (looked in the scenario file's folder, the working directory and "
            f"{sys.prefix}: install it there, or add its folder to PYTHONPATH)")


def all_scenarios() -> dict[str, Scenario]:
    """Every registered scenario by name, sorted."""
    return dict(sorted(_REGISTRY.items()))


def select(patterns: Iterable[str] | None) -> list[Scenario]:
    """Scenarios whose names match any glob in `patterns` (all when none is given).

    A pattern that matches nothing is a user error: a typo must not pass as an empty audit.
    """
    scenarios = all_scenarios()
    patterns = list(patterns or [])
    if not patterns:
        return list(scenarios.values())
    chosen: dict[str, Scenario] = {}
    for pattern in patterns:
        matched = [s for n, s in scenarios.items() if fnmatch.fnmatchcase(n, pattern)]
        if not matched:
            raise UserError(f"--select {pattern!r} matches no scenario (see `repro-audit list`)")
        for item in matched:
            chosen[item.name] = item
    return [chosen[name] for name in sorted(chosen)]
