"""Family `state`: generator states as bytes, round trips, and states saved by another torch.

`saved_states/cpu-torch-<version>-seed-<N>.bin` hold the raw bytes of `torch.get_rng_state()`
that torch <version> returned after `torch.manual_seed(N)` and `advance_saved_stream()`.
Restoring them in every audited torch shows whether a checkpointed CPU generator still
resumes the same stream. `save_cpu_state` wrote them (see its docstring).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from audit.scenarios.context import Context
from audit.scenarios.registry import scenario

SAVED_STATES = Path(__file__).with_name("saved_states")
SAVED_NAME = re.compile(r"^cpu-torch-(?P<version>[0-9][0-9A-Za-z.+]*)-seed-(?P<seed>\d+)\.bin$")
SAVED_SEEDS = (246, 1234)


def advance_saved_stream() -> None:
    """The draws between seeding and saving: a uniform run, then an odd number of normals.

    Five scalar-path normals leave a cached normal sample, so the state's cache fields
    (not only the Mersenne Twister words) are set in the saved bytes.
    """
    torch.rand(10)
    torch.randn(5)


def save_cpu_state(directory: Path, seed: int) -> Path:
    """Write this torch's CPU generator state for `seed` (how saved_states/ was made).

    python -c "from pathlib import Path; from audit.scenarios.state import *;
    [save_cpu_state(SAVED_STATES, s) for s in SAVED_SEEDS]"
    """
    torch.manual_seed(seed)
    advance_saved_stream()
    version = torch.__version__.split("+", 1)[0]
    path = Path(directory) / f"cpu-torch-{version}-seed-{seed}.bin"
    path.write_bytes(bytes(torch.get_rng_state().tolist()))
    return path


def saved_state_files() -> list[Path]:
    """The saved CPU states shipped with the package, sorted by name."""
    return sorted(p for p in SAVED_STATES.glob("*.bin") if SAVED_NAME.match(p.name))


def _draws(generator: Any = None, device: str = "cpu") -> dict[str, torch.Tensor]:
    """What is drawn after a state is set: uniforms, scalar-path and vector-path normals."""
    return {
        "rand": torch.rand(3, 4, generator=generator, device=device),
        "randn_small": torch.randn(3, generator=generator, device=device),
        "randn_large": torch.randn(1024, generator=generator, device=device),
    }


def _device_rng(ctx: Context) -> Any:
    """The module holding get_rng_state/set_rng_state for this context's device type."""
    device_type = torch.device(ctx.device).type
    if device_type == "cpu":
        return torch
    module = getattr(torch, device_type, None)
    ctx.require(
        module is not None and hasattr(module, "get_rng_state"),
        f"torch {torch.__version__} has no torch.{device_type}.get_rng_state",
    )
    return module


@scenario(
    "state.cpu_get_state",
    "Bytes of torch.get_rng_state() after manual_seed(1234), and after some draws",
    devices=("cpu",),
)
def cpu_get_state(ctx: Context) -> dict[str, torch.Tensor]:
    """The CPU generator's serialized state (Mersenne Twister words plus normal caches)."""
    torch.manual_seed(1234)
    seeded = torch.get_rng_state()
    advance_saved_stream()
    return {"seeded": seeded, "after_draws": torch.get_rng_state()}


@scenario(
    "state.set_state_roundtrip",
    "get_rng_state, draw, set_rng_state, draw again: both draws are equal",
)
def set_state_roundtrip(ctx: Context) -> dict[str, torch.Tensor]:
    """Round trips through the device's default generator and through an explicit one."""
    rng = _device_rng(ctx)
    torch.manual_seed(31)
    torch.rand(7, device=ctx.device)  # start mid-stream
    saved = rng.get_rng_state()
    global_first = _draws(device=ctx.device)
    rng.set_rng_state(saved)
    global_second = _draws(device=ctx.device)

    generator = ctx.generator(31)
    torch.rand(7, generator=generator, device=ctx.device)
    generator_saved = generator.get_state()
    generator_first = _draws(generator, ctx.device)
    generator.set_state(generator_saved)
    generator_second = _draws(generator, ctx.device)
    return {
        "global_first": global_first,
        "global_second": global_second,
        "generator_first": generator_first,
        "generator_second": generator_second,
    }


@scenario(
    "state.generator_state",
    "torch.Generator(device).get_state() after manual_seed(1234), and after 1000 draws",
)
def generator_state(ctx: Context) -> dict[str, torch.Tensor]:
    """An explicit generator's state bytes (CPU: Mersenne Twister; CUDA: seed and offset)."""
    generator = ctx.generator(1234)
    seeded = generator.get_state()
    torch.rand(1000, generator=generator, device=ctx.device)
    return {"seeded": seeded, "after_draws": generator.get_state()}


@scenario(
    "state.default_to_generator",
    "The default generator's state set into a new torch.Generator: both continue alike",
)
def default_to_generator(ctx: Context) -> dict[str, torch.Tensor]:
    """Moving a state from the global generator into an explicit one, then drawing from both."""
    rng = _device_rng(ctx)
    torch.manual_seed(32)
    torch.randn(5, device=ctx.device)
    generator = torch.Generator(device=ctx.device)
    generator.set_state(rng.get_rng_state())
    return {"default": _draws(device=ctx.device), "generator": _draws(generator, ctx.device)}


@scenario(
    "state.restore_saved",
    "Restore CPU generator states saved by a torch release (saved_states/*.bin), then draw",
    devices=("cpu",),
)
def restore_saved(ctx: Context) -> dict[str, torch.Tensor]:
    """Draws after `torch.set_rng_state` of each saved file; outputs named by file."""
    files = saved_state_files()
    ctx.require(bool(files), f"no saved states in {SAVED_STATES}")
    outputs = {}
    for path in files:
        match = SAVED_NAME.match(path.name)
        assert match is not None  # saved_state_files() kept only matching names
        key = "torch_{}_seed_{}".format(
            re.sub(r"[^0-9A-Za-z]", "_", match.group("version")), match.group("seed")
        )
        state = torch.tensor(list(path.read_bytes()), dtype=torch.uint8)
        torch.set_rng_state(state)
        outputs[key] = _draws()
    return outputs


@scenario(
    "state.cuda_get_state",
    "Bytes of torch.cuda.get_rng_state() after manual_seed(1234), and after some draws",
    devices=("cuda",),
)
def cuda_get_state(ctx: Context) -> dict[str, torch.Tensor]:
    """The CUDA default generator's state (Philox seed and offset; 816 bytes before 2.x)."""
    ctx.require(torch.device(ctx.device).type == "cuda", "a CUDA generator state needs cuda")
    torch.manual_seed(1234)
    seeded = torch.cuda.get_rng_state(ctx.device)
    torch.rand(1000, device=ctx.device)
    return {"seeded": seeded, "after_draws": torch.cuda.get_rng_state(ctx.device)}
