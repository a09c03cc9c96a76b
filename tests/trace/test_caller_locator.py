"""Which frame is the user's code (audit.trace.frames): the source line of a traced op."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from audit.trace.frames import CallerLocator

AUDIT = Path(__file__).resolve().parents[2] / "audit"
TORCH = os.path.dirname(os.path.abspath(torch.__file__))


def test_torch_audit_and_scenario_plumbing_are_not_user_code() -> None:
    locator = CallerLocator(TORCH)
    assert locator.judge(os.path.join(TORCH, "nn", "modules", "linear.py")) is None
    assert locator.judge(str(AUDIT / "trace" / "recorder.py")) is None
    assert locator.judge(str(AUDIT / "scenarios" / "context.py")) is None
    assert locator.judge(os.__file__) is None  # the standard library
    assert locator.judge(str(AUDIT / "scenarios" / "train.py")) == "train.py"
    assert locator.judge(__file__) == "test_caller_locator.py"


def test_the_first_user_frame_outwards_is_located() -> None:
    locator = CallerLocator(TORCH)
    line = sys._getframe().f_lineno + 1
    assert locator.locate(sys._getframe()) == f"test_caller_locator.py:{line}"
    assert locator.names[__file__] == "test_caller_locator.py"  # judged once, remembered
    assert locator.locate(None) is None
