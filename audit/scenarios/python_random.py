"""Family `python`: the standard library's `random` (Mersenne Twister), as torch tensors.

Python floats become float64 tensors and Python ints int64 tensors. Its streams depend on the
Python version, not on torch: these scenarios show whether a Python upgrade moved them.
They do not use a torch device.
"""

from __future__ import annotations

import random
from typing import Any, Callable, List

import torch

from audit.scenarios.context import Context
from audit.scenarios.registry import scenario

SEED = 20240607
COUNT = 16


def floats(values: List[float]) -> torch.Tensor:
    """Python floats as a float64 tensor (exact)."""
    return torch.tensor(values, dtype=torch.float64)


def ints(values: List[int]) -> torch.Tensor:
    """Python ints (each within int64) as an int64 tensor."""
    return torch.tensor(values, dtype=torch.int64)


def _draws(rng: Any) -> dict[str, torch.Tensor]:
    """The core draws, from a `random.Random` instance or the `random` module itself."""

    def repeat(draw: Callable[[], Any]) -> List[Any]:
        return [draw() for _ in range(COUNT)]

    shuffled = list(range(20))
    rng.shuffle(shuffled)
    return {
        "random": floats(repeat(rng.random)),
        "randint": ints(repeat(lambda: rng.randint(0, 1000))),
        "shuffle": ints(shuffled),
        "choice": ints(repeat(lambda: rng.choice(range(100)))),
        "gauss": floats(repeat(lambda: rng.gauss(0.0, 1.0))),
        "uniform": floats(repeat(lambda: rng.uniform(-2.0, 3.0))),
        "getrandbits32": ints(repeat(lambda: rng.getrandbits(32))),
    }


@scenario(
    "python.random_instance",
    "random.Random(seed): random, randint, shuffle, choice, gauss, uniform, getrandbits",
    devices=("cpu",),
)
def random_instance(ctx: Context) -> dict[str, torch.Tensor]:
    """A private Random instance's stream."""
    return _draws(random.Random(SEED))


@scenario(
    "python.module_seed",
    "random.seed(seed), then the module-level random functions",
    devices=("cpu",),
)
def module_seed(ctx: Context) -> dict[str, torch.Tensor]:
    """The hidden global Random instance after random.seed (same stream as Random(seed))."""
    random.seed(SEED)
    return _draws(random)


@scenario(
    "python.seed_types",
    "random.Random seeded with a str, bytes, a negative int and an int past 2**64",
    devices=("cpu",),
)
def seed_types(ctx: Context) -> dict[str, torch.Tensor]:
    """How seeds become state: a str as its UTF-8 bytes (SHA-512 appended), ints by |seed|."""
    seeds = {"str": "repro-audit", "bytes": b"repro-audit", "negative": -SEED, "big": 2**64 + SEED}
    outputs = {}
    for name, seed in seeds.items():
        rng = random.Random(seed)
        outputs[name] = floats([rng.random() for _ in range(8)])
    return outputs


@scenario(
    "python.sample_choices",
    "random.sample, random.choices (plain, weighted), a randrange past 2**53, variates",
    devices=("cpu",),
)
def sample_choices(ctx: Context) -> dict[str, torch.Tensor]:
    """Sampling helpers built on random() and getrandbits()."""
    rng = random.Random(SEED)
    return {
        "sample": ints(rng.sample(range(100), 10)),
        "choices": ints(rng.choices(range(10), k=20)),
        "choices_weighted": ints(rng.choices(range(5), weights=[5, 1, 3, 2, 4], k=20)),
        "randrange_wide": ints([rng.randrange(10**15) for _ in range(COUNT)]),
        "expovariate": floats([rng.expovariate(1.5) for _ in range(COUNT)]),
        "betavariate": floats([rng.betavariate(0.5, 2.5) for _ in range(COUNT)]),
        "triangular": floats([rng.triangular(0.0, 1.0, 0.2) for _ in range(COUNT)]),
    }


@scenario(
    "python.getstate",
    "random.Random(seed).getstate(): the 624 Mersenne Twister words and position",
    devices=("cpu",),
)
def getstate(ctx: Context) -> dict[str, torch.Tensor]:
    """The internal state tuple after seeding, and after 100 draws."""
    rng = random.Random(SEED)
    seeded = rng.getstate()
    for _ in range(100):
        rng.random()
    after = rng.getstate()
    return {
        "version": ints([seeded[0]]),
        "seeded": ints(list(seeded[1])),
        "after_draws": ints(list(after[1])),
    }
