"""audit.integrations.mounts: the bookkeeping of mounts, with a fake mount table and no mount."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from audit.integrations.mounts import (
    MountError,
    Mounts,
    mount_points,
    mounts_under,
    remove_tree,
)

TABLE = """\
proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0
/dev/vda / ext4 rw,relatime 0 0
/dev/vda /srv/user\\040land/proc ext4 rw 0 0
tmpfs /srv/userland2 tmpfs rw 0 0
"""


class FakeSystem:
    """`mount` and `umount` acting on a mount table kept here, with failures on request."""

    def __init__(self, busy: set[str] = frozenset(), stuck: set[str] = frozenset(),
                 failing_mount: bool = False) -> None:
        self.points: list[str] = ["/", "/proc"]
        self.commands: list[list[str]] = []
        self.busy = set(busy)  # plain umount fails; lazy works
        self.stuck = set(stuck)  # every umount fails
        self.failing_mount = failing_mount  # mounts, then fails

    def table(self) -> str:
        return "".join(f"none {point.replace(' ', chr(92) + '040')} fs rw 0 0\n"
                       for point in self.points)

    def run(self, *command: str) -> None:
        self.commands.append(list(command))
        target = command[-1]
        if command[0] == "mount":
            self.points.append(target)
            if self.failing_mount:
                raise RuntimeError("mount failed after mounting")
        elif command[0] == "umount":
            if target in self.stuck or (target in self.busy and "--lazy" not in command):
                raise RuntimeError(f"umount: {target}: target is busy")
            self.points.remove(target)


def test_mount_points_decode_the_octal_escapes_of_the_table() -> None:
    assert mount_points(TABLE) == ["/proc", "/", "/srv/user land/proc", "/srv/userland2"]


def test_mounts_under_a_path_are_those_at_or_below_it_only() -> None:
    assert mounts_under("/srv/user land", TABLE) == ["/srv/user land/proc"]
    assert mounts_under("/srv/userland2", TABLE) == ["/srv/userland2"]
    assert mounts_under("/srv/userland", TABLE) == []  # a prefix of a name is not "under"


def test_remove_tree_refuses_while_something_is_mounted_under_it(tmp_path: Path) -> None:
    tree = tmp_path / "userland"
    (tree / "proc").mkdir(parents=True)
    (tree / "proc" / "keep").write_text("the host's", encoding="utf-8")
    table = f"proc {tree}/proc proc rw 0 0\n"
    with pytest.raises(MountError, match=r"refusing to delete .*userland: 1 mount\(s\) under it"):
        remove_tree(tree, table)
    assert (tree / "proc" / "keep").exists()
    remove_tree(tree, "")
    assert not tree.exists()
    remove_tree(tree, "")  # nothing there: nothing to do


def test_every_mount_is_undone_last_first_when_the_block_raises(tmp_path: Path) -> None:
    system = FakeSystem()
    with pytest.raises(ValueError), Mounts(system.run, system.table) as mounts:
        mounts.filesystem("binfmt_misc", tmp_path / "binfmt")
        mounts.bind("/proc", tmp_path / "root" / "proc")
        mounts.bind("/results", tmp_path / "root" / "results")
        raise ValueError("the audit failed")
    assert system.points == ["/", "/proc"]
    assert system.commands == [
        ["mount", "-t", "binfmt_misc", "binfmt_misc", str(tmp_path / "binfmt")],
        ["mount", "--bind", "/proc", str(tmp_path / "root" / "proc")],
        ["mount", "--bind", "/results", str(tmp_path / "root" / "results")],
        ["umount", str(tmp_path / "root" / "results")],
        ["umount", str(tmp_path / "root" / "proc")],
        ["umount", str(tmp_path / "binfmt")],
    ]


def test_a_mount_that_failed_half_way_is_undone_too(tmp_path: Path) -> None:
    system = FakeSystem(failing_mount=True)
    with pytest.raises(RuntimeError, match="mount failed"), Mounts(system.run,
                                                                   system.table) as mounts:
        mounts.bind("/results", tmp_path / "results")
    assert system.points == ["/", "/proc"]


def test_a_target_not_mounted_any_more_is_left_alone(tmp_path: Path) -> None:
    system = FakeSystem()
    with Mounts(system.run, system.table) as mounts:
        mounts.bind("/dev", tmp_path / "dev")
        system.points.remove(str(tmp_path / "dev"))  # someone unmounted it already
    assert [command[0] for command in system.commands] == ["mount"]


def test_a_busy_mount_is_detached_lazily(tmp_path: Path) -> None:
    busy = str(tmp_path / "dev")
    system = FakeSystem(busy={busy})
    with Mounts(system.run, system.table) as mounts:
        mounts.bind("/dev", tmp_path / "dev")
    assert system.commands[-2:] == [["umount", busy], ["umount", "--lazy", busy]]
    assert busy not in system.points


def test_a_mount_that_stays_is_reported_after_the_others_are_undone(tmp_path: Path) -> None:
    stuck = str(tmp_path / "sys")
    system = FakeSystem(stuck={stuck})
    with pytest.raises(MountError, match=f"still mounted, unmount by hand: {stuck}$"), \
            Mounts(system.run, system.table) as mounts:
        mounts.bind("/proc", tmp_path / "proc")
        mounts.bind("/sys", tmp_path / "sys")
        mounts.bind("/dev", tmp_path / "dev")
    assert system.points == ["/", "/proc", stuck]  # /dev and the bound /proc undone


def test_sigterm_ends_the_block_as_ctrl_c_and_the_handler_is_restored(tmp_path: Path) -> None:
    system = FakeSystem()
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), Mounts(system.run, system.table) as mounts:
        mounts.bind("/proc", tmp_path / "proc")
        signal.raise_signal(signal.SIGTERM)
    assert system.points == ["/", "/proc"]
    assert signal.getsignal(signal.SIGTERM) == before
