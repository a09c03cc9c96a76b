"""Each setting says why a requested value did not take effect (Setting.not_applied), and
config stays torch-free while its settings apply and read back through torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from audit.config.settings import SETTINGS

ROOT = Path(__file__).resolve().parents[2]


def test_not_applied() -> None:
    assert SETTINGS["threads"].not_applied("4", "4") is None
    assert SETTINGS["threads"].not_applied("4", None) is None
    assert SETTINGS["cpu_capability"].not_applied("auto", "avx512") is None
    assert SETTINGS["mkl_cbwr"].not_applied("avx2", "auto") == (
        "mkl_cbwr avx2 did not take effect here (auto in effect; MKL takes branches other "
        "than auto and compatible on Intel CPUs only)")


def test_config_imports_no_torch() -> None:
    code = ("import sys, audit.config.settings, audit.config.matrix; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
