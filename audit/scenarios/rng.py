"""Family `rng`: torch's random entry points, each at a small and a large size.

Kernels switch paths with size (CPU: scalar below 16 elements, vectorised above; CUDA: grid
and unroll choices), so `small` (3 x 4) and `large` (2**20 elements) are separate outputs.
The global generator is reseeded before every output, so one output never shifts another;
`generator_*` outputs draw from an explicit `torch.Generator` on the scenario's device.
"""

from __future__ import annotations

from typing import Any, Callable, Tuple

import torch

from audit.scenarios.context import Context
from audit.scenarios.registry import Unavailable, scenario

SMALL = (3, 4)
LARGE = (2**20,)
SIZES = {"small": SMALL, "large": LARGE}

Draw = Callable[[Tuple[int, ...], Any], torch.Tensor]  # (size, generator or None)


def _both_generators(ctx: Context, seed: int, draw: Draw) -> dict[str, torch.Tensor]:
    """`draw(size, generator)` at each size: global generator, then an explicit one."""
    outputs = {}
    for name, size in SIZES.items():
        torch.manual_seed(seed)
        outputs[name] = draw(size, None)
    for name, size in SIZES.items():
        outputs[f"generator_{name}"] = draw(size, ctx.generator(seed))
    return outputs


def _inplace(ctx: Context, seed: int, method: str, *args: float) -> dict[str, torch.Tensor]:
    """An in-place sampler (`Tensor.exponential_` ...) at both sizes, both generators."""

    def draw(size: tuple[int, ...], generator: Any) -> torch.Tensor:
        tensor = torch.empty(size, device=ctx.device)
        return getattr(tensor, method)(*args, generator=generator)

    return _both_generators(ctx, seed, draw)


@scenario("rng.rand", "torch.rand: uniform [0, 1) float32")
def rand(ctx: Context) -> dict[str, torch.Tensor]:
    """torch.rand at both sizes."""
    return _both_generators(
        ctx, 1, lambda size, g: torch.rand(size, device=ctx.device, generator=g)
    )


@scenario("rng.randn", "torch.randn: standard normal float32")
def randn(ctx: Context) -> dict[str, torch.Tensor]:
    """torch.randn at both sizes."""
    return _both_generators(
        ctx, 2, lambda size, g: torch.randn(size, device=ctx.device, generator=g)
    )


@scenario("rng.randint", "torch.randint: int64 in [0, 1000) and in a range wider than 2**32")
def randint(ctx: Context) -> dict[str, torch.Tensor]:
    """torch.randint; a range past 2**32 takes the 64-bit draw path."""
    outputs = _both_generators(
        ctx, 3, lambda size, g: torch.randint(0, 1000, size, device=ctx.device, generator=g)
    )
    for name, size in SIZES.items():
        torch.manual_seed(3)
        outputs[f"wide_{name}"] = torch.randint(-(2**40), 2**40, size, device=ctx.device)
    return outputs


@scenario("rng.randperm", "torch.randperm: permutations of 10, 1000 and 2**20")
def randperm(ctx: Context) -> dict[str, torch.Tensor]:
    """torch.randperm at three lengths, global generator and an explicit one."""
    outputs = {}
    for n in (10, 1000, 2**20):
        torch.manual_seed(4)
        outputs[f"n{n}"] = torch.randperm(n, device=ctx.device)
        outputs[f"generator_n{n}"] = torch.randperm(
            n, device=ctx.device, generator=ctx.generator(4)
        )
    return outputs


@scenario(
    "rng.randperm_huge",
    "torch.randperm(2**24 + 1): a length past 2**24, where float keys stop being exact",
    devices=("cuda", "mps"),
)
def randperm_huge(ctx: Context) -> dict[str, torch.Tensor]:
    """One permutation of 2**24 + 1 elements (128 MiB of int64).

    Accelerators only: their randperm sorts random keys, and the key width changes with
    the length. The CPU's is one sequential Fisher-Yates for every length below
    2**32 / 20 (aten's randperm_cpu), the loop rng.randperm runs at 2**20, so this
    length adds nothing there but time: it gave one digest under every setting, machine
    and release audited (docs/benchmarks.md has its cost).
    """
    torch.manual_seed(5)
    return {"perm": torch.randperm(2**24 + 1, device=ctx.device)}


