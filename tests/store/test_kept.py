"""`keep`: results copied into the kept folder, one file per machine and torch."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from audit.cli import main
from audit.store.kept import keep
from tests.support import OLD_FILE


def test_keep_replaces_the_same_machine_and_torch_and_nothing_else(tmp_path: Path) -> None:
    kept = tmp_path / "kept"
    first = keep([str(OLD_FILE)], kept)
    assert first == [f"kept {kept / OLD_FILE.name}: Linux x86_64, Intel(R) Xeon(R) Processor "
                     "@ 2.80GHz, torch 2.13.0+cpu"]
    assert (kept / OLD_FILE.name).read_bytes() == OLD_FILE.read_bytes()
    # The same machine and torch again, under another env-id: it replaces the first.
    with gzip.open(OLD_FILE, "rt", encoding="utf-8") as stream:
        lines = stream.read().splitlines()
    header = json.loads(lines[0])
    header["env_id"] = "0123456789abcdef"
    again = tmp_path / "torch-2.13.0_cpu-0123456789abcdef.jsonl"
    again.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n", encoding="utf-8")
    (tmp_path / "torch-2.13.0_cpu-0123456789abcdef.traces.jsonl.gz").write_bytes(b"t")
    second = keep([str(again)], kept)
    assert second == [f"kept {kept / (again.name + '.gz')}: Linux x86_64, Intel(R) Xeon(R) "
                      f"Processor @ 2.80GHz, torch 2.13.0+cpu (replaces {OLD_FILE.name})"]
    assert sorted(path.name for path in kept.iterdir()) == [
        "torch-2.13.0_cpu-0123456789abcdef.jsonl.gz",
        "torch-2.13.0_cpu-0123456789abcdef.traces.jsonl.gz"]
    first_bytes = (kept / (again.name + ".gz")).read_bytes()
    keep([str(again)], kept)  # the same results: the same bytes (no timestamp inside)
    assert (kept / (again.name + ".gz")).read_bytes() == first_bytes
    with gzip.open(kept / (again.name + ".gz"), "rt", encoding="utf-8") as stream:
        assert stream.read().splitlines() == again.read_text(encoding="utf-8").splitlines()


def test_keep_leaves_out_a_torch_that_could_not_be_audited(tmp_path: Path) -> None:
    from audit.store.results import write_unavailable

    failed = write_unavailable(tmp_path / "torch-9.9-unavailable.jsonl", "9.9", "no wheel")
    assert keep([str(failed)], tmp_path / "kept") == [
        "not kept torch-9.9-unavailable.jsonl: torch could not be audited there"]
    assert not list((tmp_path / "kept").iterdir())


def test_keep_names_a_file_that_is_not_results(tmp_path: Path) -> None:
    other = tmp_path / "notes.jsonl"
    other.write_text('{"hello": 1}\n', encoding="utf-8")
    assert main(["keep", str(other), "--to", str(tmp_path / "kept")]) == 2
