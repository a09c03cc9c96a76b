"""`run` and `report` make no network calls: no socket connect, no DNS lookup.

A `sitecustomize.py` on PYTHONPATH guards every process of the run (the runner passes
PYTHONPATH on to its workers): each attempt is logged to a file, then refused.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.e2e.support import audit_cli
from tests.support import ROOT

GUARD = textwrap.dedent('''
    import os
    import socket

    _LOG = os.environ["REPRO_AUDIT_NET_LOG"]


    def _note(path, text):
        with open(path, "a", encoding="utf-8") as stream:
            stream.write(f"{os.getpid()} {text}\\n")


    _note(_LOG + ".loaded", "guard loaded")


    def _refuse(what):
        def refuse(*args, **kwargs):
            _note(_LOG, f"{what} {args!r}")
            raise OSError(f"network access refused by the test: {what}")
        return refuse


    for _name in ("getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr",
                  "getnameinfo", "create_connection"):
        setattr(socket, _name, _refuse(f"socket.{_name}"))

    _LOCAL = {getattr(socket, "AF_UNIX", None)}


    def _guard_method(name):
        original = getattr(socket.socket, name)

        def guarded(self, *args, **kwargs):
            if self.family in _LOCAL:  # local IPC (multiprocessing), not the network
                return original(self, *args, **kwargs)
            return _refuse(f"socket.{name}")(self, *args)
        setattr(socket.socket, name, guarded)


    for _name in ("connect", "connect_ex", "sendto", "sendmsg"):
        _guard_method(_name)
''')


# A lookup and two connects, each refused: what the guard must log.
ATTEMPTS = textwrap.dedent('''
    import socket
    for call in (lambda: socket.getaddrinfo("example.com", 443),
                 lambda: socket.create_connection(("192.0.2.1", 80), timeout=1),
                 lambda: socket.socket().connect(("192.0.2.1", 80))):
        try:
            call()
        except OSError:
            pass
''')


@pytest.fixture()
def guarded_env(tmp_path: Path) -> tuple[dict[str, str], Path]:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(GUARD, encoding="utf-8")
    log = tmp_path / "network.log"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(site), str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["REPRO_AUDIT_NET_LOG"] = str(log)
    env.pop("REPRO_AUDIT_TRACEBACKS", None)
    return env, log


def attempts(log: Path) -> list[str]:
    return log.read_text(encoding="utf-8").splitlines() if log.exists() else []


def test_the_guard_catches_lookups_and_connects(guarded_env: tuple[dict[str, str], Path]
                                                ) -> None:
    env, log = guarded_env
    completed = subprocess.run([sys.executable, "-c", ATTEMPTS], cwd=ROOT, env=env,
                               capture_output=True, text=True, timeout=180, check=False)
    assert completed.returncode == 0, completed.stderr
    logged = attempts(log)
    assert len(logged) == 3, logged
    assert any("getaddrinfo" in line for line in logged)
    assert any("socket.connect" in line for line in logged)


def test_run_and_report_make_no_network_calls(guarded_env: tuple[dict[str, str], Path],
                                              tmp_path: Path) -> None:
    env, log = guarded_env
    results = tmp_path / "results"
    ran = audit_cli("run", "--select", "rng.cauchy", "--select", "numpy.*", "--devices",
                    "cpu,cuda", "--settings", "threads=1", "--out", str(results), env=env,
                    timeout=180)
    assert ran.returncode == 0, ran.stderr
    assert list(results.glob("*.jsonl"))
    reported = audit_cli("report", str(results), "--out", str(tmp_path / "reports"), env=env,
                         timeout=180)
    assert reported.returncode == 0, reported.stderr
    assert (tmp_path / "reports" / "README.md").is_file()
    assert attempts(log) == [], "network access attempted:\n" + "\n".join(attempts(log))
    # The guard was active in the run, in at least one worker child, and in the report.
    pids = {line.split()[0] for line in attempts(Path(f"{log}.loaded"))}
    assert len(pids) >= 3, pids