@scenario("rng.normal", "torch.normal with tensor and scalar parameters, and Tensor.normal_")
def normal(ctx: Context) -> dict[str, torch.Tensor]:
    """The three normal entry points at both sizes."""
    outputs = {}
    for name, size in SIZES.items():
        mean = ctx.fixed(*size, seed=60)
        std = ctx.fixed(*size, seed=61, kind="uniform") + 0.5
        torch.manual_seed(6)
        outputs[f"tensor_params_{name}"] = torch.normal(mean, std)
        outputs[f"generator_tensor_params_{name}"] = torch.normal(
            mean, std, generator=ctx.generator(6)
        )
        torch.manual_seed(6)
        outputs[f"scalar_params_{name}"] = torch.normal(2.0, 3.0, size, device=ctx.device)
        torch.manual_seed(6)
        outputs[f"inplace_{name}"] = torch.empty(size, device=ctx.device).normal_(-1.0, 0.5)
    return outputs


@scenario("rng.bernoulli", "torch.bernoulli with a tensor of p, and Tensor.bernoulli_(0.3)")
def bernoulli(ctx: Context) -> dict[str, torch.Tensor]:
    """Tensor p and scalar p (separate kernels on CPU), at both sizes."""
    outputs = {}
    for name, size in SIZES.items():
        p = ctx.fixed(*size, seed=70, kind="uniform")
        torch.manual_seed(7)
        outputs[f"tensor_p_{name}"] = torch.bernoulli(p)
        outputs[f"generator_tensor_p_{name}"] = torch.bernoulli(p, generator=ctx.generator(7))
        torch.manual_seed(7)
        outputs[f"scalar_p_{name}"] = torch.empty(size, device=ctx.device).bernoulli_(0.3)
        outputs[f"generator_scalar_p_{name}"] = torch.empty(size, device=ctx.device).bernoulli_(
            0.3, generator=ctx.generator(7)
        )
    return outputs


@scenario(
    "rng.multinomial",
    "torch.multinomial with and without replacement, one and many samples, 10 and 4096 classes",
)
def multinomial(ctx: Context) -> dict[str, torch.Tensor]:
    """Sampling paths of multinomial: one sample, many with and without replacement."""
    small = ctx.fixed(8, 10, seed=80, kind="uniform") + 0.01
    large = ctx.fixed(64, 4096, seed=81, kind="uniform") + 0.01
    cases = {
        "one_sample": (small, 1, False),
        "with_replacement": (small, 20, True),
        "without_replacement": (small, 10, False),
        "large_one_sample": (large, 1, False),
        "large_with_replacement": (large, 4096, True),
        "large_without_replacement": (large, 1024, False),
    }
    outputs = {}
    for name, (probs, samples, replacement) in cases.items():
        torch.manual_seed(8)
        outputs[name] = torch.multinomial(probs, samples, replacement)
    outputs["generator_large_with_replacement"] = torch.multinomial(
        large, 4096, True, generator=ctx.generator(8)
    )
    return outputs


@scenario("rng.exponential", "Tensor.exponential_(1.5)")
def exponential(ctx: Context) -> dict[str, torch.Tensor]:
    """exponential_ at both sizes."""
    return _inplace(ctx, 9, "exponential_", 1.5)


@scenario("rng.geometric", "Tensor.geometric_(0.3)")
def geometric(ctx: Context) -> dict[str, torch.Tensor]:
    """geometric_ at both sizes."""
    return _inplace(ctx, 10, "geometric_", 0.3)


@scenario("rng.cauchy", "Tensor.cauchy_(0, 1)")
def cauchy(ctx: Context) -> dict[str, torch.Tensor]:
    """cauchy_ at both sizes."""
    return _inplace(ctx, 11, "cauchy_", 0.0, 1.0)


@scenario("rng.log_normal", "Tensor.log_normal_(0, 0.5)")
def log_normal(ctx: Context) -> dict[str, torch.Tensor]:
    """log_normal_ at both sizes."""
    return _inplace(ctx, 12, "log_normal_", 0.0, 0.5)


@scenario("rng.uniform", "Tensor.uniform_(-2, 3)")
def uniform(ctx: Context) -> dict[str, torch.Tensor]:
    """uniform_ with bounds at both sizes."""
    return _inplace(ctx, 13, "uniform_", -2.0, 3.0)


@scenario("rng.random_", "Tensor.random_() on int64 and Tensor.random_(0, 100) on float32")
def random_(ctx: Context) -> dict[str, torch.Tensor]:
    """random_ over the full int64 range and over a bounded range."""
    outputs = {}
    for name, size in SIZES.items():
        torch.manual_seed(14)
        outputs[f"int64_{name}"] = torch.empty(size, dtype=torch.int64, device=ctx.device).random_()
        torch.manual_seed(14)
        outputs[f"bounded_{name}"] = torch.empty(size, device=ctx.device).random_(0, 100)
    return outputs


