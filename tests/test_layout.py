"""The package's shape: imports run one way down the pipeline, and no unit outgrows its job.

The stages are ordered as data flows (docs/architecture.md): a module may import its own
stage and the stages before it, never a later one, at module level or inside a function.
The size limits are the ones the restructure set; scenario catalogue modules are exempt
(a family of scenarios is a list, not a unit of logic).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "audit"

# Earlier stages first; a module may import only from its own stage or an earlier one.
STAGES = ("errors", "config", "environment", "store", "scenarios", "capture", "trace", "run",
          "judge", "publish", "integrations", "cli")
TOP_LEVEL = {"__init__": "scenarios", "__main__": "cli"}  # the public API and `python -m audit`
CATALOGUE = {"data", "init", "numpy_random", "ops", "python_random", "rng", "seed", "state",
             "train"}
MAX_MODULE_LINES = 400
MAX_UNIT_LINES = 120


def stage_of(module: str) -> str:
    """`audit.run.pool.pool` -> `run`; `audit.cli` -> `cli`; `audit` -> its top-level role."""
    parts = module.split(".")
    if len(parts) == 1:
        return TOP_LEVEL["__init__"]
    return TOP_LEVEL.get(parts[1], parts[1])


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def audit_imports(tree: ast.AST) -> list[tuple[int, str]]:
    """Every `audit...` module a file imports, at any depth, with its line."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "audit" or node.module.startswith("audit."):
                for alias in node.names:
                    found.append((node.lineno, node.module + "." + alias.name
                                  if node.module == "audit" else node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("audit.")]
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_imports_run_down_the_pipeline(path: Path) -> None:
    here = stage_of(module_name(path))
    if module_name(path) == "audit":
        return  # the public API re-exports the scenario decorator and context
    tree = ast.parse(path.read_text())
    later = []
    for line, imported in audit_imports(tree):
        there = stage_of(imported if imported.count(".") else "audit.__init__")
        if imported in {"audit.__version__", "audit.scenario", "audit.Context",
                        "audit.Unavailable"}:
            there = "errors"  # names of the package's own __init__: no stage
        if STAGES.index(there) > STAGES.index(here):
            later.append(f"line {line}: {imported} ({there} comes after {here})")
    assert not later, f"{module_name(path)} imports a later stage: " + "; ".join(later)


def oversized_units(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    return [f"{node.name} ({node.end_lineno - node.lineno + 1} lines, line {node.lineno})"
            for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            and node.end_lineno - node.lineno + 1 > MAX_UNIT_LINES]


@pytest.mark.parametrize("path", [p for p in MODULES
                                  if not (p.parent.name == "scenarios" and p.stem in CATALOGUE)],
                         ids=lambda p: module_name(p))
def test_no_module_or_unit_outgrows_its_job(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{module_name(path)} has {lines} lines"
    assert not oversized_units(path), f"{module_name(path)}: {oversized_units(path)}"


def test_the_checks_see_a_violation(tmp_path: Path) -> None:
    """The checks above fail on code that breaks them: a check that cannot fail proves nothing."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n" + "    x = 1\n" * MAX_UNIT_LINES + "\n"
                   "def g():\n    from audit.publish.report import write_report\n")
    assert oversized_units(bad) == [f"f ({MAX_UNIT_LINES + 1} lines, line 1)"]
    imports = audit_imports(ast.parse(bad.read_text()))
    assert imports == [(MAX_UNIT_LINES + 4, "audit.publish.report")]
    assert STAGES.index(stage_of(imports[0][1])) > STAGES.index(stage_of("audit.store.results"))


def test_nox_imports_stay_torch_free() -> None:
    """noxfile.py imports config/ and store/ on the host, where no torch is installed."""
    import subprocess
    import sys

    code = ("import sys; sys.path.insert(0, '.');"
            "import audit.config.matrix, audit.config.settings, audit.store.results,"
            " audit.store.atomic, audit.integrations.uv_sources;"
            "bad = [m for m in ('torch', 'pandas') if m in sys.modules];"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], cwd=PACKAGE.parent, check=True)
