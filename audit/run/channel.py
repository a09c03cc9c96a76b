"""The worker's line to its parent: events out, units in, one JSON line each.

Events go to the worker's original stdout (`main` moves whatever scenarios print to
stderr). The job comes first on stdin; then the parent hands out units one line at a time
as workers free up (audit.run.pool.pool), so one worker per process combination serves
every run-settings combination, and a second one can share the same queue. Each event is
sealed with the key the job brought (audit.run.pool.events.seal), so that the parent can
tell the worker's lines from lines scenario code wrote to the same pipe.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Iterator, TextIO

from audit.run.pool.events import seal


class Channel:
    """Events to the parent on `protocol`; units from the job, then from `more`."""

    def __init__(self, protocol: TextIO, more: Iterable[str] = (), key: bytes | None = None
                 ) -> None:
        self.protocol = protocol
        self.more = more  # further units, one JSON line each (main: stdin)
        self._key = key  # the job's seal key; None: lines go unsealed (tests)
        self._sent = 0

    def emit(self, event: str, **payload: Any) -> None:
        message = {"event": event, **payload}
        if self._key is None:
            line = json.dumps(message, sort_keys=True)
        else:
            line = seal(self._key, self._sent, message)
            self._sent += 1
        self.protocol.write(line + "\n")
        self.protocol.flush()

    def units(self, job: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """The job's units, then one unit per line of `more` until it closes."""
        yield from job.get("units", [])
        for line in self.more:
            if line.strip():
                yield json.loads(line)
