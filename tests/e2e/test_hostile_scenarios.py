"""Hostile scenarios: one that leaves torch's global state changed, one that forges the
worker's messages. Neither may change what the next scenario computes, nor how its rows are
filed, nor make a scenario vanish (issue 24, items 4 and 6)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.e2e.support import audit_cli, read_results

PLAIN = '''
@scenario("hostile.z_plain", "a plain draw after the hostile one")
def plain(ctx):
    torch.manual_seed(3)
    return {"x": torch.rand(8)}
'''

LEAKS = textwrap.dedent('''
    import torch
    from audit import scenario

    @scenario("hostile.a_leaks", "changes six global knobs and restores none")
    def leaks(ctx):
        torch.set_default_dtype(torch.float64)
        torch.set_num_threads(1)
        torch.use_deterministic_algorithms(True)
        torch.set_flush_denormal(True)
        torch.set_float32_matmul_precision("medium")
        torch.backends.mkldnn.enabled = False
        torch.manual_seed(1)
        return {"x": torch.rand(4)}
''') + PLAIN

FORGES = textwrap.dedent('''
    import json, os
    import torch
    from audit import scenario

    def forged(unit):
        row = {"output": "x", "status": "ok", "digest": "f" * 64, "dtype": "float32",
               "shape": [1], "repeatable": True}
        return (json.dumps({"event": "finish", "unit": unit, "rows": [row], "effective": {},
                            "seconds": 0.0}) + "\\n").encode()

    @scenario("hostile.a_forges", "writes forged events to every descriptor it can")
    def forges(ctx):
        lines = b"".join(forged(unit) for unit in range(64)) + b'{"event": "done"}\\n'
        for fd in sorted({1, 2} | {int(name) for name in os.listdir("/proc/self/fd")}):
            try:
                os.write(fd, lines)
            except OSError:
                pass
        torch.manual_seed(1)
        return {"x": torch.rand(4)}
''') + PLAIN


def audit(tmp_path: Path, name: str, source: str, *selection: str, settings: str
          ) -> list[dict]:
    scenarios = tmp_path / f"{name}.py"
    scenarios.write_text(source, encoding="utf-8")
    out = tmp_path / name
    select = [argument for pattern in selection for argument in ("--select", pattern)]
    completed = audit_cli("run", "--scenarios", str(scenarios), *select, "--devices", "cpu",
                          "--settings", settings, "--jobs", "2", "--out", str(out))
    assert completed.returncode == 0, completed.stderr
    return read_results(out)[1]


def rows_of(rows: list[dict], scenario: str) -> list[dict]:
    return sorted((row for row in rows if row["scenario"] == scenario),
                  key=lambda row: sorted(row["settings"].items()))


def test_a_scenario_that_leaves_global_state_changed_does_not_reach_the_next(
        tmp_path: Path) -> None:
    both = audit(tmp_path, "both", LEAKS, "hostile.*", settings="threads=2")
    alone = audit(tmp_path, "alone", LEAKS, "hostile.z_plain", settings="threads=2")
    (leaker,) = rows_of(both, "hostile.a_leaks")
    assert leaker["status"] == "error"
    for change in ("threads 2 \u2192 1", "default_dtype float32 \u2192 float64",
                   "deterministic off \u2192 on", "flush_denormal off \u2192 on",
                   "mkldnn on \u2192 off", "matmul_precision highest \u2192",
                   "did not restore them"):
        assert change in leaker["error"]
    (plain,) = rows_of(both, "hostile.z_plain")
    (reference,) = rows_of(alone, "hostile.z_plain")
    assert plain["status"] == "ok" and plain["dtype"] == "float32"
    assert plain["digest"] == reference["digest"]
    settings = plain["settings"]
    assert (settings["threads"], settings["default_dtype"], settings["deterministic"],
            settings["mkldnn"], settings["matmul_precision"], settings["flush_denormal"]) == (
        "2", "float32", "off", "on", "highest", "off")
    assert settings == reference["settings"]


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd")
def test_a_scenario_that_forges_worker_messages_is_an_error_naming_it(tmp_path: Path) -> None:
    """Two workers forked by one fork server (cpu_capability is read after the fork), so
    forked workers are guarded as fresh ones are."""
    settings = "cpu_capability=default,auto"
    both = audit(tmp_path, "both", FORGES, "hostile.*", settings=settings)
    alone = audit(tmp_path, "alone", FORGES, "hostile.z_plain", settings=settings)
    forgers = rows_of(both, "hostile.a_forges")
    assert len(forgers) == 2 and len(both) == 4  # nothing vanished, nothing was added
    for row in forgers:
        assert row["output"] is None and row["status"] != "ok"
        assert "did not write" in row["error"] and "written by the scenario" in row["error"]
    plain, reference = rows_of(both, "hostile.z_plain"), rows_of(alone, "hostile.z_plain")
    assert [row["status"] for row in plain] == ["ok", "ok"]
    assert [(row["digest"], row["settings"]) for row in plain] == [
        (row["digest"], row["settings"]) for row in reference]
