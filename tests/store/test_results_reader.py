"""The results reader skips (and names, as file:line) a corrupt line, never the whole file."""

from __future__ import annotations

import json
import re
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit.errors import UserError
from audit.run import run_command as run
from audit.store import results
from audit.store.results import (
    HEADER,
    ROW,
    ROW_COLUMN_KEYS,
    SCHEMA,
    STATUSES,
    dumps,
    expand,
    make_header,
    make_row,
    read_all,
    read_file,
    write_atomic,
)
from audit.store.row_checks import _row_problem, _RowChecker
from tests.support import FIXTURES, scratch_file

ENVIRONMENT = {"torch": "2.13.0+cpu", "python": "3.11.7", "cpu": {"model": "Example"}}


def sample_rows(count: int = 3) -> list[dict[str, Any]]:
    return [
        make_row(scenario=f"rng.case{i}", output=f"out{i}", status="ok", digest=f"{i:064x}",
                 repeatable=True, device="cpu", torch_version="2.13.0+cpu",
                 settings={"threads": "1"}, env_id="aaaa", dtype="float32", shape=[2],
                 kind="dense", sample=None)
        for i in range(count)
    ] + [make_row(scenario="rng.broken", output=None, status="error", device="cpu",
                  torch_version="2.13.0+cpu", settings={}, env_id="aaaa",
                  error="RuntimeError: boom")]


def valid_lines() -> list[str]:
    header = make_header(ENVIRONMENT, "aaaa", devices={"cpu": None})
    return [dumps(header)] + [dumps(row) for row in sample_rows()]


def write_lines(path: Path, lines: list[str | bytes]) -> Path:
    path.write_bytes(b"".join((line if isinstance(line, bytes) else line.encode()) + b"\n"
                              for line in lines))
    return path


def rows_with_samples() -> list[dict[str, Any]]:
    """Four rows, three of them the same value (one digest, one sample)."""
    sample = {"dtype": "float32", "b64": "AACAPwAAAEA=", "index": None}
    other = {"dtype": "float32", "b64": "AABAQAAAgEA=", "index": None}
    return [make_row(scenario="rng.case", output="x", status="ok", digest=value_digest,
                     repeatable=True, device="cpu", torch_version="2.13.0+cpu",
                     settings={"threads": threads}, env_id="aaaa", dtype="float32",
                     shape=[2], kind="dense", sample=value_sample)
            for threads, value_digest, value_sample in (("1", "a" * 64, sample),
                                                         ("2", "b" * 64, other),
                                                         ("3", "a" * 64, sample),
                                                         ("4", "a" * 64, sample))]


def test_a_sample_is_written_once_and_read_back_on_every_row(tmp_path: Path) -> None:
    rows = rows_with_samples()
    path = write_atomic(tmp_path / "r.jsonl", make_header(ENVIRONMENT, "aaaa"), rows)
    written = [json.loads(line) for line in path.read_text().splitlines()[1:]]
    assert [row["sample"] is None for row in written] == [False, False, True, True]
    result = read_file(path)
    assert result is not None and result.rows == rows
    assert result.rows[0]["sample"] is result.rows[3]["sample"]  # one copy per digest


def test_requested_is_written_only_where_it_differs_from_settings(tmp_path: Path) -> None:
    same, other = ({**row, "requested": row["settings"]} for row in rows_with_samples()[:2])
    other["requested"] = {"threads": "auto"}
    path = write_atomic(tmp_path / "r.jsonl", make_header(ENVIRONMENT, "aaaa"), [same, other])
    written = [json.loads(line) for line in path.read_text().splitlines()[1:]]
    assert "requested" not in written[0] and written[1]["requested"] == {"threads": "auto"}
    assert run.row_unit_key(written[0]) == run.row_unit_key(same)  # --resume sees one unit


