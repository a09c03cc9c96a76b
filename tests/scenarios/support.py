"""What the scenario tests share: run a built-in scenario the way the runner does."""

from __future__ import annotations

import importlib

import pytest
import torch

from audit.capture.hashing import digest
from audit.run.plan import unavailable_reason
from audit.run.unit_runs import run_once, scramble_rng_states
from audit.scenarios.context import Context
from audit.scenarios.registry import Scenario, Unavailable, all_scenarios

CPU = Context(device="cpu")


def family_scenarios(*modules: str) -> dict[str, Scenario]:
    """The scenarios registered by the given modules of audit.scenarios ('rng', 'ops')."""
    names = {importlib.import_module(f"audit.scenarios.{module}").__name__ for module in modules}
    return {name: item for name, item in all_scenarios().items() if item.source in names}


def skip_unless_runnable(scenario: Scenario, context: Context = CPU) -> None:
    """Skip where the runner would plan an `unavailable` cell (torch too old, package absent)."""
    reason = unavailable_reason(scenario, context.device, {context.device: None},
                                torch.__version__)
    if reason:
        pytest.skip(f"{scenario.name} unavailable under torch {torch.__version__}: {reason}")


def run(scenario: Scenario, context: Context = CPU) -> dict[str, torch.Tensor]:
    """One run after the runner's own scrambling of every global RNG, flattened.

    A scenario this torch cannot run (an old torch without a kernel) is skipped with the
    reason the audit would record for its cell.
    """
    skip_unless_runnable(scenario, context)
    try:
        return run_once(scenario.function, context, scenario.name)
    except Unavailable as reason:
        pytest.skip(f"{scenario.name} unavailable under torch {torch.__version__}: {reason}")


def digests(outputs: dict[str, torch.Tensor]) -> dict[str, str]:
    return {name: digest(tensor) for name, tensor in outputs.items()}


__all__ = ["CPU", "digests", "family_scenarios", "run", "scramble_rng_states",
           "skip_unless_runnable"]
