"""What the scenario tests share: run a built-in scenario the way the runner does."""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest
import torch

from audit.capture.hashing import digest
from audit.run.plan import unavailable_reason
from audit.run.unit_runs import run_once, scramble_rng_states
from audit.scenarios.context import Context
from audit.scenarios.registry import Scenario, Unavailable, all_scenarios

CPU = Context(device="cpu")


class Families:
    """Built-in families and the scenarios they register, run by name.

    `Families("rng", numpy="numpy_random")`: the family `rng` is the module
    audit.scenarios.rng, the family `numpy` the module audit.scenarios.numpy_random.
    """

    def __init__(self, *families: str, **modules: str) -> None:
        named = {**{family: family for family in families}, **modules}
        self.modules: dict[str, ModuleType] = {
            family: importlib.import_module(f"audit.scenarios.{module}")
            for family, module in named.items()}
        sources = {module.__name__ for module in self.modules.values()}
        self.scenarios: dict[str, Scenario] = {
            name: item for name, item in all_scenarios().items() if item.source in sources}

    def run(self, name: str) -> dict[str, torch.Tensor]:
        """One run of scenario `name` on CPU, as the runner does it (RNG states scrambled)."""
        return run(self.scenarios[name])


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


__all__ = ["CPU", "Families", "digests", "run", "scramble_rng_states", "skip_unless_runnable"]
