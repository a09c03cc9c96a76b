"""Progress on a terminal ("scenario i of N"); in CI logs and pipes, a plain line now and
then (units done of total, elapsed), as pytest and pip print there."""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Callable, TextIO

LOG_SECONDS = 30.0  # a log line at least this often while units finish
LOG_STEPS = 10  # and one each tenth of the units (a run of 2,000 units: every 200)


class Progress:
    """Rewrites one status line on a terminal; elsewhere writes a line every tenth of the
    units or every 30 s, whichever comes first (nothing when `lines` is False)."""

    def __init__(self, stream: TextIO | None = None, enabled: bool | None = None,
                 lines: bool | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._stream = stream  # None: sys.stderr when written (pytest's capture swaps it)
        if enabled is None:
            enabled = self.stream.isatty() and not os.environ.get("CI")
        self.enabled = enabled
        self.lines = not enabled if lines is None else lines
        self.width = 0
        self.clock = clock
        self.started: float | None = None
        self.last_line = 0.0
        self.next_done = 0
        self.logged = (0, 0)  # (done, total) of the last log line

    @property
    def stream(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stderr

    def __call__(self, done: int, total: int, label: str) -> None:
        if self.enabled:
            text = f"[{done + 1}/{total}] {label}"[:100]
            self.stream.write("\r" + text.ljust(self.width))
            self.stream.flush()
            self.width = len(text)
        elif self.lines:
            self._log(done, total)

    def _log(self, done: int, total: int) -> None:
        now = self.clock()
        if self.started is None:
            self.started = self.last_line = now
            self.next_done = math.ceil(total / LOG_STEPS)
        if done > 0 and (done >= self.next_done or now - self.last_line >= LOG_SECONDS):
            self._write(done, total, now)

    def _write(self, done: int, total: int, now: float) -> None:
        elapsed = now - (self.started or now)
        self.stream.write(f"{done}/{total} units done, {elapsed:.0f} s elapsed\n")
        self.stream.flush()
        self.last_line = now
        step = math.ceil(total / LOG_STEPS)
        self.next_done = (done // step + 1) * step
        self.logged = (done, total)

    def close(self) -> None:
        if self.enabled and self.width:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()
