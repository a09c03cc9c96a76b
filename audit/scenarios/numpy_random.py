"""Family `numpy`: numpy's random streams, converted to torch tensors.

`RandomState` and the `np.random.*` module functions are frozen by numpy's policy (NEP 19);
`Generator` methods may change between numpy releases, and each bit generator (PCG64,
PCG64DXSM, Philox, SFC64, MT19937) is its own stream. Integers are widened to int64, so a
platform whose default integer is 32-bit (Windows, numpy 1.x) hashes the same values alike.
These scenarios do not use a torch device.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from audit.scenarios.context import Context
from audit.scenarios.registry import scenario

SEED = 20240607
LARGE = 2**16


def as_tensor(values: Any) -> torch.Tensor:
    """A numpy result as a tensor: floats as they are, integers and bools as int64.

    uint64 keeps its bits (viewed as int64), since int64 cannot hold values past 2**63.
    """
    array = np.ascontiguousarray(values)
    if array.dtype == np.uint64:
        array = array.view(np.int64)
    elif array.dtype.kind in "biu":
        array = array.astype(np.int64)
    return torch.from_numpy(array)


def _generator_outputs(make: Any) -> dict[str, torch.Tensor]:
    """The draws every Generator scenario records; `make()` returns a fresh bit generator."""
    raw = make().random_raw(8)
    generator = np.random.Generator(make())
    return {
        "raw": as_tensor(raw),
        "random_small": as_tensor(generator.random(12)),
        "random_large": as_tensor(generator.random(LARGE)),
        "standard_normal": as_tensor(generator.standard_normal(LARGE)),
        "integers": as_tensor(generator.integers(0, 1000, 64)),
        "integers_wide": as_tensor(generator.integers(-(2**62), 2**62, 64)),
        "exponential": as_tensor(generator.exponential(2.0, 64)),
        "gamma": as_tensor(generator.gamma(0.7, 1.0, 64)),
        "float32": as_tensor(generator.random(64, dtype=np.float32)),
    }


@scenario(
    "numpy.default_rng",
    "np.random.default_rng(seed) (PCG64): raw words, uniforms, normals, integers",
    devices=("cpu",),
)
def default_rng(ctx: Context) -> dict[str, torch.Tensor]:
    """numpy's recommended generator; `raw` is PCG64's own output words."""
    outputs = _generator_outputs(lambda: np.random.PCG64(SEED))
    outputs["default_rng_random"] = as_tensor(np.random.default_rng(SEED).random(12))
    return outputs


@scenario(
    "numpy.pcg64dxsm",
    "np.random.Generator(np.random.PCG64DXSM(seed)) (numpy 1.21 and later)",
    devices=("cpu",),
)
def pcg64dxsm(ctx: Context) -> dict[str, torch.Tensor]:
    """The DXSM variant of PCG64 numpy plans as its next default."""
    ctx.require(hasattr(np.random, "PCG64DXSM"), f"numpy {np.__version__} has no PCG64DXSM")
    return _generator_outputs(lambda: np.random.PCG64DXSM(SEED))


@scenario("numpy.philox", "np.random.Generator(np.random.Philox(seed))", devices=("cpu",))
def philox(ctx: Context) -> dict[str, torch.Tensor]:
    """Philox, the counter-based generator (the family CUDA's torch RNG uses)."""
    return _generator_outputs(lambda: np.random.Philox(SEED))


@scenario("numpy.sfc64", "np.random.Generator(np.random.SFC64(seed))", devices=("cpu",))
def sfc64(ctx: Context) -> dict[str, torch.Tensor]:
    """SFC64, the small fast chaotic generator."""
    return _generator_outputs(lambda: np.random.SFC64(SEED))


@scenario(
    "numpy.mt19937_generator",
    "np.random.Generator(np.random.MT19937(seed)): SeedSequence seeding, new methods",
    devices=("cpu",),
)
def mt19937_generator(ctx: Context) -> dict[str, torch.Tensor]:
    """MT19937 under Generator (seeded through SeedSequence, unlike RandomState)."""
    return _generator_outputs(lambda: np.random.MT19937(SEED))


@scenario(
    "numpy.random_state",
    "Legacy np.random.RandomState(seed): a stream numpy promises never to change",
    devices=("cpu",),
)
def random_state(ctx: Context) -> dict[str, torch.Tensor]:
    """RandomState draws from the frozen legacy stream."""
    state = np.random.RandomState(SEED)
    return {
        "random_sample": as_tensor(state.random_sample(12)),
        "random_sample_large": as_tensor(state.random_sample(LARGE)),
        "standard_normal": as_tensor(state.standard_normal(LARGE)),
        "randint": as_tensor(state.randint(0, 1000, 64, dtype=np.int64)),
        "randint_int64": as_tensor(state.randint(-(2**62), 2**62, 64, dtype=np.int64)),
        "gamma": as_tensor(state.gamma(0.7, 1.0, 64)),
        "binomial": as_tensor(state.binomial(20, 0.3, 64)),
        "poisson": as_tensor(state.poisson(4.0, 64)),
    }


@scenario(
    "numpy.global_seed",
    "np.random.seed(seed), then np.random.rand / randn / randint / choice",
    devices=("cpu",),
)
def global_seed(ctx: Context) -> dict[str, torch.Tensor]:
    """The module-level functions after np.random.seed (the global legacy RandomState)."""
    np.random.seed(SEED)
    return {
        "rand": as_tensor(np.random.rand(12)),
        "randn": as_tensor(np.random.randn(64)),
        "randint": as_tensor(np.random.randint(0, 1000, 64)),
        "choice": as_tensor(np.random.choice(100, 16)),
    }


@scenario(
    "numpy.shuffle_permutation_choice",
    "shuffle, permutation and choice (with and without replacement, weighted), new and legacy",
    devices=("cpu",),
)
def shuffle_permutation_choice(ctx: Context) -> dict[str, torch.Tensor]:
    """Reordering and choosing, with a Generator and with RandomState."""
    weights = np.arange(1, 21, dtype=np.float64)
    weights /= weights.sum()
    outputs = {}
    for name, rng in (
        ("generator", np.random.default_rng(SEED)),
        ("legacy", np.random.RandomState(SEED)),
    ):
        shuffled = np.arange(50)
        rng.shuffle(shuffled)
        outputs[name] = {
            "shuffle": as_tensor(shuffled),
            "permutation": as_tensor(rng.permutation(50)),
            "permutation_large": as_tensor(rng.permutation(LARGE)),
            "choice_replace": as_tensor(rng.choice(20, 30, replace=True)),
            "choice_no_replace": as_tensor(rng.choice(20, 10, replace=False)),
            "choice_weighted": as_tensor(rng.choice(20, 30, p=weights)),
        }
    return outputs


@scenario(
    "numpy.seed_sequence",
    "np.random.SeedSequence: generate_state, spawned children, seeding from a list",
    devices=("cpu",),
)
def seed_sequence(ctx: Context) -> dict[str, torch.Tensor]:
    """How numpy turns seeds into bit-generator state (entropy mixing, spawning)."""
    sequence = np.random.SeedSequence(SEED)
    children = sequence.spawn(2)
    return {
        "generate_state": as_tensor(sequence.generate_state(8)),
        "generate_state_uint64": as_tensor(sequence.generate_state(4, dtype=np.uint64)),
        "children": [as_tensor(child.generate_state(4)) for child in children],
        "list_seed": as_tensor(np.random.default_rng([1, 2, 3]).random(8)),
    }
