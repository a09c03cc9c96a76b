"""Workers forked from a process that has already imported torch: start-ups cost milliseconds.

Importing torch and what the scenarios pull in lazily (torch._dynamo through torch.optim,
sympy through torch._refs, ...) takes seconds per process, and an audit starts a worker
for every process-settings combination: a large share of the audit's CPU time went to
imports (docs/benchmarks.md). A *fork server* imports all of
it once, runs no op, and forks a worker per request; the worker then sets its own
environment and runs `audit.run.worker.main` as a `python -m audit.run.worker` child would.

Why the worker's results are those of a fresh process:
- the settings a fork server's workers may differ in are only those their libraries read
  at first use, after the fork (`LAZY_VARIABLES`: ATen's CPU capability, MKL's CBWR
  branch, oneDNN's ISA cap, cuBLAS's workspace); every other variable is the same as the
  server's, because each distinct import-time environment (e.g. OMP_NUM_THREADS, read when
  OpenMP and OpenBLAS load) gets a server of its own (`server_environ`);
- the server runs no tensor op and must not initialise CUDA or start a Python thread (it
  checks, and refuses to serve otherwise: callers then start fresh processes);
- every worker reads every setting back from the libraries themselves (audit.config.settings), so
  a setting that did not take effect is recorded as such, never silently wrong;
- tests/e2e/test_parallel.py checks that the digests of forked workers equal those of fresh
  processes for every combination of the default matrix.

Linux only (fork with Objective-C frameworks or Windows is not safe or not there); set
REPRO_AUDIT_FORK=0 to start every worker as a fresh process.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from typing import IO, Any, Iterable

from audit.run.pool.priority import PRIORITY_VARIABLE

# Read by their libraries at first use, not at import: a forked worker may set them.
# The worker's priority (audit.run.pool.priority) is set by the worker itself, after the fork.
LAZY_VARIABLES = frozenset({"ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA",
                            "DNNL_MAX_CPU_ISA", "CUBLAS_WORKSPACE_CONFIG", PRIORITY_VARIABLE})
# Imported before forking: what workers import at start and what scenarios import lazily
# (torch._dynamo, pulled in by the first torch.optim step, is the largest of them).
PRELOAD = ("numpy", "numpy.random", "blake3", "torch", "torch.nn", "torch.optim",
           "torch.distributions", "torch.utils.data", "multiprocessing.queues",
           "multiprocessing.popen_fork", "torch._dynamo",
           "torch.fx.experimental.symbolic_shapes", "audit.run.worker", "audit.capture.outputs",
           "audit.capture.hashing", "audit.capture.sample", "audit.config.settings",
            "audit.environment.native", "audit.trace.record", "audit.trace.recorder",
           "audit.scenarios.context")
MESSAGE_BYTES = 1 << 20  # one request: a worker's environment as JSON
POLL_SECONDS = 0.05  # how soon a worker's exit is reported (the pool waits for it)
REPLY_SECONDS = 120.0  # the server imports torch before it answers the first request


def supported() -> bool:
    """Whether workers may be forked here (Linux, Python with fd passing, not disabled)."""
    return (sys.platform.startswith("linux") and hasattr(socket, "send_fds")
            and os.environ.get("REPRO_AUDIT_FORK", "1") != "0")


def server_environ(worker_environ: dict[str, str]) -> dict[str, str]:
    """The environment of the server that may fork a worker of `worker_environ`: the same
    without the variables read after the fork. Workers whose environments give the same
    server environment share a server."""
    return {name: value for name, value in worker_environ.items()
            if name not in LAZY_VARIABLES}


def server_key(worker_environ: dict[str, str]) -> str:
    return json.dumps(server_environ(worker_environ), sort_keys=True)


class ForkedProcess:
    """A worker forked by a server, with the part of `subprocess.Popen` the pool uses."""

    def __init__(self, pid: int, stdin: IO[bytes], stdout: IO[bytes],
                 server: ForkServer) -> None:
        self.pid = pid
        self.stdin: IO[bytes] | None = stdin
        self.stdout: IO[bytes] | None = stdout
        self.server = server
        self.returncode: int | None = None

    def wait(self, timeout: float | None = None) -> int:
        """Its exit code, as its server reports it (it is the server's child)."""
        code = self.server.exit_code(self.pid, timeout)
        if code is None:
            raise subprocess.TimeoutExpired(f"worker {self.pid}", timeout or 0.0)
        self.returncode = code
        return code

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(self.pid, signal.SIGKILL)


class ForkServer:
    """The parent's handle of one server (`python -m audit.run.pool.forkserver`)."""

    def __init__(self, environ: dict[str, str]) -> None:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.socket = mine
        self.process = subprocess.Popen(
            [sys.executable, "-m", "audit.run.pool.forkserver", str(theirs.fileno())],
            pass_fds=[theirs.fileno()], env=environ, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL)
        theirs.close()
        self.lock = threading.Lock()  # one request at a time
        self.changed = threading.Condition()
        self.pids: dict[int, int] = {}  # request id -> pid
        self.exits: dict[int, int] = {}  # pid -> exit code
        self.refused: str | None = None  # why it serves no more (None: it serves)
        self.requests = 0
        threading.Thread(target=self._read_replies, daemon=True).start()

    def _read_replies(self) -> None:
        while True:
            try:
                data = self.socket.recv(MESSAGE_BYTES)
            except OSError:
                data = b""
            with self.changed:
                if not data:
                    self.refused = self.refused or "the fork server exited"
                    self.changed.notify_all()
                    return
                reply = json.loads(data)
                if "pid" in reply:
                    self.pids[reply["request"]] = reply["pid"]
                elif "exit" in reply:
                    self.exits[reply["exit"]] = reply["code"]
                elif "refused" in reply:
                    self.refused = reply["refused"]
                self.changed.notify_all()

    def spawn(self, environ: dict[str, str], stderr: IO[bytes]) -> ForkedProcess:
        """A worker with `environ`, its stdin and stdout piped here; OSError when the server
        cannot fork one (the caller starts a fresh process instead)."""
        child_stdin, to_child = os.pipe()
        from_child, child_stdout = os.pipe()
        try:
            with self.lock:
                self.requests += 1
                request = self.requests
                message = json.dumps({"request": request, "environ": environ}).encode()
                socket.send_fds(self.socket, [message],
                                [child_stdin, child_stdout, stderr.fileno()])
            pid = self._wait_for_pid(request)
        except OSError:
            for fd in (to_child, from_child):
                os.close(fd)
            raise
        finally:
            os.close(child_stdin)
            os.close(child_stdout)
        return ForkedProcess(pid, os.fdopen(to_child, "wb"), os.fdopen(from_child, "rb"), self)

    def _wait_for_pid(self, request: int) -> int:
        deadline = time.monotonic() + REPLY_SECONDS
        with self.changed:
            while request not in self.pids:
                left = deadline - time.monotonic()
                if self.refused is not None or left <= 0:
                    raise OSError(self.refused or "the fork server did not answer")
                self.changed.wait(timeout=left)
            return self.pids.pop(request)

    def exit_code(self, pid: int, timeout: float | None) -> int | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.changed:
            while pid not in self.exits:
                if self.refused is not None and self.process.poll() is not None:
                    return -signal.SIGKILL  # its server is gone: nobody can tell
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self.changed.wait(timeout=left if left is not None else 1.0)
            return self.exits[pid]

    def close(self, wait: bool = True) -> None:
        """No more requests: the server exits once its workers have (`wait`: wait for it,
        see `reap`)."""
        with contextlib.suppress(OSError):
            self.socket.shutdown(socket.SHUT_WR)
        if wait:
            self.reap()

    def reap(self) -> None:
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.socket.close()


class ForkServers:
    """One server per import-time environment, started on first need (`start` ahead of
    time), closed with the pool. `spawn` gives None where no server can fork the worker:
    the caller then starts a fresh process, so a refusing server costs only its import."""

    def __init__(self) -> None:
        self.servers: dict[str, ForkServer] = {}
        self.lock = threading.Lock()
        self.forked = 0  # workers forked, for the run's summary and the tests
        self.shared: set[str] | None = None  # server keys worth a server (None: every one)

    def expect(self, worker_environs: Iterable[dict[str, str]]) -> None:
        """The workers a run will start, once: a server is started only for an import-time
        environment that two or more of them share. A server imports more than one worker
        needs (torch._dynamo, ...), so for one worker a fresh process is faster (a run of
        one settings combination)."""
        counts = Counter(server_key(environ) for environ in worker_environs)
        with self.lock:
            if self.shared is None:
                self.shared = {key for key, count in counts.items() if count > 1}

    def start(self, worker_environ: dict[str, str]) -> ForkServer | None:
        if not supported():
            return None
        key = server_key(worker_environ)
        with self.lock:
            if self.shared is not None and key not in self.shared and key not in self.servers:
                return None
            if key not in self.servers:
                self.servers[key] = ForkServer(server_environ(worker_environ))
            return self.servers[key]

    def spawn(self, worker_environ: dict[str, str], stderr: IO[bytes]) -> ForkedProcess | None:
        server = self.start(worker_environ)
        if server is None or server.refused is not None:
            return None
        try:
            process = server.spawn(worker_environ, stderr)
        except OSError:
            return None
        with self.lock:
            self.forked += 1
        return process

    def close(self) -> None:
        with self.lock:
            servers, self.servers = list(self.servers.values()), {}
        for server in servers:  # all at once: they exit side by side
            server.close(wait=False)
        for server in servers:
            server.reap()


# --- the server process -------------------------------------------------------------------

def preload() -> str | None:
    """Import what workers will need; why forking is unsafe now, or None."""
    import importlib

    for module in PRELOAD:
        with contextlib.suppress(Exception):  # an old torch lacks some: imported later
            importlib.import_module(module)
    from audit.scenarios import registry

    registry.load_builtin()
    torch = sys.modules.get("torch")
    if torch is None:
        return "torch does not import"
    if torch.cuda.is_initialized():
        return "CUDA was initialised while importing"
    if threading.active_count() > 1:
        return "a Python thread was started while importing"
    return None


def serve(channel: socket.socket) -> None:
    """Fork a worker per request until the parent closes the channel; report exits."""
    children: set[int] = set()
    sys.stdout.flush()
    sys.stderr.flush()
    while True:
        reap(channel, children, block=False)
        readable, _, _ = select.select([channel], [], [], POLL_SECONDS)
        if not readable:
            continue
        message, fds, _, _ = socket.recv_fds(channel, MESSAGE_BYTES, 3)
        if not message:  # the parent is done: wait for the workers, then exit
            while children:
                reap(channel, children, block=True)
            return
        request = json.loads(message)
        pid = os.fork()
        if pid == 0:
            become_worker(channel, fds, request["environ"])
        children.add(pid)
        for fd in fds:
            os.close(fd)
        send(channel, {"request": request["request"], "pid": pid})


def reap(channel: socket.socket, children: set[int], block: bool) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
        except ChildProcessError:
            children.clear()
            return
        if pid == 0:
            return
        children.discard(pid)
        send(channel, {"exit": pid, "code": os.waitstatus_to_exitcode(status)})
        if block:
            return


def send(channel: socket.socket, reply: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):  # the parent is gone: nobody to tell
        channel.send(json.dumps(reply).encode())


def become_worker(channel: socket.socket, fds: list[int], environ: dict[str, str]) -> None:
    """In the forked child: take the worker's pipes and environment, run it, never return."""
    code = 1
    try:
        channel.close()
        for target, fd in enumerate(fds):  # stdin, stdout, stderr
            os.dup2(fd, target)
            os.close(fd)
        os.environ.clear()
        os.environ.update(environ)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        from audit.run import worker

        worker.main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    except BaseException:  # noqa: BLE001 - reported on stderr, like a fresh process would
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def main() -> None:
    import warnings

    # Python >= 3.12 warns on fork() in a process with more than one OS thread; here the
    # other thread is OpenBLAS's (numpy's), which makes itself fork-safe (pthread_atfork).
    # Python threads and CUDA are checked by `preload`.
    warnings.filterwarnings("ignore", message=r".*use of fork\(\) may lead to deadlocks",
                            category=DeprecationWarning)
    channel = socket.socket(fileno=int(sys.argv[1]))
    try:
        unsafe = preload()
        if unsafe is not None:
            send(channel, {"refused": f"workers are not forked: {unsafe}"})
        else:
            serve(channel)
    except KeyboardInterrupt:  # the run is interrupted: its parent says so
        sys.exit(130)
    # Done (its workers reaped): nothing to save, so skip tearing torch down.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
