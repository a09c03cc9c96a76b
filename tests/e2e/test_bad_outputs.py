"""Scenarios whose outputs are not tensors: each is an `error` row naming the output and
its type, on one line, and the scenarios beside them keep their results (the worker is
needed: `python -m audit run` in a subprocess)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.e2e.support import audit_cli, read_results

BAD_OUTPUTS = textwrap.dedent('''
    import torch
    from audit import scenario

    @scenario("bad.good", "a well-behaved scenario")
    def good(ctx):
        torch.manual_seed(0)
        return {"x": torch.rand(4)}

    @scenario("bad.float", "returns a float inside a mapping")
    def a_float(ctx):
        return {"loss": 1.5}

    @scenario("bad.none", "returns None")
    def a_none(ctx):
        return None

    @scenario("bad.string", "returns a string")
    def a_string(ctx):
        return "abc"

    @scenario("bad.nested", "a dict with a float inside")
    def nested(ctx):
        return {"fine": torch.zeros(2), "inner": {"lr": 0.1}}

    @scenario("bad.also_good", "another well-behaved scenario")
    def also_good(ctx):
        torch.manual_seed(1)
        return {"y": torch.rand(3)}
''')

# scenario -> what its error must name besides the scenario
EXPECTED_ERRORS = {
    "bad.float": ["'loss'", "float", "not a tensor"],
    "bad.none": ["NoneType", "mapping"],
    "bad.string": ["str", "mapping"],
    "bad.nested": ["'inner.lr'", "float", "not a tensor"],
}


def test_non_tensor_outputs_become_error_rows(tmp_path: Path) -> None:
    scenarios = tmp_path / "bad_outputs.py"
    scenarios.write_text(BAD_OUTPUTS, encoding="utf-8")
    out = tmp_path / "results"
    completed = audit_cli("run", "--scenarios", str(scenarios), "--select", "bad.*",
                          "--devices", "cpu", "--out", str(out), timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert "Traceback" not in completed.stderr
    _, rows = read_results(out)
    by_scenario: dict[str, list[dict]] = {}
    for row in rows:
        by_scenario.setdefault(row["scenario"], []).append(row)
    assert set(by_scenario) == {"bad.good", "bad.also_good", *EXPECTED_ERRORS}
    for name in ("bad.good", "bad.also_good"):
        assert [row["status"] for row in by_scenario[name]] == ["ok"]
        assert by_scenario[name][0]["repeatable"] is True
    for name, words in EXPECTED_ERRORS.items():
        (row,) = by_scenario[name]
        assert row["status"] == "error", row
        assert row["digest"] is None
        message = row["error"]
        assert "\n" not in message
        for word in [repr(name), *words]:
            assert word in message, f"{word!r} not in {message!r}"
