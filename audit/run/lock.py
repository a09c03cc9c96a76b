"""An exclusive lock on a run's output folder, held for the whole run.

Two runs into one folder would share one journal and lose the first run's rows, so a
second run refuses in one line naming the holder (pid, host, start time). The lock is an
OS file lock (`flock` on Linux and macOS, `msvcrt.locking` on Windows) on a hidden file in
the folder: the OS drops it when its process ends however it ends, so the lock of a dead
run is taken over without a check of its pid. Where the file system cannot lock, the run
goes on unlocked and says so in one line.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

from audit.errors import UserError
from audit.store.names import lock_path

_WINDOWS_BYTE = 1 << 30  # the byte Windows locks: past the holder's note, which stays readable


def _try_lock(fd: int) -> bool:
    """Lock `fd` without waiting: True when taken, False when another holds it."""
    if os.name == "nt":
        import msvcrt

        os.lseek(fd, _WINDOWS_BYTE, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except PermissionError:
            return False
        finally:
            os.lseek(fd, 0, os.SEEK_SET)
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def holder_text(path: Path) -> str:
    """'pid N on host H, started T' from a lock file's note (what is known of it)."""
    try:
        note = json.loads(path.read_text(encoding="utf-8"))
        return f"pid {note['pid']} on host {note['host']}, started {note['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a run that is starting"


class FolderLock:
    """`with FolderLock(folder):` the folder is this run's; UserError when another's."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.path = lock_path(self.folder)
        self.fd: int | None = None

    def __enter__(self) -> FolderLock:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._acquire()
        except OSError as error:
            if isinstance(error, (PermissionError, FileNotFoundError, NotADirectoryError)):
                raise UserError(f"--out {self.folder}: cannot create {self.path.name}: "
                                f"{error.strerror or error}") from error
            self._close()
            reason = error.strerror or error
            print(f"repro-audit: warning: --out {self.folder} is not locked ({reason}): a "
                  "second run into it at the same time is not detected", file=sys.stderr)
        return self

    def _acquire(self) -> None:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            self.fd = fd
            if not _try_lock(fd):
                self._close()
                raise UserError(f"--out {self.folder} is in use by another run "
                                f"({holder_text(self.path)}; lock {self.path}): wait for it "
                                "to end or choose another --out")
            # The file may have been removed by a holder that let go while this process
            # opened it: then the lock is on a file nobody else sees; take the new one.
            if os.name == "nt" or self._same_file(fd):
                break
            self._close()
        note = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                           "started": datetime.datetime.now(datetime.timezone.utc)
                           .strftime("%Y-%m-%dT%H:%M:%SZ")}).encode()
        os.ftruncate(fd, 0)
        os.write(fd, note)
        os.fsync(fd)

    def _same_file(self, fd: int) -> bool:
        try:
            on_disk = os.stat(self.path)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (on_disk.st_dev, on_disk.st_ino) == (mine.st_dev, mine.st_ino)

    def _close(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None

    def __exit__(self, *_: Any) -> None:
        if self.fd is None:
            return
        if os.name != "nt":  # removed while still held: a waiting opener sees it is gone
            with contextlib.suppress(OSError):
                self.path.unlink()
        self._close()
        if os.name == "nt":
            with contextlib.suppress(OSError):
                self.path.unlink()
