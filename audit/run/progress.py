"""Progress on a terminal ("scenario i of N"), silence in CI and in pipes."""

from __future__ import annotations

import os
import sys
from typing import TextIO


class Progress:
    """Rewrites one status line on a terminal; prints nothing when not interactive."""

    def __init__(self, stream: TextIO = sys.stderr, enabled: bool | None = None) -> None:
        self.stream = stream
        if enabled is None:
            enabled = stream.isatty() and not os.environ.get("CI")
        self.enabled = enabled
        self.width = 0

    def __call__(self, done: int, total: int, label: str) -> None:
        if not self.enabled:
            return
        text = f"[{done + 1}/{total}] {label}"[:100]
        self.stream.write("\r" + text.ljust(self.width))
        self.stream.flush()
        self.width = len(text)

    def close(self) -> None:
        if self.enabled and self.width:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()