def test_unit_keys_are_remembered_only_for_the_values_they_were_made_of() -> None:
    from audit.store.results import unit_key

    key = unit_key("rng.rand", "cpu", {"threads": "1", "deterministic": "off"})
    assert key == json.dumps(["rng.rand", "cpu", {"deterministic": "off", "threads": "1"}])
    assert unit_key("rng.rand", "cpu", {"deterministic": "off", "threads": "1"}) == key
    # 1, 1.0 and True hash alike: a remembered "1" must not answer for them
    assert unit_key("rng.rand", "cpu", {"threads": 1}) != unit_key("rng.rand", "cpu",
                                                                   {"threads": "1"})
    assert unit_key("rng.rand", "cpu", {"threads": True}).endswith('{"threads": true}]')


def test_a_schema_1_file_with_a_sample_on_every_row_reads_the_same(tmp_path: Path) -> None:
    rows = rows_with_samples()
    header = {**make_header(ENVIRONMENT, "aaaa"), "schema": 1}
    path = write_lines(tmp_path / "r.jsonl", [dumps(header)] + [dumps(row) for row in rows])
    result = read_file(path)
    assert result is not None and result.rows == rows


def test_a_row_whose_sample_line_was_lost_reads_without_a_sample(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The carrying row corrupt: its repeats keep their digests, with no sample to measure."""
    rows = rows_with_samples()
    path = write_atomic(tmp_path / "r.jsonl", make_header(ENVIRONMENT, "aaaa"), rows)
    lines = path.read_text().splitlines()
    lines[1] = lines[1][:40]
    result = read_file(write_lines(path, lines))
    assert result is not None
    assert [row["digest"] for row in result.rows] == ["b" * 64, "a" * 64, "a" * 64]
    assert [row["sample"] for row in result.rows] == [rows[1]["sample"], None, None]
    assert f"{path}:2: not valid JSON" in capsys.readouterr().err


def warnings_of(err: str) -> list[str]:
    return [line for line in err.splitlines() if line]


def test_valid_file_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = sample_rows()
    path = write_atomic(tmp_path / "r.jsonl", make_header(ENVIRONMENT, "aaaa"), rows)
    result = read_file(path)
    assert result is not None
    assert result.header["env_id"] == "aaaa" and result.header["schema"] == SCHEMA
    assert result.rows == rows
    assert result.skipped == []
    assert capsys.readouterr().err == ""


CORRUPT_LINES: dict[str, str | bytes] = {
    "truncated JSON": dumps(sample_rows()[0])[:57],
    "binary garbage": b"\x00\xff\xfe\x80garbage\x9c\x00\x01",
    "a JSON array": "[1, 2, 3]",
    "a JSON string": '"repro-audit/row"',
    "a foreign JSON object": '{"event": "click", "user": 3}',
    "a second header of a newer schema": dumps({**make_header({}, "bbbb"), "schema": SCHEMA + 1}),
    "a second header": dumps(make_header({}, "bbbb")),
    "an unknown status": dumps({**sample_rows()[0], "status": "flaky"}),
    "a status of the wrong type": dumps({**sample_rows()[0], "status": ["ok"]}),
    "a row without a scenario": dumps({**sample_rows()[0], "scenario": None}),
    "a scenario that is not a string": dumps({**sample_rows()[0], "scenario": ["rng", "x"]}),
    "settings that are not an object": dumps({**sample_rows()[0], "settings": ["threads"]}),
    "an output that is not a string": dumps({**sample_rows()[0], "output": {"a": 1}}),
    "a digest that is a number": dumps({**sample_rows()[0], "digest": 12}),
    "a dtype that is a list": dumps({**sample_rows()[0], "dtype": ["float32"]}),
    "an env-id that is an object": dumps({**sample_rows()[0], "env_id": {"id": "aaaa"}}),
    "a torch version that is a number": dumps({**sample_rows()[0], "torch_version": 2.13}),
    "an error that is a list": dumps({**sample_rows()[-1], "error": ["boom"]}),
    "repeatable that is text": dumps({**sample_rows()[0], "repeatable": "yes"}),
    "a sample that is text": dumps({**sample_rows()[0], "sample": "AACAPw=="}),
    "a stored file name that is a number": dumps({**sample_rows()[0], "stored": 7}),
    "deeply nested JSON": "[" * 100_000,
    "a huge integer": "1" * 10_000,
    "a carriage return inside": "abc\rdef\r{",
    "NaN literal": '{"record": "repro-audit/row", "status": NaN',
}


@pytest.mark.parametrize("case", sorted(CORRUPT_LINES))
@pytest.mark.parametrize("position", [1, 3, 5])  # after the header, between rows, at the end
def test_corrupt_line_is_skipped_and_named(case: str, position: int, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    lines: list[str | bytes] = list(valid_lines())
    lines.insert(position, CORRUPT_LINES[case])
    path = write_lines(tmp_path / "r.jsonl", lines)
    result = read_file(path)
    assert result is not None
    assert result.rows == sample_rows()
    assert len(result.skipped) == 1, result.skipped
    assert result.skipped[0].startswith(f"{path}:{position + 1}: ")
    assert warnings_of(capsys.readouterr().err) == [f"warning: skipped {result.skipped[0]}"]


def test_row_before_header(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = valid_lines()
    path = write_lines(tmp_path / "r.jsonl", [lines[1], *lines])
    result = read_file(path)
    assert result is not None and result.rows == sample_rows()
    assert result.skipped == [f"{path}:1: a row before the file's header"]
    assert warnings_of(capsys.readouterr().err) == [f"warning: skipped {path}:1: "
                                                    "a row before the file's header"]


def test_garbage_before_header_keeps_the_file(tmp_path: Path) -> None:
    lines = valid_lines()
    path = write_lines(tmp_path / "r.jsonl", ["garbage", "", *lines])
    result = read_file(path, warn=False)
    assert result is not None and result.rows == sample_rows()
    assert result.skipped == [f"{path}:1: not valid JSON (truncated or corrupt line)"]


@pytest.mark.parametrize("schema", [SCHEMA + 1, 99])
def test_newer_schema_file_is_skipped_with_one_warning(
        schema: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = valid_lines()
    lines[0] = dumps({**json.loads(lines[0]), "schema": schema})
    path = write_lines(tmp_path / "r.jsonl", lines)
    assert read_file(path) is None
    (warning,) = warnings_of(capsys.readouterr().err)
    assert warning.startswith(f"warning: skipped {path}: schema version {schema} ")
    assert "newer" in warning


@pytest.mark.parametrize("schema", [None, "1", 0, -1, True, 1.0])
def test_header_with_invalid_schema_is_not_a_header(schema: Any, tmp_path: Path) -> None:
    lines = valid_lines()
    lines[0] = dumps({**json.loads(lines[0]), "schema": schema})
    path = write_lines(tmp_path / "r.jsonl", lines)
    result = read_file(path, warn=False)
    assert result is None


@pytest.mark.parametrize("content", [b"", b"\n\n  \n", b'{"event": 1}\n' * 100,
                                     b"\x00\x01\x02" * 1000, b"[]\n"])
def test_file_without_header_is_skipped_with_one_warning(
        content: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "r.jsonl"
    path.write_bytes(content)
    assert read_file(path) is None
    assert warnings_of(capsys.readouterr().err) == [
        f"warning: skipped {path}: no repro-audit header (not a repro-audit results file?)"]


def test_byte_order_mark_and_crlf(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "r.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(valid_lines()).encode() + b"\r\n")
    result = read_file(path)
    assert result is not None and result.rows == sample_rows()
    assert capsys.readouterr().err == ""


def test_line_numbers_count_newlines_only(tmp_path: Path) -> None:
    """A stray carriage return or form feed in a corrupt line must not shift the numbers."""
    lines: list[str | bytes] = list(valid_lines())
    lines.insert(1, b"a\rb\x0cc\x1cd\xe2\x80\xa8e")
    lines.insert(3, "{truncated")
    path = write_lines(tmp_path / "r.jsonl", lines)
    result = read_file(path, warn=False)
    assert result is not None and result.rows == sample_rows()
    assert [message.split(": ")[0] for message in result.skipped] == [f"{path}:2", f"{path}:4"]


def test_unreadable_file_is_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "looks_like.jsonl"
    folder.mkdir()
    assert read_file(folder) is None
    (warning,) = warnings_of(capsys.readouterr().err)
    assert warning.startswith(f"warning: skipped {folder}: cannot read it")


# --- read_all / expand ------------------------------------------------------------------

def test_read_all_keeps_good_files_and_warns(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a").mkdir()
    write_lines(tmp_path / "a" / "good.jsonl", valid_lines())
    lines: list[str | bytes] = list(valid_lines())
    lines.insert(2, "{oops")
    damaged = write_lines(tmp_path / "a" / "damaged.jsonl", lines)
    foreign = tmp_path / "a" / "foreign.jsonl"
    foreign.write_text('{"x": 1}\n' * 10, encoding="utf-8")
    (tmp_path / "a" / "folder.jsonl").mkdir()  # a folder with a results-like name
    (tmp_path / "a" / "notes.txt").write_text("not a results file", encoding="utf-8")
    files = read_all([str(tmp_path / "a")])
    assert sorted(item.path.name for item in files) == ["damaged.jsonl", "good.jsonl"]
    assert all(item.rows == sample_rows() for item in files)
    assert sorted(warnings_of(capsys.readouterr().err)) == sorted([
        f"warning: skipped {damaged}:3: not valid JSON (truncated or corrupt line)",
        f"warning: skipped {foreign}: no repro-audit header (not a repro-audit results file?)",
    ])


def test_read_all_accepts_globs_files_and_generators(tmp_path: Path) -> None:
    write_lines(tmp_path / "one.jsonl", valid_lines())
    write_lines(tmp_path / "two.jsonl", valid_lines())
    assert len(read_all(str(path) for path in [tmp_path / "one.jsonl"])) == 1
    assert len(read_all([str(tmp_path / "*.jsonl"), str(tmp_path)])) == 2  # no duplicates


def test_read_all_nothing_readable_is_one_line(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("a.jsonl", "b.jsonl"):
        (tmp_path / name).write_text('{"x": 1}\n' * 10, encoding="utf-8")
    with pytest.raises(UserError) as caught:
        read_all(iter([str(tmp_path)]))
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{tmp_path}: no readable repro-audit results")
    assert "1 more" in message
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("make", ["missing", "empty folder", "glob"])
def test_expand_errors_name_the_path(make: str, tmp_path: Path) -> None:
    target = {"missing": tmp_path / "nope", "empty folder": tmp_path,
              "glob": tmp_path / "*.jsonl"}[make]
    with pytest.raises(UserError) as caught:
        expand([str(target)])
    assert str(target) in str(caught.value) and "\n" not in str(caught.value)


# --- fuzz -------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.sampled_from(["record", "status", "scenario", "schema", "x"])
                      | st.text(max_size=4), children, max_size=3),
    max_leaves=8,
)
record_like = st.fixed_dictionaries(
    {"record": st.sampled_from([ROW, HEADER, "other"])},
    optional={"status": st.sampled_from(["ok", "error", "bogus"]) | json_values,
              "scenario": st.text(max_size=5) | json_values,
              "schema": st.integers(-2, 3) | json_values,
              "settings": json_values, "output": json_values},
)
garbage_line = st.one_of(
    st.binary(max_size=60),
    st.text(max_size=40).map(lambda text: text.encode("utf-8", "surrogatepass")),
    json_values.map(lambda value: json.dumps(value).encode()),
    record_like.map(lambda value: json.dumps(value).encode()),
    st.sampled_from([b"[", b"{", b"\r", b"\xef\xbb\xbf", b'{"record":', b"\xe2\x80",
                     b"[" * 3000, b"a\rb", b"\x0c\x1c\x1d\x1e\x85"]),
)


def assert_usable(row: dict[str, Any]) -> None:
    """What the report groups and compares by has the type it expects."""
    assert row["record"] == ROW and row["status"] in STATUSES
    assert isinstance(row["scenario"], str) and row["scenario"]
    assert row.get("output") is None or isinstance(row["output"], str)
    assert row.get("digest") is None or isinstance(row["digest"], str)
    assert row.get("settings") is None or isinstance(row["settings"], dict)


def is_valid_foreign_row(line: bytes) -> bool:
    """A garbage line that happens to be a usable row (the reader rightly keeps it)."""
    try:
        value = json.loads(line.decode("utf-8", "replace"))
    except (ValueError, RecursionError):
        return False
    return isinstance(value, dict) and value.get("record") in (ROW, HEADER)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    inserts=st.lists(st.tuples(st.integers(0, 5), garbage_line), max_size=6),
    truncate=st.sets(st.integers(1, 4), max_size=2),
    cut=st.integers(0, 200),
    tail=st.binary(max_size=40),
)
def test_reader_fuzz(inserts: list[tuple[int, bytes]], truncate: set[int], cut: int,
                     tail: bytes) -> None:
    lines = [line.encode() for line in valid_lines()]
    expected = sample_rows()
    intact = [row for i, row in enumerate(expected, start=1) if i not in truncate]
    intact_lines = {lines[0]} | {dumps(row).encode() for row in intact}
    for index in truncate:  # a proper prefix of a JSON object is never valid JSON
        lines[index] = lines[index][: min(cut, len(lines[index]) - 1)]
    # Garbage goes between lines (position 0 = before the header), never inside the header.
    header = lines[0]
    for position, garbage in sorted(inserts, key=lambda item: item[0], reverse=True):
        after_header = lines.index(header) + 1  # garbage inserted before may have moved it
        lines.insert(max(position, after_header) if is_valid_foreign_row(garbage) else position,
                     garbage)
    content = b"\n".join(lines) + b"\n" + tail  # tail: a torn last line
    with scratch_file("fuzz.jsonl", content) as path:
        result = read_file(path, warn=False)
    assert result is not None, "the intact header must keep the file"
    assert result.header["env_id"] == "aaaa"
    kept = iter(result.rows)
    assert all(any(row == candidate for candidate in kept) for row in intact), (
        "an intact row was lost")
    for row in result.rows:
        assert_usable(row)
    assert isinstance(result.header.get("environment", {}), dict)
    content_lines = content.split(b"\n")
    for message in result.skipped:
        match = re.match(re.escape(str(path)) + r":(\d+): ", message)
        assert match and 1 <= int(match.group(1)) <= len(content_lines), message
        blamed = content_lines[int(match.group(1)) - 1]
        assert blamed not in intact_lines, f"an intact line was blamed: {message}"


@settings(max_examples=100, deadline=None)
@given(content=st.binary(max_size=300))
def test_reader_fuzz_random_files(content: bytes) -> None:
    with scratch_file("fuzz.jsonl", content) as path:
        result = read_file(path, warn=False)
    assert result is None or isinstance(result.rows, list)


def test_compressed_results_are_read_and_a_truncated_one_keeps_its_first_rows(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import gzip

    plain = sorted(FIXTURES.glob("*.jsonl"))[0]
    expected = read_file(plain, warn=False)
    packed = tmp_path / f"{plain.name}.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes(), mtime=0))
    assert expand([str(tmp_path)]) == [packed.resolve()]
    whole = read_file(packed)
    assert whole is not None and whole.rows == expected.rows and not whole.skipped
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(packed.read_bytes()[: len(packed.read_bytes()) // 2])
    partial = read_file(cut)
    assert partial is not None and 0 < len(partial.rows) < len(expected.rows)
    assert partial.rows == expected.rows[: len(partial.rows)]
    assert "compressed file is truncated" in capsys.readouterr().err


def test_a_corrupt_compressed_file_is_named_and_the_good_file_beside_it_still_read(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Damaged deflate data (zlib.error, not EOFError) used to abort `report`, `diff` and
    `keep` with a traceback; now the file keeps the rows before the damage and is named."""
    import gzip

    plain = sorted(FIXTURES.glob("*.jsonl"))[0]
    expected = read_file(plain, warn=False)
    good = tmp_path / "good.jsonl"
    good.write_bytes(plain.read_bytes())
    packed = bytearray(gzip.compress(plain.read_bytes() * 20, mtime=0))
    middle = len(packed) // 2
    packed[middle:middle + 64] = bytes(64)  # zeros inside the deflate stream
    damaged = tmp_path / "damaged.jsonl.gz"
    damaged.write_bytes(bytes(packed))
    with pytest.raises(zlib.error):  # the damage is of the kind that used to escape
        gzip.decompress(bytes(packed))
    files = read_all([str(tmp_path)])
    by_name = {item.path.name: item for item in files}
    assert by_name["good.jsonl"].rows == expected.rows
    if "damaged.jsonl.gz" in by_name:  # the damage came after some whole lines
        assert len(by_name["damaged.jsonl.gz"].rows) < 20 * len(expected.rows)
    assert "compressed data is corrupt" in capsys.readouterr().err


def test_a_header_without_env_id_before_the_real_one_is_skipped(tmp_path: Path) -> None:
    lines = valid_lines()
    foreign = json.dumps({"record": HEADER, "schema": 1})  # found by the fuzzer above
    path = tmp_path / "x.jsonl"
    path.write_text("\n".join([foreign, *lines]) + "\n", encoding="utf-8")
    result = read_file(path, warn=False)
    assert result is not None and result.header["env_id"] == "aaaa"
    assert result.rows == sample_rows()
    assert result.skipped == [f"{path}:1: a header without an environment object"]


row_like = st.fixed_dictionaries(
    {"record": st.just(ROW)},
    optional={key: st.none() | st.sampled_from(["ok", "error", "", "x"]) | json_values
              for key in ROW_COLUMN_KEYS},
)


@settings(max_examples=300, deadline=None)
@given(record=row_like)
def test_the_fast_row_check_agrees_with_the_row_rules(record: dict[str, Any]) -> None:
    """The reader's per-row shortcut (types checked once per type signature) accepts a row
    exactly when the spelled-out rules (`_row_problem`) do, and then gives its columns."""
    checker = _RowChecker()
    usable = _row_problem(record) is None
    assert (checker.add(record) is None) == usable
    if checker.rows:
        assert_usable(record)
        assert {key: column[0] for key, column in checker.columns().items()} == {
            key: record.get(key) for key in ROW_COLUMN_KEYS}
    if results._TYPED_ROWS is not None:  # the report's typed decoding agrees too
        header = dumps(make_header(ENVIRONMENT, "aaaa"))
        with scratch_file("r.jsonl", f"{header}\n{json.dumps(record)}\n".encode()) as path:
            columns = results._read(path, keep_rows=False).columns
        assert columns is not None
        assert len(columns["scenario"]) == usable


@pytest.mark.parametrize("decoder", ["msgspec", "json"])
def test_a_report_gets_the_same_columns_whichever_parser(
        decoder: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Columns for a report (typed msgspec structs, or the json module where msgspec is
    not installed): the rows' values with samples shared, bad lines skipped by file:line."""
    if decoder == "json":
        monkeypatch.setattr(results, "_TYPED_ROWS", None)
        monkeypatch.setattr(results, "_loads", json.loads)
    elif results._TYPED_ROWS is None:
        pytest.skip("msgspec is not installed")
    rows = rows_with_samples() + sample_rows()
    path = write_atomic(tmp_path / "r.jsonl", make_header(ENVIRONMENT, "aaaa"), rows)
    lines = path.read_text().splitlines()
    lines[3:3] = [CORRUPT_LINES["a dtype that is a list"], CORRUPT_LINES["truncated JSON"],
                  dumps({**rows[0], "status": "flaky"})]
    write_lines(path, lines)
    consumed: list[dict[str, list[Any]] | None] = []
    (item,) = read_all([str(path)], consume=lambda item: consumed.append(item.columns))
    assert consumed == [results.row_columns(rows)]
    assert item.rows == [] and item.columns is None  # dropped once consumed
    assert warnings_of(capsys.readouterr().err) == [
        f"warning: skipped {path}:4: a row whose 'dtype' is a list",
        f"warning: skipped {path}:5: not valid JSON (truncated or corrupt line)",
        f"warning: skipped {path}:6: unknown status 'flaky'"]
