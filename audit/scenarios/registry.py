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
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

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
    """
    if "." not in name or not all(part.strip() for part in name.split(".")):
        raise UserError(f"scenario name {name!r} must look like 'family.name'")

    def register(function: ScenarioFunction) -> ScenarioFunction:
        doc = (function.__doc__ or "").strip().splitlines()
        text = description or (doc[0].strip() if doc else "")
        existing = _REGISTRY.get(name)
        source = getattr(function, "__module__", "")
        if existing is not None and existing.source != source:
            raise UserError(f"scenario {name!r} is defined twice: in {_origin(existing.source)} "
                            f"and in {_origin(source)}")
        _REGISTRY[name] = Scenario(
            name=name,
            function=function,
            description=text,
            devices=tuple(devices) if devices is not None else None,
            min_torch=min_torch,
            modules=tuple(modules),
            timeout=timeout,
            references=dict(references or {}),
            source=source,
        )
        return function

    return register


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
    sys.modules[module_name] = module
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
            f"{type(error).__name__}: {_first_line(error)}"
        ) from None


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
