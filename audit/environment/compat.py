"""Guards for what older torch and numpy releases lack.

The package runs inside every torch it audits (1.13 to 2.14) and numpy 1.x / 2.x.
Everything version-dependent is looked up here once, so the rest of the code asks
a question ("has float8?") instead of comparing version strings.
"""

from __future__ import annotations

import re
from typing import Any


def parse_version(text: str) -> tuple[int, ...]:
    """Numeric release tuple of a version string: '2.13.0+cpu' -> (2, 13, 0)."""
    match = re.match(r"^\s*v?(\d+(?:\.\d+)*)", text)
    if not match:
        raise ValueError(f"not a version: {text!r}")
    return tuple(int(part) for part in match.group(1).split("."))


def version_at_least(version: str, minimum: str) -> bool:
    """True when `version` is `minimum` or newer (local labels such as +cpu ignored)."""
    have, want = parse_version(version), parse_version(minimum)
    width = max(len(have), len(want))
    return have + (0,) * (width - len(have)) >= want + (0,) * (width - len(want))


def torch_dtype(name: str) -> Any | None:
    """The torch dtype called `name` ('float8_e4m3fn'), or None where this torch lacks it."""
    import torch

    return getattr(torch, name, None)


def cpu_capability() -> str | None:
    """The vector ISA ATen dispatches to ('AVX512', 'AVX2', 'DEFAULT'), None where unknown."""
    import torch

    getter = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", None)
    if getter is not None:
        return str(getter())
    # torch 1.13 has no getter, but its build summary names the capability in use.
    match = re.search(r"CPU capability usage: (\w+)", torch.__config__.show())
    return match.group(1) if match else None
