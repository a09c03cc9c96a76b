"""Bad input ends as ONE line `repro-audit: error: ...` naming the file, key or value, exit 2.

Errors found before any child process starts are driven in-process through
`audit.cli.main`; a scenario with a bad output needs the worker, so it runs in a subprocess
(tests/e2e/test_bad_outputs.py).
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from audit.cli import main
from audit.store.results import HEADER, SCHEMA, dumps, make_header, make_row, write_atomic
from tests.support import FIXTURES

# User scenario files loaded in-process must not leak into other tests.
pytestmark = pytest.mark.usefixtures("clean_registry")


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


def assert_one_line_error(code: int, err: str, *names: str) -> str:
    assert "Traceback" not in err, err
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    (line,) = lines
    assert line.startswith("repro-audit: error: "), line
    for name in names:
        assert name in line, f"{name!r} not named in: {line}"
    return line


# --- matrix files -----------------------------------------------------------------------

MATRIX_CASES = {
    "malformed": ("[audit\nselect = ['rng.*']\n", ["not valid TOML", "line 1"]),
    "unknown top-level key": ("colour = 'blue'\n", ["'colour'"]),
    "unknown [audit] key": ("[audit]\nselct = ['rng.*']\n", ["[audit]", "'selct'"]),
    "unknown [[torch]] key": ('[[torch]]\nversion = "2.13.0"\nindex = "https://x"\n',
                              ["torch[0]", "'index'"]),
    "unknown setting": ("[settings]\nthread = [1, 2]\n", ["'thread'", "[settings]"]),
    "bad setting value": ('[settings]\ndeterministic = ["off", "maybe"]\n',
                          ["'deterministic'", "'maybe'", "off, on, warn-only"]),
    "bad threads value": ("[settings]\nthreads = [0]\n", ["'threads'", "'0'"]),
    "bad device": ('[audit]\ndevices = ["cpu", "gpu"]\n', ["audit.devices", "'gpu'"]),
    "zero timeout": ("[audit]\ntimeout = 0\n", ["audit.timeout"]),
    "negative timeout": ("[audit]\ntimeout = -5.0\n", ["audit.timeout", "-5.0"]),
    "nan timeout": ("[audit]\ntimeout = nan\n", ["audit.timeout", "nan"]),
    "string timeout": ('[audit]\ntimeout = "300"\n', ["audit.timeout", "'300'"]),
    "duplicated torch version": ('[[torch]]\nversion = "2.13.0"\n[[torch]]\nversion = "2.14.1"\n'
                                 '[[torch]]\nversion = "2.13.0"\n',
                                 ["'2.13.0'", "torch[2]", "twice"]),
    "torch without version": ("[[torch]]\nfrom = 'registry'\n", ["torch[0]", "'version'"]),
    "bad torch source": ('[[torch]]\nversion = "2.13.0"\nfrom = "pypi"\n',
                         ["torch[0]", "'pypi'", "pip-config, registry"]),
    "torch as a table": ('[torch]\nversion = "2.13.0"\n', ["[[torch]]"]),
}


@pytest.mark.parametrize("case", sorted(MATRIX_CASES))
def test_bad_matrix(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text, names = MATRIX_CASES[case]
    path = tmp_path / "matrix.toml"
    path.write_text(text, encoding="utf-8")
    code, err = cli(capsys, "run", "--matrix", str(path), "--out", str(tmp_path / "out"))
    assert_one_line_error(code, err, str(path), *names)
    assert not (tmp_path / "out").exists()


def test_matrix_not_found(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "nope.toml"
    assert_one_line_error(*cli(capsys, "run", "--matrix", str(path)), str(path), "not found")


def test_matrix_is_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert_one_line_error(*cli(capsys, "run", "--matrix", str(tmp_path)), str(tmp_path))


def test_matrix_not_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "matrix.toml"
    path.write_bytes(b"\xff\xfe\x00[audit]\x80\n")
    assert_one_line_error(*cli(capsys, "run", "--matrix", str(path)), str(path), "text")


# --- command-line flags -----------------------------------------------------------------

FLAG_CASES = {
    "threads=0": (["--settings", "threads=0"], ["--settings", "'threads'", "'0'"]),
    "unknown setting": (["--settings", "nope=1"], ["--settings", "'nope'", "threads"]),
    "no '='": (["--settings", "threads"], ["--settings", "'threads'", "NAME=V1,V2"]),
    "no values": (["--settings", "threads="], ["--settings", "'threads='"]),
    "bad value lists allowed": (["--settings", "cpu_capability=avx3"],
                                ["'avx3'", "auto, default, avx2, avx512"]),
    "bad device": (["--devices", "gpu"], ["--devices", "'gpu'", "cpu, cuda"]),
    "one bad device of two": (["--devices", "cpu,tpu"], ["--devices", "'tpu'"]),
    "zero timeout": (["--timeout", "0"], ["--timeout"]),
    "unknown selection": (["--select", "nomatch.*"], ["--select", "'nomatch.*'"]),
}


@pytest.mark.parametrize("case", sorted(FLAG_CASES))
def test_bad_flag(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flags, names = FLAG_CASES[case]
    code, err = cli(capsys, "run", *flags, "--out", str(tmp_path / "out"))
    assert_one_line_error(code, err, *names)
    assert not (tmp_path / "out").exists()


# --- scenario files ---------------------------------------------------------------------

SCENARIO_FILES = {
    "syntax error": ("import torch\n\ndef broken(:\n    pass\n", [":3:", "syntax error"]),
    "raises on import": ("import torch\nx = 1\nraise RuntimeError('boom\\nsecond line')\n",
                         [":3:", "RuntimeError", "boom"]),
    "imports a missing module": ("import torch\nimport no_such_module_xyz\n",
                                 [":2:", "ModuleNotFoundError", "no_such_module_xyz"]),
    "exits on import": ("import sys\nsys.exit(3)\n", [":2:", "SystemExit"]),
    "name without a dot": (textwrap.dedent('''\
        import torch
        from audit import scenario

        @scenario("nodot", "no family")
        def nodot(ctx):
            return {"x": torch.zeros(1)}
        '''), [":4:", "'nodot'", "family.name"]),
    "name of a built-in": (textwrap.dedent('''\
        import torch
        from audit import scenario

        @scenario("rng.cauchy", "clashes with the built-in")
        def clash(ctx):
            return {"x": torch.zeros(1)}
        '''), ["'rng.cauchy'", "twice", "audit.scenarios.rng"]),
}


@pytest.mark.parametrize("command", ["run", "list"])
@pytest.mark.parametrize("case", sorted(SCENARIO_FILES))
def test_bad_scenario_file(case: str, command: str, tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    text, names = SCENARIO_FILES[case]
    path = tmp_path / "my_scenarios.py"
    path.write_text(text, encoding="utf-8")
    extra = ["--out", str(tmp_path / "out")] if command == "run" else []
    code, err = cli(capsys, command, "--scenarios", str(path), *extra)
    assert_one_line_error(code, err, str(path), *names)


def test_scenario_file_not_found(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "missing.py"
    code, err = cli(capsys, "run", "--scenarios", str(path), "--out", str(tmp_path / "out"))
    assert_one_line_error(code, err, str(path), "not found")


def test_scenario_file_not_python(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "scenarios.txt"
    path.write_text("x = 1\n", encoding="utf-8")
    code, err = cli(capsys, "list", "--scenarios", str(path))
    assert_one_line_error(code, err, str(path))


# --- report -----------------------------------------------------------------------------

def test_report_empty_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    code, err = cli(capsys, "report", str(folder), "--out", str(tmp_path / "reports"))
    assert_one_line_error(code, err, str(folder), "no results files")
    assert not (tmp_path / "reports").exists()


def test_report_only_foreign_jsonl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "foreign"
    (folder / "sub").mkdir(parents=True)
    (folder / "events.jsonl").write_text('{"event": "click"}\n' * 50, encoding="utf-8")
    (folder / "sub" / "log.jsonl").write_text("[1, 2]\nnot json\n", encoding="utf-8")
    (folder / "notes.txt").write_text("hello\n", encoding="utf-8")
    code, err = cli(capsys, "report", str(folder), "--out", str(tmp_path / "reports"))
    assert_one_line_error(code, err, str(folder), "no readable repro-audit results")
    assert not (tmp_path / "reports").exists()


def test_report_only_newer_schema(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    header = {**make_header({"torch": "9.0"}, "ffff"), "schema": SCHEMA + 1}
    assert header["record"] == HEADER
    row = make_row(scenario="rng.x", output="x", status="ok", device="cpu", settings={})
    path = write_atomic(tmp_path / "new.jsonl", header, [row])
    code, err = cli(capsys, "report", str(tmp_path), "--out", str(tmp_path / "reports"))
    assert_one_line_error(code, err, str(path), "newer")


def test_report_missing_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no_such_results"
    code, err = cli(capsys, "report", str(missing), "--out", str(tmp_path / "reports"))
    assert_one_line_error(code, err, str(missing), "no such file or folder")


def test_report_glob_matching_nothing(tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    pattern = str(tmp_path / "*.jsonl")
    code, err = cli(capsys, "report", pattern, "--out", str(tmp_path / "reports"))
    assert_one_line_error(code, err, pattern)


def test_report_skips_a_foreign_file_beside_a_good_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Not an error: the good file is reported, the foreign one named in one warning."""
    row = make_row(scenario="rng.x", output="x", status="ok", device="cpu", settings={},
                   digest="ab", repeatable=True, torch_version="2.13.0", env_id="aaaa")
    write_atomic(tmp_path / "results" / "good.jsonl", make_header({"torch": "2.13.0"}, "aaaa"),
                 [row])
    foreign = tmp_path / "results" / "other.jsonl"
    foreign.write_text('{"event": "click"}\n' * 20, encoding="utf-8")
    code, err = cli(capsys, "report", str(tmp_path / "results"),
                    "--out", str(tmp_path / "reports"))
    assert code == 0, err
    from audit.publish.heatmap import NOT_INSTALLED  # said where matplotlib is absent

    assert [line for line in err.splitlines() if line != NOT_INSTALLED] == [
        f"warning: skipped {foreign}: no repro-audit header (not a repro-audit results file?)"]
    assert (tmp_path / "reports" / "README.md").is_file()


