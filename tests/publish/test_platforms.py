"""The merged report of results written the way each platform's run writes them
(tests/data/platforms/: x86-64 Linux, aarch64 Linux, arm64 macOS, x86-64 Windows): every
pair of machines compares the outputs they share, whatever their build labels, automatic
cpu_capability and settings that do not apply there."""

from __future__ import annotations

import gzip
import json
from itertools import combinations
from pathlib import Path

from audit.judge.axes import PLATFORM, TORCH
from audit.judge.cells import matched_pairs
from audit.judge.compare import axis_context, compare
from audit.judge.platforms import user_view
from audit.publish.report import write_report
from audit.store.results import read_all

PLATFORMS = Path(__file__).resolve().parent.parent / "data" / "platforms"
X86_LINUX = "Linux x86_64, Intel(R) Xeon(R) Processor @ 2.80GHz"
AARCH64 = "Linux aarch64, ARM Neoverse V1 (r1p1, SVE 256)"
MACOS = "Darwin arm64, Apple M1"
WINDOWS = "Windows AMD64, AMD EPYC 7763 64-Core Processor (Zen 3, family 25 model 1)"
FILES = sorted(str(path) for path in PLATFORMS.glob("*.jsonl.gz"))


def header(name: str) -> dict:
    with gzip.open(PLATFORMS / name, "rt", encoding="utf-8") as handle:
        return json.loads(handle.readline())


def test_the_fixtures_are_each_platforms_own() -> None:
    labels = {name: header(name)["environment"]["torch"] for name in (
        "linux-x86_64.jsonl.gz", "linux-aarch64.jsonl.gz", "macos-arm64.jsonl.gz",
        "windows-x86_64.jsonl.gz")}
    assert labels == {"linux-x86_64.jsonl.gz": "2.13.0+cu130",
                      "linux-aarch64.jsonl.gz": "2.13.0+cpu",
                      "macos-arm64.jsonl.gz": "2.13.0", "windows-x86_64.jsonl.gz": "2.13.0+cpu"}
    assert header("linux-aarch64.jsonl.gz")["environment"]["cpu"]["sve_vector_length"] == 256
    assert header("macos-arm64.jsonl.gz")["environment"]["cpu_capability"] == "DEFAULT"


def test_every_machine_pair_compares_the_outputs_it_shares() -> None:
    result = compare(read_all(FILES))
    assert set(result.data[TORCH].astype(object)) == {"2.13.0"}  # one release, four labels
    table = result.tables[PLATFORM]
    pairs = {(pair.first, pair.second): pair for pair in table.pairs}
    assert set(pairs) == set(combinations(sorted([X86_LINUX, AARCH64, MACOS, WINDOWS]), 2))
    counts = {key: (pair.shared, pair.compared, sum(pair.left_out.values()))
              for key, pair in pairs.items()}
    windows_fails = (40, 34, 6)  # rng.randperm's 6 outputs failed there
    assert counts == {(MACOS, AARCH64): (40, 40, 0), (MACOS, X86_LINUX): (40, 40, 0),
                      (MACOS, WINDOWS): windows_fails, (AARCH64, X86_LINUX): (40, 40, 0),
                      (AARCH64, WINDOWS): windows_fails, (X86_LINUX, WINDOWS): windows_fails}
    assert pairs[(MACOS, AARCH64)].automatic == ("default", "sve256")
    assert pairs[(X86_LINUX, WINDOWS)].automatic == ("avx512", "avx2")
    # The outputs changed on purpose differ where they should, and nowhere else.
    assert table.breaking() == [("rng.rand", "generator_large"), ("rng.randn", "generator_large"),
                                ("rng.randn", "generator_small"), ("seed.fork_rng", "inner")]
    row = table.cells[("rng.randn", "generator_small")]
    assert (row[AARCH64].verdict, row[X86_LINUX].verdict) == ("identical", "differs")
    # x86-64 Linux at its automatic avx512 and pinned at avx2 both meet Windows' automatic
    # avx2: as a user gets each, and like for like.
    context = axis_context(PLATFORM, result.axes)
    viewed, also = user_view(result.comparable, context)
    met = matched_pairs(viewed, PLATFORM, context, X86_LINUX, WINDOWS, also)
    met = met[(met["scenario"] == "seed.fork_rng") & (met["output"] == "inner")]
    assert len(met) == 2
    like_for_like = matched_pairs(viewed, PLATFORM, context, X86_LINUX, WINDOWS)
    assert len(like_for_like[like_for_like["scenario"] == "seed.fork_rng"]) == 3  # avx2 only
    assert table.cells[("seed.fork_rng", "inner")][AARCH64].groups == 1


def test_the_merged_report_says_what_each_pair_compared(tmp_path: Path) -> None:
    text = write_report(FILES, tmp_path).read_text(encoding="utf-8")
    section = text.split("## Across machine", 1)[1]
    assert "| automatic cpu_capability | outputs of both | compared | left out, and why |" in (
        " ".join(section.split()).replace("- ", "").replace("|-", "|"))
    assert section.count("| none ") == 3
    assert section.count("6: no value to compare on one machine") == 3
    assert "default / sve256" in section and "avx512 / avx2" in section
