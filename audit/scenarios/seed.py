"""Family `seed`: what seeding torch does, starting with the classic lesson.

`torch.manual_seed(246)` followed by two `torch.rand(3, 4)` calls is the example many
reproducibility tutorials print; its published values are kept as references here.
`torch.seed()` and an unseeded `torch.initial_seed()` draw from OS entropy and are not used.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from audit.scenarios.context import Context
from audit.scenarios.registry import Unavailable, scenario

LESSON_SOURCE = (
    "PyTorch reproducibility lesson: torch.manual_seed(246) then torch.rand(3, 4) twice, "
    "printed to 4 decimals (CPU)"
)
LESSON_FIRST = [
    [0.7902, 0.9813, 0.5914, 0.3650],
    [0.7470, 0.6896, 0.8815, 0.7708],
    [0.7810, 0.2139, 0.1007, 0.5230],
]
LESSON_SECOND = [
    [0.3128, 0.8854, 0.6202, 0.9351],
    [0.4072, 0.3055, 0.3805, 0.4427],
    [0.0846, 0.1081, 0.6236, 0.3008],
]


@scenario(
    "seed.manual_seed_246_rand",
    "The classic lesson: torch.manual_seed(246), then torch.rand(3, 4) twice (CPU)",
    devices=("cpu",),
    references={
        "first": {"source": LESSON_SOURCE, "decimals": 4, "values": LESSON_FIRST},
        "second": {"source": LESSON_SOURCE, "decimals": 4, "values": LESSON_SECOND},
    },
)
def manual_seed_246_rand(ctx: Context) -> dict[str, torch.Tensor]:
    """Seed once, draw twice: the two draws differ, and both repeat run to run."""
    torch.manual_seed(246)
    first = torch.rand(3, 4)
    second = torch.rand(3, 4)
    return {"first": first, "second": second}


@scenario(
    "seed.reseed_each_call",
    "torch.manual_seed(246) before each of two torch.rand(3, 4): both draws are identical",
)
def reseed_each_call(ctx: Context) -> dict[str, torch.Tensor]:
    """Reseeding restarts the stream, so both outputs are the same tensor."""
    torch.manual_seed(246)
    first = torch.rand(3, 4, device=ctx.device)
    torch.manual_seed(246)
    second = torch.rand(3, 4, device=ctx.device)
    return {"first": first, "second": second}


@scenario(
    "seed.torch_seed_functions",
    "torch.manual_seed, torch.random.manual_seed and a seeded Generator give one stream",
)
def torch_seed_functions(ctx: Context) -> dict[str, torch.Tensor]:
    """The same seed through each seeding entry point, and initial_seed() once seeded."""
    torch.manual_seed(7)
    via_torch = torch.rand(16, device=ctx.device)
    initial = torch.tensor([torch.initial_seed()], dtype=torch.int64)
    torch.random.manual_seed(7)
    via_random = torch.rand(16, device=ctx.device)
    via_generator = torch.rand(16, device=ctx.device, generator=ctx.generator(7))
    return {
        "manual_seed": via_torch,
        "random_manual_seed": via_random,
        "generator": via_generator,
        "initial_seed": initial,
    }


# Seeds at the edges of what manual_seed accepts. The CPU Mersenne Twister keeps only the
# low 32 bits, so 2**32 + 5 gives the stream of 5 there; CUDA's Philox keeps all 64.
EDGE_SEEDS = {
    "zero": 0,
    "s5": 5,
    "s2p32_plus5": 2**32 + 5,
    "s2p63_plus1": 2**63 + 1,
    "s2p64_minus1": 2**64 - 1,
}


@scenario(
    "seed.seed_values",
    "torch.manual_seed with 0, 5, 2**32+5, 2**63+1 and 2**64-1, then torch.rand(8)",
)
def seed_values(ctx: Context) -> dict[str, torch.Tensor]:
    """One short draw per edge seed (which bits of a 64-bit seed a device uses)."""
    outputs = {}
    for name, seed in EDGE_SEEDS.items():
        torch.manual_seed(seed)
        outputs[name] = torch.rand(8, device=ctx.device)
    return outputs


def _fork_rng(ctx: Context) -> Any:
    """`torch.random.fork_rng` forking the CPU generator and this context's device's."""
    device = torch.device(ctx.device)
    if device.type == "cpu":
        return torch.random.fork_rng(devices=[])
    index = device.index
    if index is None:  # "cuda" means the current device of that type
        index = getattr(torch, device.type).current_device()
    if device.type == "cuda":
        return torch.random.fork_rng(devices=[index])
    if "device_type" not in inspect.signature(torch.random.fork_rng).parameters:
        raise Unavailable(f"torch {torch.__version__} fork_rng has no device_type argument")
    return torch.random.fork_rng(devices=[index], device_type=device.type)


@scenario(
    "seed.fork_rng",
    "torch.random.fork_rng: reseeding and drawing inside the fork leaves the outer stream",
)
def fork_rng(ctx: Context) -> dict[str, torch.Tensor]:
    """Outer draw, forked draw with another seed, outer draw again (continues the stream)."""
    torch.manual_seed(5)
    outer_first = torch.rand(3, 4, device=ctx.device)
    with _fork_rng(ctx):
        torch.manual_seed(99)
        inner = torch.rand(3, 4, device=ctx.device)
    outer_second = torch.rand(3, 4, device=ctx.device)
    return {"outer_first": outer_first, "inner": inner, "outer_second": outer_second}
