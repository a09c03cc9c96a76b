"""Across machines as a user gets each (audit.judge.platforms), on the results files of
tests/data/platforms/: build labels, automatic cpu_capability, n/a settings."""

from __future__ import annotations

from pathlib import Path

from audit.judge.axes import CAPABILITY, PLATFORM, TORCH
from audit.judge.compare import compare, frame
from audit.judge.pin import what_to_pin
from audit.judge.platforms import as_user_gets, merge_build_labels, release
from audit.store.results import read_all

PLATFORMS = Path(__file__).resolve().parent.parent / "data" / "platforms"


def files(*names: str) -> list:
    return read_all([str(PLATFORMS / f"{name}.jsonl.gz") for name in names])


def test_one_release_whatever_its_build_labels() -> None:
    assert release("2.9.1+cu128") == release("2.9.1+cpu") == release("2.9.1") == "2.9.1"
    data = frame(files("linux-x86_64", "macos-arm64"))
    assert set(data[TORCH].astype(object)) == {"2.13.0+cu130", "2.13.0"}
    assert set(merge_build_labels(data)[TORCH].astype(object)) == {"2.13.0"}
    alone = frame(files("linux-x86_64"))  # one label per release: shown as it is
    assert merge_build_labels(alone) is alone


def test_settings_as_a_user_gets_them() -> None:
    assert as_user_gets("cpu_capability", "avx512", "avx512") == "auto"
    assert as_user_gets("cpu_capability", "avx2", "avx512") == "avx2"  # pinned on purpose
    assert as_user_gets("mkl_cbwr", "n/a", "default") == "auto"
    assert as_user_gets("mkl_cbwr", "unset", "avx2") == "auto"
    assert as_user_gets("mkl_cbwr", "compatible", "avx2") == "compatible"
    assert as_user_gets("qemu_cpu", "max", "default") == "auto"
    assert as_user_gets("qemu_cpu", "max-sve256", "sve256") == "max-sve256"
    assert as_user_gets("threads", "1", "avx2") == "1"


def test_arm_and_x86_compare_each_at_its_automatic_capability() -> None:
    result = compare(files("linux-x86_64", "linux-aarch64"))
    table = result.tables[PLATFORM]
    assert len(table.cells) == 40 and all(row for row in table.cells.values())
    assert table.breaking() == [("rng.rand", "generator_large"),
                                ("rng.randn", "generator_large"),
                                ("rng.randn", "generator_small")]
    # n/a on one machine and unset on the other: no axis of its own, no block either
    assert "setting:mkl_cbwr" not in result.axes
    # along cpu_capability the reference is a value that meets another (x86's avx2 and
    # avx512), not aarch64's sve256, which meets nothing
    assert result.tables[CAPABILITY].reference == "avx2"
    assert [pair.compared for pair in table.pairs] == [40]


def test_a_pinned_capability_alone_meets_nothing_across_machines() -> None:
    """x86-64 Linux pinned at avx2 does not meet aarch64 at its automatic sve256: only
    x86's automatic avx512 cells compare with it."""
    result = compare(files("linux-x86_64", "linux-aarch64"))
    table = result.tables[PLATFORM]
    other = next(value for value in table.values if value != table.reference)
    assert table.cells[("rng.rand", "generator_large")][other].groups == 1


def test_what_to_pin_across_machines_counts_the_same_comparisons() -> None:
    """The pin counts along the machine axis group cells as its table does (as a user
    gets each machine): 40 outputs compared, 3 differing, not 0 of 0."""
    result = compare(files("linux-x86_64", "linux-aarch64"))
    (machine,) = [pins for pins in what_to_pin(result) if pins.axis == PLATFORM]
    assert (machine.compared, machine.differing) == (40, 3)
