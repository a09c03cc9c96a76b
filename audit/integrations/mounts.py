"""Mounts undone however a block ends, and deletion that refuses to go through a mount.

The emulated aarch64 audit (audit.integrations.qemu_userland) bind-mounts the host's /proc,
/sys, /dev and its results folder into a chroot. A mount left behind would keep the host's
files reachable from a folder that a later run deletes: so every mount is undone on every
way out, and nothing is deleted while /proc/self/mounts lists a mount point under it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import threading
from pathlib import Path
from typing import Any, Callable


class MountError(RuntimeError):
    """Something is still mounted where it must not be."""


def read_mount_table() -> str:
    return Path("/proc/self/mounts").read_text(encoding="utf-8", errors="surrogateescape")


def mount_points(table: str) -> list[str]:
    """The mount points of a /proc/self/mounts text, in its order (octal escapes decoded:
    a space in a path is written \\040)."""
    points = []
    for line in table.splitlines():
        fields = line.split()
        if len(fields) >= 2:
            points.append(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[1]))
    return points


def mounts_under(path: Path | str, table: str) -> list[str]:
    """Mount points at `path` or below it."""
    top = os.path.realpath(path)
    prefix = top.rstrip(os.sep) + os.sep
    return [point for point in mount_points(table) if point == top or point.startswith(prefix)]


def remove_tree(path: Path, table: str | None = None) -> None:
    """Delete `path` and all below it, unless something is mounted there: deleting through
    a bind mount deletes the mounted files themselves (the host's /dev, the results)."""
    if not os.path.lexists(path):
        return
    mounted = mounts_under(path, read_mount_table() if table is None else table)
    if mounted:
        raise MountError(f"refusing to delete {path}: {len(mounted)} mount(s) under it, "
                         f"first {mounted[0]} (unmount them first: umount -R {path})")
    if path.is_symlink() or not path.is_dir():
        path.unlink()
    else:
        shutil.rmtree(path)


Run = Callable[..., Any]  # run(*command): runs a command, raises when it fails


class Mounts:
    """Mounts made through `run`, all undone when the `with` block ends, however it ends.

    A target is noted before its mount command runs, so a mount that half-succeeded is
    undone too; on leaving, each noted target still in the mount table is unmounted, last
    first, lazily where a process still holds it. SIGTERM and SIGHUP end the block as
    Ctrl-C does: Python's default for them ends the process at once, skipping `finally`.
    """

    SIGNALS = ("SIGTERM", "SIGHUP")

    def __init__(self, run: Run, table: Callable[[], str] = read_mount_table) -> None:
        self.run = run
        self.table = table
        self.made: list[Path] = []
        self.handlers: dict[int, Any] = {}

    def __enter__(self) -> Mounts:
        if threading.current_thread() is threading.main_thread():
            for name in self.SIGNALS:
                number = getattr(signal, name, None)
                if number is not None:
                    self.handlers[number] = signal.signal(number, _interrupt)
        return self

    def __exit__(self, *_: object) -> None:
        try:
            self.release()
        finally:
            for number, handler in self.handlers.items():
                signal.signal(number, handler)
            self.handlers.clear()

    def bind(self, source: Path | str, target: Path) -> None:
        target.mkdir(parents=True, exist_ok=True)
        self.made.append(target)
        self.run("mount", "--bind", str(source), str(target))

    def filesystem(self, kind: str, target: Path) -> None:
        self.made.append(target)
        self.run("mount", "-t", kind, kind, str(target))

    def mounted(self, target: Path) -> bool:
        return os.path.realpath(target) in mount_points(self.table())

    def release(self) -> None:
        """Unmount every noted target; MountError naming those still mounted after."""
        for target in reversed(self.made):
            if not self.mounted(target):
                continue
            try:
                self.run("umount", str(target))
            except Exception:  # noqa: BLE001 - busy: detach it now, freed when unused
                with contextlib.suppress(Exception):  # reported below, with the others
                    self.run("umount", "--lazy", str(target))
        left = [str(target) for target in self.made if self.mounted(target)]
        self.made = []
        if left:
            raise MountError(f"still mounted, unmount by hand: {', '.join(left)}")


def _interrupt(number: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {number}")
