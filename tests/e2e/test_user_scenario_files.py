"""A user's scenario file in a real run: its hash seed as an axis, its own package beside it."""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.e2e.support import audit_cli, read_results

HASH_SCENARIO = """
    import torch
    from audit import scenario

    @scenario("hashdep.str_hash")
    def str_hash(ctx):
        return {"value": torch.tensor([hash("abc") % 1000, hash("abc")], dtype=torch.int64)}
"""


def test_hash_dependent_output_differs_along_python_hash_seed_not_threads(
        tmp_path: Path) -> None:
    file = tmp_path / "mine.py"
    file.write_text(textwrap.dedent(HASH_SCENARIO), encoding="utf-8")
    out = tmp_path / "out"
    done = audit_cli("run", "--scenarios", str(file), "--select", "hashdep.*",
                     "--settings", "threads=1,2", "--settings", "python_hash_seed=0,random",
                     "--out", str(out))
    assert done.returncode == 0, done.stderr
    _, rows = read_results(out)
    digests = {(row["settings"]["threads"], row["settings"]["python_hash_seed"]): row["digest"]
               for row in rows if row["status"] == "ok"}
    assert digests[("1", "0")] == digests[("2", "0")]  # threads: no difference
    assert digests[("1", "0")] != digests[("1", "random")]  # the hash seed: one
    report = audit_cli("report", str(out), "--out", str(tmp_path / "report"))
    assert report.returncode == 0, report.stderr
    text = (tmp_path / "report" / "README.md").read_text(encoding="utf-8")
    assert "**Across python_hash_seed**: 1 of 1 outputs differ." in text
    assert "Suggested: pin python_hash_seed=0" in text


def test_a_default_run_fixes_the_seed(tmp_path: Path) -> None:
    file = tmp_path / "mine.py"
    file.write_text(textwrap.dedent(HASH_SCENARIO), encoding="utf-8")
    out = tmp_path / "out"
    done = audit_cli("run", "--scenarios", str(file), "--select", "hashdep.*",
                     "--settings", "threads=1,2", "--out", str(out))
    assert done.returncode == 0, done.stderr
    _, rows = read_results(out)
    assert {row["settings"]["python_hash_seed"] for row in rows} == {"0"}
    assert len({row["digest"] for row in rows if row["status"] == "ok"}) == 1


def test_the_users_package_beside_the_file_imports(tmp_path: Path) -> None:
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("SIZE = 3\n", encoding="utf-8")
    file = tmp_path / "mine.py"
    file.write_text(textwrap.dedent("""
        import torch
        from audit import scenario
        from mypkg import SIZE

        @scenario("mine.sized")
        def sized(ctx):
            return {"x": torch.arange(SIZE)}
    """), encoding="utf-8")
    out = tmp_path / "out"
    done = audit_cli("run", "--scenarios", str(file), "--select", "mine.*", "--out", str(out))
    assert done.returncode == 0, done.stderr
    _, rows = read_results(out)
    assert "ok" in {row["status"] for row in rows}
    assert not [row for row in rows if row["status"] == "error"]


def test_a_missing_module_names_the_fix(tmp_path: Path) -> None:
    file = tmp_path / "mine.py"
    file.write_text("import no_such_package_here\n", encoding="utf-8")
    done = audit_cli("run", "--scenarios", str(file), "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    assert "no_such_package_here" in done.stderr and "PYTHONPATH" in done.stderr
    assert "Traceback" not in done.stderr
