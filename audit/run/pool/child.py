"""One worker process as the pool sees it: its pipes, its stderr, and its events in a queue."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any, Union

from audit.run.pool.events import Event, Fatal, ProtocolError, Seal, decode
from audit.run.pool.forkserver import ForkedProcess, ForkServers

# What the reader thread queues: an event, a line that was none, or None once output closed.
Item = Union[Event, ProtocolError, None]


class Child:
    """One worker process: the job line sent at start, units sent one at a time, events read
    by a thread of its own into a queue (None when its output closes).

    The process is forked by a fork server of the pool (audit.run.pool.forkserver) where one can
    serve it, else started fresh (`python -m audit.run.worker`). Either way that happens in the
    child's own thread, so that creating a Child never waits for a server that is still
    importing torch; whatever touches the process waits until it exists."""

    def __init__(self, task_key: str, environ: dict[str, str], header: dict[str, Any],
                 servers: ForkServers | None = None) -> None:
        self.task_key = task_key
        self.stderr: IO[bytes] = tempfile.TemporaryFile(mode="w+b")  # noqa: SIM115
        self.events: queue.Queue[Item] = queue.Queue()
        self.effective: dict[str, str] | None = None  # process settings, from "ready"
        self.ran = 0  # units it finished
        self.spawned = time.monotonic()
        self.seal = Seal()  # its key goes to the worker with the job; its lines must carry it
        self.forked = False  # whether a fork server started it
        self.background = False  # whether it runs at idle priority (audit.run.pool.priority)
        self._process: subprocess.Popen[bytes] | ForkedProcess | None = None
        self._launched = threading.Event()
        threading.Thread(target=self._launch, args=(environ, header, servers),
                         daemon=True).start()

    def _launch(self, environ: dict[str, str], header: dict[str, Any],
                servers: ForkServers | None) -> None:
        try:
            forked = servers.spawn(environ, self.stderr) if servers is not None else None
            self.forked = forked is not None
            self._process = forked or subprocess.Popen(
                [sys.executable, "-m", "audit.run.worker"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=self.stderr, env=environ)
        except Exception as error:  # noqa: BLE001 - reported as the worker's failure
            self.events.put(Fatal(error=f"worker not started: {error}"))
            self.events.put(None)
            return
        finally:
            self._launched.set()
        self.send({**header, "seal": self.seal.key.hex()})
        assert self._process.stdout is not None
        read_events(self._process.stdout, self.events, self.seal)

    @property
    def process(self) -> subprocess.Popen[bytes] | ForkedProcess | None:
        """The worker process, once started (None: it could not be)."""
        self._launched.wait()
        return self._process

    def send(self, message: dict[str, Any]) -> bool:
        """Write one line to the child; False when it is gone."""
        try:
            process = self.process
            assert process is not None and process.stdin is not None
            process.stdin.write(json.dumps(message).encode() + b"\n")
            process.stdin.flush()
        except (AssertionError, BrokenPipeError, OSError, ValueError):
            return False
        return True

    def event(self, deadline: float) -> Event | None:
        """The next event; None when the child closed its output; queue.Empty past deadline;
        ProtocolError for a line that is no event (audit.run.pool.events)."""
        item = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
        if isinstance(item, ProtocolError):
            raise item
        return item

    def close(self, wait: bool = True) -> None:
        """No more units: the worker finishes and exits (`wait`: wait for it, see `reap`)."""
        process = self.process
        with contextlib.suppress(OSError, ValueError):
            if process is not None and process.stdin is not None:
                process.stdin.close()
        if wait:
            self.reap()

    def reap(self) -> None:
        process = self.process
        try:
            if process is not None:
                process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.kill()
        self.stderr.close()

    def kill(self) -> None:
        process = self.process
        if process is None:
            return
        process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=30)

    def exit_message(self) -> str:
        """'worker exited with code N: <last line of its stderr>' (after it ended)."""
        process = self.process
        code = process.wait() if process is not None else "none (not started)"
        self.stderr.seek(0)
        tail = self.stderr.read()[-2000:].decode("utf-8", "replace").strip()
        last_line = tail.splitlines()[-1] if tail else ""
        return f"worker exited with code {code}" + (f": {last_line}" if last_line else "")


def read_events(stream: IO[bytes], events: queue.Queue[Item], sealed: Seal | None = None
                ) -> None:
    """Every line of a worker's protocol stream, decoded, into `events`; then None.
    With `sealed`, each line must carry the worker's seal (audit.run.pool.events)."""
    for line in stream:
        if not line.endswith(b"\n"):
            # Cut off where the worker died while writing: how it ended says more (its
            # exit code and stderr, from the None that follows) than half a line does.
            break
        try:
            events.put(decode(line, sealed))
        except ProtocolError as error:
            events.put(error)
    events.put(None)


def close_all(children: list[Child]) -> None:
    """Close workers at once, then wait for each: they exit side by side."""
    for child in children:
        child.close(wait=False)
    for child in children:
        child.reap()


def package_environ(environ: dict[str, str]) -> dict[str, str]:
    """`environ` with this very package importable first (installed or not)."""
    package_root = str(Path(__file__).resolve().parents[3])
    environ = dict(environ)
    environ["PYTHONPATH"] = os.pathsep.join(
        [package_root] + [p for p in environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    return environ
