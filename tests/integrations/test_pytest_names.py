"""Scenario names of pytest node ids: safe characters only, stable, never shared."""

from __future__ import annotations

import pytest

from audit.errors import UserError
from audit.integrations.pytest_plugin.names import scenario_name


@pytest.mark.parametrize(("nodeid", "name"), [
    ("tests/test_model.py::test_step", "tests.test_model:test_step"),
    ("tests/test_model.py::TestMLP::test_step", "tests.test_model:TestMLP.test_step"),
    ("tests/test_model.py::TestMLP::test_step[float32-lr/2]",
     "tests.test_model:TestMLP.test_step[float32-lr%2F2]"),
    ("test_a.py::test_b[0.5-x=1,y+2]", "test_a:test_b[0.5-x=1,y+2]"),
    ("test_a.py::test_b[a::b [c] d]", "test_a:test_b[a%3A%3Ab%20%5Bc%5D%20d]"),
    ("test_a.py::test_b[%]", "test_a:test_b[%25]"),
    ("test_a.py::test_b[é\n]", "test_a:test_b[%C3%A9%0A]"),
    ("my-tests/sub.dir/test_a.py::test_b", "my-tests.sub%2Edir.test_a:test_b"),
])
def test_a_node_id_becomes_a_safe_dotted_name(nodeid: str, name: str) -> None:
    assert scenario_name(nodeid) == name
    assert name.isprintable() and "/" not in name and "::" not in name and " " not in name


def test_two_node_ids_never_share_a_name() -> None:
    # a class in a file vs a file in a folder; a dot in a folder vs a nested folder
    pairs = [("a/b.py::C::d", "a/b/C.py::d"), ("a.b/c.py::d", "a/b/c.py::d"),
             ("t.py::f[x/y]", "t.py::f[x%2Fy]"), ("t.py::f[a-b]", "t.py::f[a_b]")]
    for first, second in pairs:
        assert scenario_name(first) != scenario_name(second)


def test_a_name_given_with_the_marker_keeps_the_parameter() -> None:
    assert scenario_name("t.py::test_f[cpu-2]", "mine.train") == "mine.train[cpu-2]"
    assert scenario_name("t.py::test_f", "mine.train") == "mine.train"
    with pytest.raises(UserError, match=r"t.py::test_f: @pytest.mark.repro\(name='a b'\)"):
        scenario_name("t.py::test_f", "a b")
