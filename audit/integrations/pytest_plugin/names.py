"""Scenario names for pytest tests: a node id made safe, stable and one to one.

A test's values are rows of a scenario named after its node id, relative to pytest's
rootdir (the same on every machine that checks out the same tree):

    tests/test_model.py::TestMLP::test_step[float32-lr/2]
    -> tests.test_model:TestMLP.test_step[float32-lr%2F2]

The file's path without `.py` becomes dotted, a `:` separates it from the class and
function names (dotted too), and a parametrized test keeps its parameter id in brackets.
Anything outside letters, digits, `_` and `-` (plus `.,=+` inside the brackets) is written
as `%XX` per UTF-8 byte, `%` included, so the name holds no `/`, `::`, space or bracket of
its own, fits on one line, and two node ids never share a name. `@pytest.mark.repro(name=)`
replaces the part before the brackets, e.g. to keep a baseline when a test file moves.

The folder names are relative to is the rootdir pytest finds from the test paths alone
(`name_root`): pytest reads its rootdir before plugins add their options, so the value of
`--repro-check /elsewhere/baselines` (space-separated) counts as a test path there and
moves the rootdir to a common ancestor; the names must not move with it.
"""

from __future__ import annotations

import re
import string
from pathlib import Path
from typing import Any

from audit.errors import UserError

_NAME = frozenset(string.ascii_letters + string.digits + "_-")
_PARAMETER = _NAME | frozenset(".,=+")
# What a name given with the marker may hold: a scenario-like dotted name.
GIVEN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:+=,-]*")


def _encode(text: str, safe: frozenset[str]) -> str:
    return "".join(character if character in safe
                   else "".join(f"%{byte:02X}" for byte in character.encode("utf-8"))
                   for character in text)


def scenario_name(nodeid: str, given: str | None = None) -> str:
    """The scenario name of the test `nodeid` (see the module docstring)."""
    path, _, inside = nodeid.partition("::")
    parameter = None
    bracket = inside.find("[")  # class and function names hold no bracket: the id starts here
    if bracket >= 0 and inside.endswith("]"):
        inside, parameter = inside[:bracket], inside[bracket + 1:-1]
    if given is not None:
        if not GIVEN_NAME.fullmatch(given):
            raise UserError(f"{nodeid}: @pytest.mark.repro(name={given!r}): a name holds "
                            "letters, digits and _ . : + = , - only")
        base = given
    else:
        module = path[:-3] if path.endswith(".py") else path
        base = ".".join(_encode(part, _NAME) for part in module.split("/"))
        if inside:
            base += ":" + ".".join(_encode(part, _NAME) for part in inside.split("::"))
    return base if parameter is None else f"{base}[{_encode(parameter, _PARAMETER)}]"


def name_root(config: Any) -> Path:
    """The rootdir pytest would find from the test paths alone (`config.args`, parsed with
    every plugin's options), the ini file and `--rootdir`; pytest's own where that cannot
    be asked (its `determine_setup` is internal)."""
    try:
        from _pytest.config.findpaths import determine_setup

        found = determine_setup(
            inifile=config.known_args_namespace.inifilename,
            override_ini=config.known_args_namespace.override_ini,
            args=list(config.args), rootdir_cmd_arg=config.known_args_namespace.rootdir or None,
            invocation_dir=config.invocation_params.dir)
        return Path(found[0])
    except Exception:  # another pytest's signature: its rootdir
        return Path(config.rootpath)


def stable_nodeid(nodeid: str, path: Path | None, root: Path) -> str:
    """`nodeid` with its file part relative to `root` (unchanged when it lies outside)."""
    if path is None or "::" not in nodeid:
        return nodeid
    try:
        relative = Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return nodeid
    return relative + nodeid[nodeid.index("::"):]
