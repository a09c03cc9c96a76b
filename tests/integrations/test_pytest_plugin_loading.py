"""The pytest plugin as pytest finds it: the entry point names its module, and loading it
imports no torch (every pytest session of a project with the package installed loads it).
Sessions that use the plugin are in tests/e2e/test_pytest_plugin.py."""

from __future__ import annotations

import subprocess
import sys

from tests.support import ROOT, pyproject


def test_the_entry_point_names_the_plugin_module() -> None:
    project = pyproject()["project"]
    entry_point = "audit.integrations.pytest_plugin.plugin"
    assert project["entry-points"]["pytest11"] == {"repro_audit": entry_point}


def test_loading_the_plugin_imports_no_torch() -> None:
    code = "import sys, audit.integrations.pytest_plugin.plugin; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    assert out.strip() == "False"
