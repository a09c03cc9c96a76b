"""Workers forked from a server that imported torch (audit.run.pool.forkserver) against fresh ones.

Real workers on real units: a forked worker reads back the settings it was given, gives the
digests a fresh `python -m audit.run.worker` gives, exits with the codes the pool reads, and a
pool whose server is gone starts fresh processes instead. (tests/e2e/test_parallel.py
checks every combination of the default matrix: its serial run starts fresh processes, its
parallel run forks them.)
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest

from audit.run.pool import forkserver, priority
from audit.run.pool.child import Child
from audit.run.pool.forkserver import ForkServers, server_environ, server_key
from audit.run.runner import worker_environ, worker_header

pytestmark = pytest.mark.skipif(not forkserver.supported(),
                                reason="workers are forked on Linux only (fresh processes "
                                       "elsewhere, or REPRO_AUDIT_FORK=0)")

COMBO = {"threads": "1", "cpu_capability": "default", "mkl_cbwr": "compatible"}
UNITS = [("seed.manual_seed_246_rand", "off"), ("ops.layer_norm", "off"),
         ("ops.layer_norm", "on")]


def unit_message(number: int, scenario: str, deterministic: str) -> dict[str, Any]:
    return {"id": number, "scenario": scenario, "device": "cpu",
            "run_settings": {"deterministic": deterministic},
            "settings": {**COMBO, "deterministic": deterministic}}


def next_event(child: Child, kind: str) -> Any:
    deadline = time.monotonic() + 120
    while True:
        event = child.event(deadline)
        assert event is not None, child.exit_message()
        if event.name == kind:
            return event


def run_units(servers: ForkServers | None, background: bool = False
              ) -> tuple[Child, dict[str, Any], dict[str, str]]:
    """Start a worker of COMBO, run UNITS: (the child, its ready event, digest by output)."""
    environ = worker_environ(COMBO)
    child = Child("test", priority.background_environ(environ) if background else environ,
                  worker_header(COMBO, [], None), servers)
    ready = next_event(child, "ready")
    digests = {}
    for number, (scenario, deterministic) in enumerate(UNITS):
        assert child.send(unit_message(number, scenario, deterministic))
        finish = next_event(child, "finish")
        for row in finish.rows:
            assert row["status"] == "ok" and row["repeatable"], row
            digests[f"{scenario}/{deterministic}/{row['output']}"] = row["digest"]
    return child, ready, digests


@pytest.fixture(scope="module")
def servers():
    made = ForkServers()
    yield made
    made.close()


def test_a_forked_worker_gives_the_digests_of_a_fresh_one(servers) -> None:
    forked, forked_ready, forked_digests = run_units(servers)
    fresh, fresh_ready, fresh_digests = run_units(None)
    assert forked.forked and not fresh.forked
    assert forked_ready.effective == fresh_ready.effective
    # The settings read at first use took effect after the fork.
    assert forked_ready.effective["cpu_capability"] == "default"
    assert forked_ready.effective["threads"] == "1"
    assert forked_digests == fresh_digests and len(forked_digests) >= 3
    for child in (forked, fresh):
        child.close()
        assert child.process is not None and child.process.returncode == 0


@pytest.mark.skipif(not priority.supported(), reason="no SCHED_IDLE here (Linux only)")
def test_a_background_worker_runs_at_idle_priority_and_gives_the_same_digests(servers
                                                                            ) -> None:
    normal, normal_ready, normal_digests = run_units(servers)
    background, ready, digests = run_units(servers, background=True)
    assert background.forked and normal_ready.priority == "normal"
    assert ready.priority == "idle"
    assert os.sched_getscheduler(background.process.pid) == os.SCHED_IDLE
    assert os.sched_getscheduler(normal.process.pid) == os.SCHED_OTHER
    assert digests == normal_digests and len(digests) >= 3
    assert ready.effective == normal_ready.effective
    for child in (normal, background):
        child.close()


def test_a_killed_forked_worker_reports_its_signal(servers) -> None:
    child = Child("test", worker_environ(COMBO), worker_header(COMBO, [], None), servers)
    next_event(child, "ready")
    assert child.forked
    os.kill(child.process.pid, signal.SIGKILL)
    assert child.event(time.monotonic() + 60) is None  # its output closed
    assert child.exit_message().startswith(f"worker exited with code {-signal.SIGKILL}")


def test_workers_start_fresh_where_the_server_is_gone() -> None:
    servers = ForkServers()
    try:
        server = servers.start(worker_environ(COMBO))
        assert server is not None
        server.process.kill()
        server.process.wait(timeout=60)
        child, ready, digests = run_units(servers)
        assert not child.forked and ready.effective["cpu_capability"] == "default"
        assert servers.forked == 0 and digests
        child.close()
    finally:
        servers.close()


def test_servers_are_shared_only_by_workers_that_differ_in_lazily_read_settings() -> None:
    base = worker_environ({"threads": "1"})
    capped = worker_environ({"threads": "1", "cpu_capability": "avx2", "onednn_isa": "avx2",
                             "mkl_cbwr": "compatible"})
    two = worker_environ({"threads": "2"})
    assert server_key(base) == server_key(capped)  # read at first use: after the fork
    assert server_key(base) != server_key(two)  # OMP_NUM_THREADS is read at import
    assert "ATEN_CPU_CAPABILITY" not in server_environ(capped)
    assert server_environ(capped)["OMP_NUM_THREADS"] == "1"


def test_fork_servers_can_be_turned_off(monkeypatch) -> None:
    monkeypatch.setenv("REPRO_AUDIT_FORK", "0")
    servers = ForkServers()
    assert servers.start(worker_environ(COMBO)) is None
    assert not servers.servers


def test_servers_close_together_once_their_workers_have_exited(servers) -> None:
    # The module's servers (closing them only means the next test starts new ones).
    one = Child("one", worker_environ({"threads": "1"}),
                worker_header({"threads": "1"}, [], None), servers)
    two = Child("two", worker_environ({"threads": "2"}),
                worker_header({"threads": "2"}, [], None), servers)
    for child in (one, two):
        next_event(child, "ready")
        assert child.forked
    processes = [server.process for server in servers.servers.values()]
    assert len(processes) >= 2  # those two, and any of the tests before
    one.close(wait=False)  # still exiting while its server is asked to close
    two.close()
    servers.close()
    assert [process.returncode for process in processes] == [0] * len(processes)
    one.reap()
    assert one.process is not None and one.process.returncode == 0


def test_a_server_starts_only_for_an_environment_that_workers_share() -> None:
    servers = ForkServers()
    one = worker_environ({"threads": "1"})
    capped = worker_environ({"threads": "1", "cpu_capability": "avx2"})
    two = worker_environ({"threads": "2"})
    servers.expect([one, capped, two])
    servers.expect([two, two])  # the first word stands: a run says it once
    assert servers.shared == {server_key(one)} == {server_key(capped)}
    assert servers.start(two) is None and not servers.servers  # its one worker starts fresh
