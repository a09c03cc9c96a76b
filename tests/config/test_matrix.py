"""Matrix files: good ones load as written, bad ones give one UserError line naming the file."""

from __future__ import annotations

import datetime
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit.config import matrix
from audit.config.matrix import KNOWN_DEVICES
from audit.config.settings import SETTINGS
from audit.errors import UserError
from tests.support import ROOT, scratch_file, tomllib

GOOD = """
[audit]
description = "a small audit"
select = ["rng.*", "init.*"]
devices = ["cpu", "cuda"]
timeout = 60
scenario_files = ["mine/scenarios.py"]

[settings]
threads = [1, " 2 ", "02"]
cpu_capability = ["DEFAULT", "AVX2"]
deterministic = "ON"

[[torch]]
version = " 2.13.0+cpu "
from = "pip-config"

[[torch]]
version = "2.14.1"
from = "registry"
find_links = "/wheels"
extra_index_urls = ["https://a", "https://b"]
numpy = "<2"
packages = ["scipy"]
"""


def write(folder: Path, text: str, name: str = "matrix.toml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_good_matrix(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    loaded = matrix.load(path)
    assert loaded.path == path
    assert loaded.select == ("rng.*", "init.*")
    assert loaded.devices == ("cpu", "cuda")
    assert loaded.timeout == 60.0 and isinstance(loaded.timeout, float)
    assert loaded.scenario_files == (str((tmp_path / "mine" / "scenarios.py").resolve()),)
    assert loaded.settings == {"threads": ["1", "2"], "cpu_capability": ["default", "avx2"],
                               "deterministic": ["on"]}
    first, second = loaded.torch
    assert (first.version, first.source, first.label) == ("2.13.0+cpu", "pip-config",
                                                          "2.13.0-cpu")
    assert first.requirement == "torch==2.13.0+cpu"
    assert second.find_links == ("/wheels",)
    assert second.extra_index_urls == ("https://a", "https://b")
    assert (second.numpy, second.packages, second.source) == ("<2", ("scipy",), "registry")


def test_empty_matrix_has_defaults(tmp_path: Path) -> None:
    loaded = matrix.load(write(tmp_path, ""))
    assert loaded.select == () and loaded.torch == () and loaded.settings == {}
    assert loaded.devices == ("cpu", "cuda", "mps") and loaded.timeout == 300.0


def test_default_matrix_loads() -> None:
    loaded = matrix.load(ROOT / "matrices" / "default.toml")
    assert loaded.torch and loaded.devices


ERROR_CASES = {
    "malformed": ("[audit\n", ["not valid TOML"]),
    "unknown top-level key": ("colour = 1\n", ["'colour'", "audit, ", "settings, torch"]),
    "unknown [audit] key": ("[audit]\nselct = []\n", ["[audit]", "'selct'"]),
    "unknown [[torch]] key": ('[[torch]]\nversion = "1"\nbogus = 1\n', ["torch[0]", "'bogus'"]),
    "unknown setting": ("[settings]\nnope = 1\n", ["[settings]", "'nope'"]),
    "bad setting value": ("[settings]\ndefault_dtype = 'float16'\n",
                          ["'default_dtype'", "'float16'", "float32, float64"]),
    "empty setting list": ("[settings]\nthreads = []\n", ["'threads'", "no values"]),
    "unicode digit threads": ("[settings]\nthreads = ['\u00b2']\n", ["'threads'"]),
    "huge threads": ("[settings]\nthreads = [10000000000]\n", ["'threads'"]),
    "settings not a table": ("settings = 3\n", ["[settings]"]),
    "audit not a table": ("audit = [1]\n", ["[audit]", "table"]),
    "bad device": ("[audit]\ndevices = ['cpu', 'gpu']\n", ["'gpu'"]),
    "devices not strings": ("[audit]\ndevices = [1]\n", ["audit.devices"]),
    "zero timeout": ("[audit]\ntimeout = 0\n", ["audit.timeout"]),
    "negative timeout": ("[audit]\ntimeout = -1\n", ["audit.timeout"]),
    "nan timeout": ("[audit]\ntimeout = nan\n", ["audit.timeout"]),
    "inf timeout": ("[audit]\ntimeout = inf\n", ["audit.timeout"]),
    "huge timeout": ("[audit]\ntimeout = 1e300\n", ["audit.timeout"]),
    "bool timeout": ("[audit]\ntimeout = true\n", ["audit.timeout"]),
    "duplicated torch version": ('[[torch]]\nversion = "2.1"\n[[torch]]\nversion = "2.1"\n',
                                 ["'2.1'", "twice"]),
    "same label twice": ('[[torch]]\nversion = "2.1+cpu"\n[[torch]]\nversion = "2.1-cpu"\n',
                         ["'2.1-cpu'", "twice"]),
    "empty torch version": ('[[torch]]\nversion = " "\n', ["torch[0]", "'version'"]),
    "numeric torch version": ("[[torch]]\nversion = 2.1\n", ["torch[0]", "'version'"]),
    "torch entry not a table": ("torch = [1]\n", ["torch[0]"]),
    "bad index_url": ('[[torch]]\nversion = "2.1"\nindex_url = 3\n', ["'index_url'"]),
    "bad find_links": ('[[torch]]\nversion = "2.1"\nfind_links = [1]\n', ["find_links"]),
    "NUL in a scenario file": ('[audit]\nscenario_files = ["a\\u0000b.py"]\n',
                               ["audit.scenario_files"]),
}


@pytest.mark.parametrize("case", sorted(ERROR_CASES))
def test_bad_matrix_is_one_line(case: str, tmp_path: Path) -> None:
    text, names = ERROR_CASES[case]
    path = write(tmp_path, text)
    with pytest.raises(UserError) as caught:
        matrix.load(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(str(path)), message
    for name in names:
        assert name in message, f"{name!r} not in {message!r}"


def test_missing_and_unreadable(tmp_path: Path) -> None:
    for path in (tmp_path / "missing.toml", tmp_path):
        with pytest.raises(UserError) as caught:
            matrix.load(path)
        assert str(path) in str(caught.value) and "\n" not in str(caught.value)
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe[audit]")
    with pytest.raises(UserError, match="not a text file"):
        matrix.load(binary)


# --- fuzz -------------------------------------------------------------------------------

def check_load(path: Path) -> matrix.Matrix | None:
    """Load; only a one-line UserError naming the file may come out; a result is sane."""
    try:
        loaded = matrix.load(path)
    except UserError as error:
        message = str(error)
        assert "\n" not in message and "\r" not in message, message
        assert str(path) in message, message
        return None
    assert set(loaded.devices) <= set(KNOWN_DEVICES)
    assert math.isfinite(loaded.timeout) and loaded.timeout > 0
    for name, values in loaded.settings.items():
        assert values and all(SETTINGS[name].validate(value, "x") == value for value in values)
    labels = [version.label for version in loaded.torch]
    assert len(labels) == len(set(labels))
    return loaded


FRAGMENTS = [
    "[audit]", "[settings]", "[[torch]]", "[torch]", "[audit.x]", "\n", "\n", "\n", " ", "=",
    "select", "devices", "timeout", "scenario_files", "description", "version", "from",
    "find_links", "index_url", "extra_index_urls", "numpy", "python", "packages", "threads",
    "cpu_capability", "deterministic", "default_dtype", "matmul_precision", "tf32", "bogus",
    '"cpu"', '"cuda"', '"gpu"', '"2.13.0"', '"pip-config"', '"registry"', '"on"', '"AVX2"',
    "1", "0", "-1", "3.5", "nan", "inf", "-inf", "true", "false", "1979-05-27", "[", "]", "{",
    "}", ",", '"', "'", "'''", '"""', "#", ".", "\\u0000", "\\", "\t", "\r", "\x00", "é", "\u2028",
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(parts=st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=4), max_size=40))
def test_matrix_fuzz_tomlish_text(parts: list[str]) -> None:
    with scratch_file("fuzz.toml", "".join(parts).encode("utf-8", "surrogatepass")) as path:
        check_load(path)


def toml_string(text: str) -> str:
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def toml_value(value: Any) -> str:
    """A tiny TOML writer: every value inline (tomli_w is not a dependency)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_string(key)} = {toml_value(item)}"
                               for key, item in value.items()) + "}"
    raise TypeError(type(value))


def toml_document(data: dict[str, Any]) -> str:
    return "".join(f"{toml_string(key)} = {toml_value(value)}\n" for key, value in data.items())


text_values = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
scalars = st.one_of(
    st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(), text_values,
    st.datetimes(min_value=datetime.datetime(1, 1, 1)).map(lambda d: d.replace(microsecond=0)),
    st.dates(),
    st.sampled_from(["cpu", "cuda", "gpu", "2.13.0", "2.13.0+cpu", "pip-config", "registry",
                     "on", "off", "AVX2", " 2 ", "0", "1", "rng.*", "float64", "warn-only"]),
)
values = st.recursive(scalars, lambda children: st.lists(children, max_size=3)
                      | st.dictionaries(text_values, children, max_size=3), max_leaves=6)


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a value of the right shape, sometimes anything at all."""
    return st.one_of(strategy, strategy, strategy, values)


def table(required_keys: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict]:
    """Each known key present half the time, now and then a junk key."""
    known = st.fixed_dictionaries({}, optional=required_keys)
    junk = st.dictionaries(text_values, values, max_size=1)
    return st.tuples(known, st.one_of(st.just({}), st.just({}), st.just({}), junk)).map(
        lambda parts: {**parts[1], **parts[0]})


strings = st.one_of(text_values, st.sampled_from(["cpu", "rng.*", "a\x00b.py", "", " "]))
string_lists = st.one_of(strings, st.lists(strings, max_size=3))
numbers = st.one_of(st.floats(), st.integers(-(2**63), 2**63 - 1),
                    st.sampled_from([0, -1, 1e300, float("nan"), float("inf"), True]))
setting_values = st.one_of(
    st.sampled_from(sorted({value for setting in SETTINGS.values()
                            for value in setting.values or ()})),
    st.sampled_from(["AVX2", " 2 ", "02", "0", "-1", "1.5", "\u00b2", "\u0663", "9" * 30,
                     "65536", "65537", "ON", "n/a", ""]),
    st.integers(-3, 70000), text_values,
)
audit_table = table({
    "select": maybe(string_lists), "devices": maybe(st.lists(
        st.sampled_from([*KNOWN_DEVICES, "gpu", "CPU", ""]), max_size=3)),
    "timeout": maybe(numbers), "scenario_files": maybe(string_lists),
    "description": maybe(text_values),
})
settings_table = table({name: maybe(st.one_of(setting_values, st.lists(setting_values,
                                                                        max_size=3)))
                        for name in SETTINGS})
torch_entry = table({
    "version": maybe(st.sampled_from(["2.13.0", "2.13.0+cpu", "2.13.0-cpu", " 2.1 ", "", " "])),
    "from": maybe(st.sampled_from(["pip-config", "registry", "pypi"])),
    "find_links": maybe(string_lists), "index_url": maybe(strings),
    "extra_index_urls": maybe(string_lists), "numpy": maybe(strings),
    "python": maybe(strings), "packages": maybe(string_lists),
})
documents = table({
    "audit": maybe(audit_table), "settings": maybe(settings_table),
    "torch": maybe(st.lists(torch_entry, max_size=3)),
})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=documents)
def test_matrix_fuzz_structures(data: dict[str, Any]) -> None:
    text = toml_document(data)
    tomllib.loads(text)  # the writer itself must produce valid TOML
    with scratch_file("fuzz.toml", text.encode("utf-8")) as path:
        check_load(path)


@settings(max_examples=100, deadline=None)
@given(content=st.binary(max_size=200))
def test_matrix_fuzz_bytes(content: bytes) -> None:
    with scratch_file("fuzz.toml", content) as path:
        check_load(path)


def test_toml_writer_round_trip() -> None:
    data = {"audit": {"select": ["a\"b\\c\n\x7f"], "timeout": 1.5},
            "torch": [{"version": "2.1", "from": "registry"}], "x": -3}
    assert tomllib.loads(toml_document(data)) == data


def test_trace_is_a_boolean(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text("[audit]\ntrace = true\n", encoding="utf-8")
    assert matrix.load(good).trace is True
    bad = tmp_path / "bad.toml"
    bad.write_text('[audit]\ntrace = "yes"\n', encoding="utf-8")
    with pytest.raises(UserError, match=r"bad.toml: audit.trace must be true or false"):
        matrix.load(bad)
