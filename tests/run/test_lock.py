"""The lock on a run's output folder (audit.run.lock): one run at a time, a dead run's lock
taken over, the holder named."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from audit.errors import UserError
from audit.run.lock import FolderLock
from audit.store.names import lock_path
from tests.support import ROOT

HOLD = textwrap.dedent('''
    import sys, time
    from pathlib import Path
    from audit.run.lock import FolderLock
    with FolderLock(Path(sys.argv[1])):
        print("held", flush=True)
        sys.stdin.readline()
''')


def test_a_second_holder_is_refused_with_the_first_named(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "out")], cwd=ROOT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(UserError, match=rf"in use by another run \(pid {holder.pid} on "
                                            r"host .*, started 20"):
            FolderLock(tmp_path / "out").__enter__()
    finally:
        holder.communicate("\n", timeout=30)
    assert not lock_path(tmp_path / "out").exists()  # given back
    with FolderLock(tmp_path / "out"):
        pass


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL is POSIX")
def test_the_lock_of_a_killed_run_is_taken_over(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], cwd=ROOT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    holder.kill()
    holder.wait()
    stale = json.loads(lock_path(tmp_path).read_text("utf-8"))
    assert stale["pid"] == holder.pid  # left behind, but no process holds it
    with FolderLock(tmp_path):
        assert json.loads(lock_path(tmp_path).read_text("utf-8"))["pid"] == os.getpid()
