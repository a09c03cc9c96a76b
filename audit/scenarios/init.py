"""Family `init`: default parameter initialisation of common modules and `nn.init` functions.

Modules are constructed directly on the audited device (`device=ctx.device`, factory keyword
arguments exist since torch 1.9) so that device's generator is what is audited, not the CPU's
followed by a copy. Every module and every `nn.init` function is seeded on its own, so adding
one to a group never changes the outputs of the others.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from audit.scenarios.context import Context
from audit.scenarios.registry import scenario

SEED = 0  # the seed given to `torch.manual_seed` before each construction
LINEAR_SHAPE = (256, 128)  # in_features, out_features of `init.linear`


def seeded_state(ctx: Context, factory: Callable[[str], nn.Module]) -> dict[str, torch.Tensor]:
    """`factory(device)` built right after `torch.manual_seed(SEED)`; its state_dict."""
    torch.manual_seed(SEED)
    return factory(ctx.device).state_dict()


def seeded_states(ctx: Context, factories: dict[str, Callable[[str], nn.Module]]) -> dict[str, Any]:
    """One seeded state_dict per named factory (each seeded on its own)."""
    return {name: seeded_state(ctx, factory) for name, factory in factories.items()}


@scenario("init.linear", "nn.Linear(256, 128) default init under manual_seed, built on the device")
def linear(ctx: Context) -> dict[str, Any]:
    return seeded_state(ctx, lambda device: nn.Linear(*LINEAR_SHAPE, device=device))


@scenario(
    "init.conv",
    "Conv1d, Conv2d, Conv3d and ConvTranspose2d default init under manual_seed, on the device",
)
def conv(ctx: Context) -> dict[str, Any]:
    return seeded_states(ctx, {
        "conv1d": lambda device: nn.Conv1d(16, 32, 5, device=device),
        "conv2d": lambda device: nn.Conv2d(16, 32, 3, device=device),
        "conv3d": lambda device: nn.Conv3d(8, 16, 3, device=device),
        "conv_transpose2d": lambda device: nn.ConvTranspose2d(32, 16, 4, stride=2, device=device),
    })


@scenario("init.embedding", "nn.Embedding(1000, 64) default (normal) init under manual_seed")
def embedding(ctx: Context) -> dict[str, Any]:
    return seeded_state(ctx, lambda device: nn.Embedding(1000, 64, device=device))


@scenario("init.recurrent", "2-layer LSTM and GRU default (uniform) init under manual_seed")
def recurrent(ctx: Context) -> dict[str, Any]:
    return seeded_states(ctx, {
        "lstm": lambda device: nn.LSTM(32, 64, num_layers=2, device=device),
        "gru": lambda device: nn.GRU(32, 64, num_layers=2, device=device),
    })


@scenario(
    "init.multihead_attention",
    "nn.MultiheadAttention(64, 4) default (xavier) init under manual_seed, on the device",
)
def multihead_attention(ctx: Context) -> dict[str, Any]:
    return seeded_state(ctx, lambda device: nn.MultiheadAttention(64, 4, device=device))


@scenario(
    "init.transformer_encoder_layer",
    "nn.TransformerEncoderLayer(64, 4, 128) default init under manual_seed, on the device",
)
def transformer_encoder_layer(ctx: Context) -> dict[str, Any]:
    return seeded_state(
        ctx, lambda device: nn.TransformerEncoderLayer(64, 4, 128, device=device)
    )


@scenario("init.norm", "BatchNorm2d and LayerNorm default (constant) parameters and buffers")
def norm(ctx: Context) -> dict[str, Any]:
    return seeded_states(ctx, {
        "batch_norm2d": lambda device: nn.BatchNorm2d(32, device=device),
        "layer_norm": lambda device: nn.LayerNorm(64, device=device),
    })


INIT_FUNCTIONS: dict[str, tuple[tuple[int, ...], Callable[[torch.Tensor], Any]]] = {
    "xavier_uniform_": ((128, 64), nn.init.xavier_uniform_),
    "xavier_normal_": ((128, 64), nn.init.xavier_normal_),
    "kaiming_uniform_": ((64, 32, 3, 3), lambda t: nn.init.kaiming_uniform_(t, a=5 ** 0.5)),
    "kaiming_normal_": ((64, 32, 3, 3), lambda t: nn.init.kaiming_normal_(t, mode="fan_out")),
    "orthogonal_": ((64, 128), nn.init.orthogonal_),  # a QR on the device: more than an RNG
    # Bounds are absolute: at +-2 (the default) std=0.02 would truncate nothing.
    "trunc_normal_": ((128, 64), lambda t: nn.init.trunc_normal_(t, std=0.02, a=-0.04, b=0.04)),
    "sparse_": ((128, 64), lambda t: nn.init.sparse_(t, sparsity=0.5)),
    "uniform_": ((128, 64), lambda t: nn.init.uniform_(t, -0.1, 0.1)),
    "normal_": ((128, 64), lambda t: nn.init.normal_(t, 0.0, 0.02)),
}


@scenario(
    "init.nn_init_functions",
    "nn.init xavier/kaiming/orthogonal/trunc_normal/sparse/uniform/normal on device tensors",
)
def nn_init_functions(ctx: Context) -> dict[str, torch.Tensor]:
    outputs: dict[str, torch.Tensor] = {}
    for name, (shape, function) in INIT_FUNCTIONS.items():
        torch.manual_seed(SEED)
        tensor = torch.empty(shape, device=ctx.device)
        with torch.no_grad():
            function(tensor)
        outputs[name.rstrip("_")] = tensor
    return outputs
