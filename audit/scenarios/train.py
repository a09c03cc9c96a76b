"""Family `train`: a few optimizer steps of small models, the end-to-end reproducibility case.

Each scenario seeds with `torch.manual_seed` before building the model on the device (the
same seed also drives dropout during the steps), takes its data from `ctx.fixed`, and returns
the final parameters (state_dict) and the loss trajectory as a float32 tensor. Five steps on
one fixed batch: enough for optimizer state (momentum, Adam moments) to matter, yet fast.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from audit.scenarios.context import Context
from audit.scenarios.registry import Unavailable, scenario

SEED = 0
STEPS = 5
CLASSES = 10

Tensor = torch.Tensor


def classification_batch(ctx: Context, *shape: int) -> tuple[Tensor, Tensor]:
    """Fixed inputs of `shape` and fixed class targets in 0..9 for its first dimension."""
    return ctx.fixed(*shape, seed=1), ctx.fixed(shape[0], kind="int", seed=2)


def mlp(device: str) -> nn.Module:
    """32 -> 64 -> 64 -> 10 multilayer perceptron."""
    return nn.Sequential(
        nn.Linear(32, 64, device=device), nn.ReLU(),
        nn.Linear(64, 64, device=device), nn.ReLU(),
        nn.Linear(64, CLASSES, device=device),
    )


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[], Tensor],
    *,
    autocast: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext,
    clip_norm: float | None = None,
) -> dict[str, Any]:
    """`STEPS` optimizer steps; the final state_dict and the float32 loss trajectory.

    With `clip_norm`, gradients are clipped before each step with the default
    `clip_grad_norm_` (whatever implementation this torch picks is what is audited), and the
    total norms it returns are kept as a third output.
    """
    model.train()
    losses: list[Tensor] = []
    norms: list[Tensor] = []
    for _ in range(STEPS):
        optimizer.zero_grad()
        with autocast():
            loss = loss_fn()
        loss.backward()
        if clip_norm is not None:
            norm = nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
            norms.append(norm.detach().reshape(()).float())
        optimizer.step()
        losses.append(loss.detach().float())
    outputs: dict[str, Any] = {"params": model.state_dict(), "loss": torch.stack(losses)}
    if norms:
        outputs["total_norm"] = torch.stack(norms)
    return outputs


@scenario("train.mlp_sgd", "5 SGD (momentum) steps of a 3-layer MLP: final params and losses")
def mlp_sgd(ctx: Context) -> dict[str, Any]:
    x, y = classification_batch(ctx, 128, 32)
    torch.manual_seed(SEED)
    model = mlp(ctx.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    return fit(model, optimizer, lambda: F.cross_entropy(model(x), y))


@scenario("train.cnn_adam", "5 Adam steps of a small CNN with BatchNorm: params, stats, losses")
def cnn_adam(ctx: Context) -> dict[str, Any]:
    x, y = classification_batch(ctx, 16, 3, 16, 16)
    torch.manual_seed(SEED)
    device = ctx.device
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, device=device), nn.BatchNorm2d(8, device=device),
        nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1, device=device), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, CLASSES, device=device),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    return fit(model, optimizer, lambda: F.cross_entropy(model(x), y))


class TinyEncoder(nn.Module):
    """Embedding + one TransformerEncoderLayer (dropout 0.1) + mean pooling + classifier."""

    def __init__(self, device: str) -> None:
        super().__init__()
        self.embed = nn.Embedding(CLASSES, 32, device=device)
        self.encoder = nn.TransformerEncoderLayer(
            32, 4, 64, dropout=0.1, batch_first=True, device=device
        )
        self.head = nn.Linear(32, CLASSES, device=device)

    def forward(self, tokens: Tensor) -> Tensor:
        return self.head(self.encoder(self.embed(tokens)).mean(dim=1))


@scenario(
    "train.transformer_adamw",
    "5 AdamW steps of a tiny transformer encoder with dropout (seeded): params and losses",
)
def transformer_adamw(ctx: Context) -> dict[str, Any]:
    tokens = ctx.fixed(8, 16, kind="int", seed=1)
    y = ctx.fixed(8, kind="int", seed=2)
    torch.manual_seed(SEED)
    model = TinyEncoder(ctx.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    return fit(model, optimizer, lambda: F.cross_entropy(model(tokens), y))


def autocast_device_type(ctx: Context) -> str:
    """The device type to autocast on, or `Unavailable` where bfloat16 autocast is lacking."""
    device_type = torch.device(ctx.device).type
    if not hasattr(torch, "autocast"):
        raise Unavailable("torch.autocast is missing (torch < 1.10)")
    if device_type == "cuda":
        if not torch.cuda.is_bf16_supported():
            raise Unavailable("this CUDA device does not support bfloat16")
    elif device_type != "cpu":
        available = getattr(getattr(torch, "amp", None), "is_autocast_available", None)
        if available is None or not available(device_type):
            raise Unavailable(f"bfloat16 autocast on {device_type} is not available here")
    return device_type


@scenario(
    "train.mlp_autocast_bf16",
    "5 SGD steps of the MLP under torch.autocast(<device type>, bfloat16): params and losses",
)
def mlp_autocast_bf16(ctx: Context) -> dict[str, Any]:
    device_type = autocast_device_type(ctx)
    x, y = classification_batch(ctx, 128, 32)
    torch.manual_seed(SEED)
    model = mlp(ctx.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    return fit(
        model, optimizer, lambda: F.cross_entropy(model(x), y),
        autocast=lambda: torch.autocast(device_type, dtype=torch.bfloat16),
    )


@scenario(
    "train.clip_grad_norm",
    "5 SGD steps (lr 0.5) of the MLP with clip_grad_norm_(0.1), which binds: params, losses, norms",
)
def clip_grad_norm(ctx: Context) -> dict[str, Any]:
    x, y = classification_batch(ctx, 128, 32)
    torch.manual_seed(SEED)
    model = mlp(ctx.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    return fit(model, optimizer, lambda: F.cross_entropy(model(x), y), clip_norm=0.1)
