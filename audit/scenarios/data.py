"""Family `data`: data-loading order and worker randomness (`torch.utils.data`).

The documented recipe for reproducible loading: a seeded `torch.Generator` for the shuffle
and base seed, plus a `worker_init_fn` that seeds numpy and `random` from
`torch.initial_seed()` in each worker. `DrawingDataset` draws from torch, numpy and
`random` inside `__getitem__`, so what seeds the workers shows in the values.
Outputs are int64 index orders and batches. All scenarios are CPU-only and small.
"""

from __future__ import annotations

import multiprocessing
import random
import sys
from typing import Any

import numpy as np
import torch
from torch.utils.data import (
    DataLoader,
    Dataset,
    RandomSampler,
    SubsetRandomSampler,
    WeightedRandomSampler,
    random_split,
)

from audit.scenarios.context import Context
from audit.scenarios.registry import scenario

LENGTH = 24
BATCH = 4


class DrawingDataset(Dataset):
    """Item i is [i, a torch draw, a numpy draw, a `random` draw], as int64.

    Defined at module level so worker processes can unpickle it.
    """

    def __init__(self, length: int = LENGTH) -> None:
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.tensor(
            [
                index,
                int(torch.randint(0, 10**6, (1,)).item()),
                int(np.random.randint(0, 10**6)),
                random.randrange(10**6),
            ],
            dtype=torch.int64,
        )


def seed_worker(worker_id: int) -> None:
    """The documented `worker_init_fn`: seed numpy and `random` from torch's worker seed."""
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)


def _context() -> Any:
    """'fork' on Linux: workers start in milliseconds (3.14 defaults to forkserver)."""
    if sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return None


def _load(loader: DataLoader) -> dict[str, torch.Tensor]:
    """Every batch of one epoch: index order, then each column of draws."""
    batches = torch.cat(list(loader))
    return {
        "indices": batches[:, 0].contiguous(),
        "torch_draws": batches[:, 1].contiguous(),
        "numpy_draws": batches[:, 2].contiguous(),
        "python_draws": batches[:, 3].contiguous(),
    }


def _loader(workers: int, seed: int | None, **options: Any) -> DataLoader:
    """A shuffling DataLoader over DrawingDataset; `seed` None: no generator of its own."""
    if workers:
        options.setdefault("multiprocessing_context", _context())
    generator = None
    if seed is not None:
        generator = torch.Generator()
        generator.manual_seed(seed)
    return DataLoader(
        DrawingDataset(),
        batch_size=BATCH,
        shuffle=True,
        num_workers=workers,
        generator=generator,
        persistent_workers=False,
        **options,
    )


@scenario(
    "data.loader_workers0",
    "DataLoader shuffle with a seeded Generator, num_workers=0, main process seeded",
    devices=("cpu",),
)
def loader_workers0(ctx: Context) -> dict[str, torch.Tensor]:
    """In-process loading: the recipe seeds torch, numpy and random in the main process."""
    torch.manual_seed(40)
    np.random.seed(40)
    random.seed(40)
    return _load(_loader(0, 40))


@scenario(
    "data.loader_workers2",
    "DataLoader shuffle with a seeded Generator, num_workers=2 and the seed_worker recipe",
    devices=("cpu",),
)
def loader_workers2(ctx: Context) -> dict[str, torch.Tensor]:
    """Two worker processes: same index order as num_workers=0, draws from worker seeds."""
    return _load(_loader(2, 40, worker_init_fn=seed_worker))


@scenario(
    "data.loader_workers2_default_seeding",
    "DataLoader, num_workers=2, seeded Generator, no worker_init_fn (torch seeds workers)",
    devices=("cpu",),
)
def loader_workers2_default_seeding(ctx: Context) -> dict[str, torch.Tensor]:
    """Without the recipe: torch seeds `random` (and numpy since 1.9) in each worker itself."""
    return _load(_loader(2, 40))


@scenario(
    "data.loader_global_seed",
    "DataLoader shuffle without a Generator: the order follows torch.manual_seed",
    devices=("cpu",),
)
def loader_global_seed(ctx: Context) -> dict[str, torch.Tensor]:
    """The common case: shuffle=True and only torch.manual_seed (plus numpy and random)."""
    torch.manual_seed(41)
    np.random.seed(41)
    random.seed(41)
    return _load(_loader(0, None))


def _indices(sampler: Any) -> torch.Tensor:
    return torch.tensor(list(sampler), dtype=torch.int64)


def _generator(seed: int) -> torch.Generator:
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


@scenario(
    "data.random_sampler",
    "RandomSampler with a seeded Generator: permutation, and 30 draws with replacement",
    devices=("cpu",),
)
def random_sampler(ctx: Context) -> dict[str, torch.Tensor]:
    """RandomSampler orders over 20 and 1000 items, without and with replacement."""
    return {
        "permutation": _indices(RandomSampler(range(20), generator=_generator(42))),
        "permutation_1000": _indices(RandomSampler(range(1000), generator=_generator(42))),
        "with_replacement": _indices(
            RandomSampler(range(20), replacement=True, num_samples=30, generator=_generator(42))
        ),
    }


@scenario(
    "data.subset_random_sampler",
    "SubsetRandomSampler over 12 chosen indices with a seeded Generator",
    devices=("cpu",),
)
def subset_random_sampler(ctx: Context) -> dict[str, torch.Tensor]:
    """The subset's indices in the sampler's random order."""
    subset = [3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610]
    return {"order": _indices(SubsetRandomSampler(subset, generator=_generator(43)))}


@scenario(
    "data.weighted_random_sampler",
    "WeightedRandomSampler with and without replacement, seeded Generator",
    devices=("cpu",),
)
def weighted_random_sampler(ctx: Context) -> dict[str, torch.Tensor]:
    """Weighted index draws (torch.multinomial underneath)."""
    weights = [0.1, 0.4, 0.05, 0.2, 0.25, 0.6, 0.3, 0.1]
    return {
        "with_replacement": _indices(
            WeightedRandomSampler(weights, 40, replacement=True, generator=_generator(44))
        ),
        "without_replacement": _indices(
            WeightedRandomSampler(weights, 8, replacement=False, generator=_generator(44))
        ),
    }


@scenario(
    "data.random_split",
    "random_split of 20 items into 6 / 4 / 10, with a seeded Generator and the global one",
    devices=("cpu",),
)
def random_split_(ctx: Context) -> dict[str, torch.Tensor]:
    """Each subset's indices, with an explicit Generator and after torch.manual_seed."""
    lengths = [6, 4, 10]
    explicit = random_split(range(20), lengths, generator=_generator(45))
    torch.manual_seed(45)
    default = random_split(range(20), lengths)
    return {
        "generator": [_indices(part.indices) for part in explicit],
        "global": [_indices(part.indices) for part in default],
    }
