"""Family `ops`: single operators on fixed inputs, forward and (where there is one) backward.

Inputs come from `ctx.fixed` (numpy's frozen stream), never from torch's RNG, so an op's
result changes only when the op does. Gradients are taken of a fixed-weight sum
(`(out * w).sum()`), so that they are not all ones and depend on every output element.
Sizes are chosen so that the vectorised and multi-threaded kernels are taken, yet a pass
over the family stays well under a second or two on a small CPU.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from audit.scenarios.context import Context
from audit.scenarios.registry import Unavailable, scenario

Tensor = torch.Tensor
LARGE = 2 ** 22  # elements of the big reduction vector: many threads' worth of chunks
ELEMENTWISE = 2 ** 20  # elements of the big elementwise vector
GRAD_WEIGHT_SEED = 99
DROPOUT_SEED = 0


def forward_backward(ctx: Context, fn: Callable[..., Tensor], *inputs: Tensor) -> dict[str, Tensor]:
    """`fn(*inputs)` and the gradient of a fixed-weight sum of it for every input.

    Inputs are copied into fresh leaves, so a scenario may reuse them; returns
    {"out": ..., "grad.0": ..., "grad.1": ...} (grad.i for the i-th input).
    """
    leaves = [tensor.detach().clone().requires_grad_() for tensor in inputs]
    out = fn(*leaves)
    weight = ctx.fixed(*out.shape, dtype=out.dtype, seed=GRAD_WEIGHT_SEED)
    (out * weight).sum().backward()
    grads = {f"grad.{i}": leaf.grad for i, leaf in enumerate(leaves) if leaf.grad is not None}
    return {"out": out.detach(), **grads}


def unavailable_dtype(error: Exception, dtype: torch.dtype) -> Unavailable | None:
    """An `Unavailable` when `error` says this build or device lacks `dtype` for the op."""
    text = str(error)
    lacking = ("not implemented for", "not supported", "only supported")
    if any(phrase in text for phrase in lacking):
        return Unavailable(f"{dtype} matmul: {text.splitlines()[0]}")
    return None


def indices(ctx: Context, n: int, high: int, seed: int) -> Tensor:
    """`n` int64 indices in [0, high) from the fixed uniform stream (wider than kind='int')."""
    values = ctx.fixed(n, kind="uniform", seed=seed) * high
    return values.long().clamp_(0, high - 1)


# --- matmul family: one scenario per dtype, so a dtype an old torch or a device lacks makes
# only its own cells unavailable (older torch releases lack float16 matmul on CPU).


def matmul_family(ctx: Context, dtype: torch.dtype) -> dict[str, Any]:
    """matmul, bmm and addmm in `dtype`, forward and input gradients."""

    def fixed(*shape: int, seed: int) -> Tensor:
        return ctx.fixed(*shape, dtype=dtype, seed=seed)

    try:
        return {
            "matmul": forward_backward(ctx, torch.matmul, fixed(256, 256, seed=1),
                                       fixed(256, 256, seed=2)),
            "bmm": forward_backward(ctx, torch.bmm, fixed(8, 128, 128, seed=3),
                                    fixed(8, 128, 128, seed=4)),
            "addmm": forward_backward(ctx, torch.addmm, fixed(256, seed=5),
                                      fixed(256, 256, seed=6), fixed(256, 256, seed=7)),
        }
    except (RuntimeError, TypeError) as error:
        reason = unavailable_dtype(error, dtype)
        if reason is None:
            raise
        raise reason from error


@scenario("ops.matmul_float32", "matmul 256x256, bmm 8x128x128, addmm 256x256 in float32 + grads")
def matmul_float32(ctx: Context) -> dict[str, Any]:
    return matmul_family(ctx, torch.float32)


@scenario("ops.matmul_float16", "matmul, bmm, addmm in float16 + grads (old torch: not on CPU)")
def matmul_float16(ctx: Context) -> dict[str, Any]:
    return matmul_family(ctx, torch.float16)


@scenario("ops.matmul_bfloat16", "matmul, bmm, addmm in bfloat16 + grads")
def matmul_bfloat16(ctx: Context) -> dict[str, Any]:
    return matmul_family(ctx, torch.bfloat16)


# --- convolutions and normalisations


@scenario("ops.conv2d", "F.conv2d 8x16x32x32 * 32x16x3x3 + bias, grads of input, weight, bias")
def conv2d(ctx: Context) -> dict[str, Tensor]:
    return forward_backward(
        ctx, lambda x, w, b: F.conv2d(x, w, b, padding=1),
        ctx.fixed(8, 16, 32, 32, seed=1), ctx.fixed(32, 16, 3, 3, seed=2), ctx.fixed(32, seed=3),
    )


@scenario("ops.conv_transpose2d", "F.conv_transpose2d stride 2, grads of input, weight, bias")
def conv_transpose2d(ctx: Context) -> dict[str, Tensor]:
    return forward_backward(
        ctx, lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, padding=1),
        ctx.fixed(8, 32, 16, 16, seed=1), ctx.fixed(32, 16, 4, 4, seed=2), ctx.fixed(16, seed=3),
    )


@scenario("ops.softmax", "F.softmax over rows 1024 wide (256 rows), with input gradient")
def softmax(ctx: Context) -> dict[str, Tensor]:
    return forward_backward(ctx, lambda x: F.softmax(x, dim=-1), ctx.fixed(256, 1024, seed=1))


@scenario("ops.log_softmax", "F.log_softmax over rows 1024 wide (256 rows), with input gradient")
def log_softmax(ctx: Context) -> dict[str, Tensor]:
    return forward_backward(
        ctx, lambda x: F.log_softmax(x, dim=-1), ctx.fixed(256, 1024, seed=1)
    )


@scenario("ops.layer_norm", "F.layer_norm over 1024 features with affine, grads of all three")
def layer_norm(ctx: Context) -> dict[str, Tensor]:
    return forward_backward(
        ctx, lambda x, w, b: F.layer_norm(x, (1024,), w, b),
        ctx.fixed(256, 1024, seed=1), ctx.fixed(1024, seed=2), ctx.fixed(1024, seed=3),
    )


@scenario("ops.batch_norm", "F.batch_norm in training mode: output, grads, updated running stats")
def batch_norm(ctx: Context) -> dict[str, Any]:
    running_mean = ctx.fixed(64, seed=4) * 0.1
    running_var = ctx.fixed(64, kind="uniform", seed=5) + 0.5
    result = forward_backward(
        ctx,
        lambda x, w, b: F.batch_norm(x, running_mean, running_var, w, b, training=True),
        ctx.fixed(16, 64, 16, 16, seed=1), ctx.fixed(64, seed=2), ctx.fixed(64, seed=3),
    )
    return {**result, "running_mean": running_mean, "running_var": running_var}


# --- reductions


@scenario(
    "ops.reductions",
    "sum/mean/var/std/prod/cumsum/norm along rows of 256x1024 float32, with input gradients",
)
def reductions(ctx: Context) -> dict[str, Any]:
    matrix = ctx.fixed(256, 1024, seed=1)
    near_one = 1.0 + 0.01 * matrix  # keeps the product of 1024 factors finite
    return {
        "sum": forward_backward(ctx, lambda x: x.sum(dim=1), matrix),
        "mean": forward_backward(ctx, lambda x: x.mean(dim=1), matrix),
        "var": forward_backward(ctx, lambda x: x.var(dim=1), matrix),
        "std": forward_backward(ctx, lambda x: x.std(dim=1), matrix),
        "prod": forward_backward(ctx, lambda x: x.prod(dim=1), near_one),
        "cumsum": forward_backward(ctx, lambda x: x.cumsum(dim=1), matrix),
        "norm": forward_backward(ctx, lambda x: torch.linalg.vector_norm(x, dim=1), matrix),
    }


@scenario(
    "ops.reductions_large",
    "sum/mean/var/std/norm of one 2**22-element float32 vector (threads change the order)",
)
def reductions_large(ctx: Context) -> dict[str, Tensor]:
    vector = ctx.fixed(LARGE, kind="uniform", seed=1) - 0.5
    return {
        "sum": vector.sum(),
        "mean": vector.mean(),
        "var": vector.var(),
        "std": vector.std(),
        "norm": torch.linalg.vector_norm(vector),
        "cumsum_head": vector[: 2 ** 16].cumsum(0),
    }


# --- scatter / gather with collisions (atomics on CUDA): called plainly, the runner classifies


@scenario("ops.scatter_add", "scatter_add of 65536 values into 512 slots (many collisions) + grads")
def scatter_add(ctx: Context) -> dict[str, Tensor]:
    index = indices(ctx, 65536, 512, seed=2)
    return forward_backward(
        ctx, lambda base, src: base.scatter_add(0, index, src),
        ctx.fixed(512, seed=1), ctx.fixed(65536, seed=3),
    )


@scenario("ops.index_add", "index_add of 8192 rows into 256x64 (many collisions) + grads")
def index_add(ctx: Context) -> dict[str, Tensor]:
    index = indices(ctx, 8192, 256, seed=2)
    return forward_backward(
        ctx, lambda base, src: base.index_add(0, index, src),
        ctx.fixed(256, 64, seed=1), ctx.fixed(8192, 64, seed=3),
    )


@scenario(
    "ops.index_put_accumulate",
    "index_put(accumulate=True) of 65536 values into 512 + grads (CPU atomics when threaded)",
)
def index_put_accumulate(ctx: Context) -> dict[str, Tensor]:
    """Threaded CPU kernels add with atomics unless deterministic algorithms are on (2.x)."""
    index = indices(ctx, 65536, 512, seed=2)
    return forward_backward(
        ctx, lambda base, values: base.index_put((index,), values, accumulate=True),
        ctx.fixed(512, seed=1), ctx.fixed(65536, seed=3),
    )


@scenario("ops.bincount", "bincount of 65536 indices into 1000 bins, unweighted and weighted")
def bincount(ctx: Context) -> dict[str, Tensor]:
    index = indices(ctx, 65536, 1000, seed=1)
    weights = ctx.fixed(65536, seed=2)
    return {
        "counts": torch.bincount(index, minlength=1000),
        "weighted": torch.bincount(index, weights=weights, minlength=1000),
    }


@scenario("ops.histc", "histc of 2**20 normal float32 values into 100 bins over [-3, 3]")
def histc(ctx: Context) -> dict[str, Tensor]:
    return {"histogram": torch.histc(ctx.fixed(2 ** 20, seed=1), bins=100, min=-3.0, max=3.0)}


@scenario("ops.embedding_bag", "F.embedding_bag sum and mean over 512 bags, with weight gradient")
def embedding_bag(ctx: Context) -> dict[str, Any]:
    index = indices(ctx, 8192, 1000, seed=2)
    offsets = torch.arange(0, 8192, 16, device=ctx.device)
    weight = ctx.fixed(1000, 64, seed=1)
    return {
        mode: forward_backward(
            ctx, lambda w, mode=mode: F.embedding_bag(index, w, offsets, mode=mode), weight
        )
        for mode in ("sum", "mean")
    }


# --- resampling, attention, contraction


def interpolate(ctx: Context, mode: str) -> dict[str, Tensor]:
    """Upsample 4x8x48x48 to 80x80 (non-integer scale) in `mode`, with input gradient."""
    return forward_backward(
        ctx, lambda x: F.interpolate(x, size=(80, 80), mode=mode, align_corners=False),
        ctx.fixed(4, 8, 48, 48, seed=1),
    )


@scenario("ops.interpolate_bilinear", "F.interpolate bilinear 48->80, backward (atomics on CUDA)")
def interpolate_bilinear(ctx: Context) -> dict[str, Tensor]:
    return interpolate(ctx, "bilinear")


@scenario("ops.interpolate_bicubic", "F.interpolate bicubic 48->80, backward (atomics on CUDA)")
def interpolate_bicubic(ctx: Context) -> dict[str, Tensor]:
    return interpolate(ctx, "bicubic")


@scenario(
    "ops.scaled_dot_product_attention",
    "F.scaled_dot_product_attention 4x8x128x64, full and causal, grads of q, k, v",
    min_torch="2.0",
)
def scaled_dot_product_attention(ctx: Context) -> dict[str, Any]:
    q, k, v = (ctx.fixed(4, 8, 128, 64, seed=seed) for seed in (1, 2, 3))
    return {
        name: forward_backward(
            ctx, lambda q, k, v, causal=causal: F.scaled_dot_product_attention(
                q, k, v, is_causal=causal
            ), q, k, v,
        )
        for name, causal in (("full", False), ("causal", True))
    }


@scenario("ops.einsum", "einsum batched matmul and attention-score contraction, with grads")
def einsum(ctx: Context) -> dict[str, Any]:
    return {
        "bij_bjk": forward_backward(
            ctx, lambda a, b: torch.einsum("bij,bjk->bik", a, b),
            ctx.fixed(8, 64, 96, seed=1), ctx.fixed(8, 96, 32, seed=2),
        ),
        "bhqd_bhkd": forward_backward(
            ctx, lambda q, k: torch.einsum("bhqd,bhkd->bhqk", q, k),
            ctx.fixed(2, 4, 64, 32, seed=3), ctx.fixed(2, 4, 64, 32, seed=4),
        ),
    }


# --- dropout: the only ops scenario that uses torch's RNG, seeded right before each call


@scenario("ops.dropout", "F.dropout/dropout2d/alpha_dropout p=0.5, training, after manual_seed")
def dropout(ctx: Context) -> dict[str, Tensor]:
    calls: dict[str, tuple[Callable[..., Tensor], tuple[int, ...]]] = {
        "dropout": (F.dropout, (256, 1024)),
        "dropout2d": (F.dropout2d, (16, 64, 16, 16)),
        "alpha_dropout": (F.alpha_dropout, (256, 1024)),
    }
    outputs: dict[str, Tensor] = {}
    for name, (function, shape) in calls.items():
        x = ctx.fixed(*shape, seed=1)
        torch.manual_seed(DROPOUT_SEED)
        outputs[name] = function(x, p=0.5, training=True)
    return outputs


# --- elementwise transcendental functions: vectorised kernels differ per CPU ISA


ELEMENTWISE_FUNCTIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "exp": torch.exp,
    "log": torch.log,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),  # keyword exists since torch 1.12
}


@scenario(
    "ops.elementwise",
    "exp/log/tanh/sigmoid/gelu on a 2**20 float32 vector, with grads (SIMD kernels per ISA)",
)
def elementwise(ctx: Context) -> dict[str, Any]:
    normal = ctx.fixed(ELEMENTWISE, seed=1) * 3.0
    positive = ctx.fixed(ELEMENTWISE, kind="uniform", seed=2) * 100.0 + 1e-3
    outputs: dict[str, Any] = {}
    for name, function in ELEMENTWISE_FUNCTIONS.items():
        outputs[name] = forward_backward(ctx, function, positive if name == "log" else normal)
    return outputs