@scenario("rng.poisson", "torch.poisson with rates in [0, 20)")
def poisson(ctx: Context) -> dict[str, torch.Tensor]:
    """Poisson draws for small and large rates (two algorithms) at both sizes."""
    rates = {size: ctx.fixed(*size, seed=150, kind="uniform") * 20 for size in SIZES.values()}
    return _both_generators(ctx, 15, lambda size, g: torch.poisson(rates[size], g))


@scenario("rng.like", "torch.rand_like, torch.randn_like and torch.randint_like")
def like(ctx: Context) -> dict[str, torch.Tensor]:
    """The *_like samplers (global generator) at both sizes."""
    outputs = {}
    for name, size in SIZES.items():
        template = torch.zeros(size, device=ctx.device)
        torch.manual_seed(16)
        outputs[f"rand_like_{name}"] = torch.rand_like(template)
        torch.manual_seed(16)
        outputs[f"randn_like_{name}"] = torch.randn_like(template)
        torch.manual_seed(16)
        outputs[f"randint_like_{name}"] = torch.randint_like(template, 0, 1000)
    return outputs


def _dtype_draws(ctx: Context, dtype_name: str, seed: int) -> dict[str, torch.Tensor]:
    """rand and randn in one floating dtype at both sizes, unavailable where unsupported."""
    dtype = getattr(torch, dtype_name)
    outputs = {}
    for name, size in SIZES.items():
        for sampler in ("rand", "randn"):
            torch.manual_seed(seed)
            try:
                value = getattr(torch, sampler)(size, dtype=dtype, device=ctx.device)
            except (RuntimeError, NotImplementedError) as error:
                # "normal_kernel_cpu" not implemented for 'Half' (older torch), or an MPS gap.
                if "not implemented" not in str(error).lower():
                    raise
                raise Unavailable(f"{sampler} in {dtype_name}: {error}") from None
            outputs[f"{sampler}_{name}"] = value
    return outputs


@scenario("rng.dtype_float16", "torch.rand and torch.randn in float16")
def dtype_float16(ctx: Context) -> dict[str, torch.Tensor]:
    """Half-precision draws at both sizes."""
    return _dtype_draws(ctx, "float16", 17)


@scenario("rng.dtype_bfloat16", "torch.rand and torch.randn in bfloat16")
def dtype_bfloat16(ctx: Context) -> dict[str, torch.Tensor]:
    """bfloat16 draws at both sizes."""
    return _dtype_draws(ctx, "bfloat16", 18)


@scenario("rng.dtype_float64", "torch.rand and torch.randn in float64")
def dtype_float64(ctx: Context) -> dict[str, torch.Tensor]:
    """Double-precision draws at both sizes (a different bit recipe from float32)."""
    return _dtype_draws(ctx, "float64", 19)


@scenario(
    "rng.distributions",
    "torch.distributions samples: Normal, Categorical, Dirichlet, Gamma, Beta, MultivariateNormal",
)
def distributions(ctx: Context) -> dict[str, torch.Tensor]:
    """`.sample()` of common distributions (global generator) at a small and a large count."""
    from torch import distributions as D

    def tensor(values: list[Any]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.float32, device=ctx.device)

    covariance = tensor([[2.0, 0.5, 0.0], [0.5, 1.0, 0.3], [0.0, 0.3, 0.5]])
    cases = {
        "normal": (D.Normal(tensor(1.0), tensor(2.0)), 2**20),
        "categorical": (D.Categorical(probs=tensor([0.1, 0.2, 0.3, 0.15, 0.25])), 2**18),
        "dirichlet": (D.Dirichlet(tensor([0.5, 1.0, 2.0, 4.0])), 2**16),
        "gamma": (D.Gamma(tensor(0.7), tensor(2.0)), 2**16),
        "beta": (D.Beta(tensor(0.5), tensor(2.5)), 2**16),
        "multivariate_normal": (
            D.MultivariateNormal(tensor([0.0, 1.0, -1.0]), covariance_matrix=covariance),
            2**16,
        ),
    }
    outputs = {}
    for name, (distribution, count) in cases.items():
        for label, shape in (("small", (12,)), ("large", (count,))):
            torch.manual_seed(20)
            outputs[f"{name}_{label}"] = distribution.sample(shape)
    return outputs