def test_dumps_is_one_line() -> None:
    """Rows carry user text (error messages): the file format must keep them on one line."""
    row = make_row(scenario="u.x", output=None, status="error", error="a\nb\r\nc\u2028d")
    assert "\n" not in dumps(row) and "\r" not in dumps(row)


# --- flags whose bad values once slipped past a simple check ------------------------------

@pytest.mark.parametrize("value", ["nan", "inf", "1e300"])
def test_timeout_not_finite(value: str, tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    code, err = cli(capsys, "run", "--timeout", value, "--select", "nomatch.*",
                    "--out", str(tmp_path / "out"))
    assert_one_line_error(code, err, "--timeout")


def test_argparse_error_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["run", "--timeout", "abc"])
    err = capsys.readouterr().err
    assert caught.value.code == 2
    assert len(err.splitlines()) == 1, err
    assert re.match(r"repro-audit( run)?: error: .*--timeout.*'abc'", err), err


@pytest.mark.parametrize("command", ["run", "report"])
def test_out_is_a_file(command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    taken = tmp_path / "taken"
    taken.write_text("", encoding="utf-8")
    argv = (["run", "--select", "rng.cauchy", "--devices", "cpu"] if command == "run"
            else ["report", str(FIXTURES)])
    code, err = cli(capsys, *argv, "--out", str(taken))
    assert_one_line_error(code, err, str(taken))
