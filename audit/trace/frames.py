"""Which frame of a call stack is the user's code: the `source` of a recorded event.

An op is called from deep inside torch (autograd, `nn.Module.__call__`, an optimizer) and
from audit's own plumbing; the line worth showing is the first one outside both, and
outside the standard library. Built-in scenarios are user code, except the plumbing they
call (their context and registry). Each file is judged once: the recorder asks for every op.
"""

from __future__ import annotations

import functools
import os
import sysconfig
from pathlib import Path
from types import FrameType

_AUDIT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_PLUMBING = ("context.py", "registry.py", "__init__.py")


@functools.cache
def internal_prefixes(torch_folder: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Folders whose frames are not user code (torch, audit, the standard library), and the
    folders inside them whose frames are (the built-in scenarios)."""
    internal = [os.path.abspath(torch_folder) + os.sep, _AUDIT + os.sep]
    for key in ("stdlib", "platstdlib"):
        path = sysconfig.get_paths().get(key)
        if path:
            internal.append(os.path.abspath(path) + os.sep)
    user = [os.path.join(_AUDIT, "scenarios") + os.sep]
    return tuple(internal), tuple(user)


class CallerLocator:
    """Finds the user's line in a call stack, judging each file once."""

    def __init__(self, torch_folder: str) -> None:
        self.internal, self.user = internal_prefixes(torch_folder)
        self.names: dict[str, str | None] = {}  # file -> its name, None: not user code

    def judge(self, filename: str) -> str | None:
        """The file's name if it holds user code, else None; remembered."""
        path = os.path.abspath(filename)
        skip = path.startswith(self.internal) and not (
            path.startswith(self.user) and os.path.basename(path) not in _PLUMBING)
        name = self.names[filename] = None if skip else Path(filename).name
        return name

    def locate(self, frame: FrameType | None) -> str | None:
        """`file.py:41` of the first user frame from `frame` outwards (None: none is)."""
        names = self.names
        while frame is not None:
            filename = frame.f_code.co_filename
            name = names.get(filename, "")
            if name == "":  # not seen yet
                name = self.judge(filename)
            if name is not None:
                return f"{name}:{frame.f_lineno}"
            frame = frame.f_back
        return None
