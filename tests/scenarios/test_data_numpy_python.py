"""Built-in families `data`, `numpy` and `python`: every scenario repeats, and means what it says.

Between two runs torch's, numpy's and Python's global RNGs are reseeded with fresh entropy, as
the runner does, so a scenario that forgets to seed one of them fails here.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

import numpy as np
import pytest
import torch

from audit.capture.hashing import digest
from tests.scenarios.support import Families, digests
from tests.scenarios.support import scramble_rng_states as scramble

BUILT_IN = Families("data", numpy="numpy_random", python="python_random")
MODULES, SCENARIOS, run = BUILT_IN.modules, BUILT_IN.scenarios, BUILT_IN.run

# sha256 of the little-endian bytes of RandomState(20240607)'s first draws, as numpy's own
# test_randomstate.py pins its legacy streams (frozen by NEP 19: these never change).
RANDOM_STATE_SHA256 = {
    "random_sample": "72f6112a1b0079518e1621385b7dafa4195d8c882b7b1722b8bf20bde49ad03f",
    "standard_normal": "c6ded872a859192bcb789c7be8b404756046ff23a9f8f05f6437c8b6e66578cb",
    "randint": "acd55499f56a345f8f531e12bd3ff79542308db08cc2d4b8d61e3ceafd9610c8",
}
# random.Random(20240607).random() x 16: Python guarantees random() and seed() stay stable.
PYTHON_RANDOM_SHA256 = "7835729f32f23c80743b7120a7821ab80e93d31e2d9eeabf9ebe13f74cbf9632"


def sha256_le(tensor: torch.Tensor) -> str:
    """sha256 of a tensor's elements as little-endian bytes (byte-swapped on big-endian)."""
    array = tensor.numpy()
    return hashlib.sha256(array.astype(array.dtype.newbyteorder("<")).tobytes()).hexdigest()


def test_families_register_the_expected_scenarios() -> None:
    for family in MODULES:
        names = [name for name in SCENARIOS if name.startswith(f"{family}.")]
        assert len(names) >= 5, f"{family}: only {names}"
    for name in (
        "data.loader_workers0",
        "data.loader_workers2",
        "data.random_sampler",
        "data.subset_random_sampler",
        "data.random_split",
        "numpy.default_rng",
        "numpy.philox",
        "numpy.sfc64",
        "numpy.random_state",
        "numpy.global_seed",
        "numpy.shuffle_permutation_choice",
        "python.random_instance",
        "python.module_seed",
    ):
        assert name in SCENARIOS, name
    for name, item in SCENARIOS.items():
        assert item.devices == ("cpu",), name
        assert item.description and "\n" not in item.description, name
        assert len(item.description) <= 100, name


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario_repeats_bitwise_across_scrambled_rng(name: str) -> None:
    first = run(name)
    second = run(name)
    assert first, name
    assert digests(first) == digests(second)


@pytest.mark.parametrize("forget", ["torch", "numpy", "python"])
def test_scramble_catches_a_dataset_whose_rng_is_not_seeded(forget: str) -> None:
    """The num_workers=0 scenario with one of its three seeds left out no longer repeats."""
    data = MODULES["data"]

    def load() -> dict[str, torch.Tensor]:
        scramble()
        if forget != "torch":
            torch.manual_seed(40)
        if forget != "numpy":
            np.random.seed(40)
        if forget != "python":
            random.seed(40)
        return data._load(data._loader(0, 40))

    first, second = load(), load()
    assert torch.equal(first["indices"], second["indices"])  # the seeded Generator still holds
    column = f"{forget}_draws"
    assert digest(first[column]) != digest(second[column])


# --- data ---------------------------------------------------------------------------------


def _expected_draws(seeds: dict[str, int], indices: list[int]) -> torch.Tensor:
    """What DrawingDataset yields for `indices` in a process seeded with `seeds`."""
    torch.manual_seed(seeds["torch"])
    np.random.seed(seeds["numpy"])
    random.seed(seeds["python"])
    return torch.stack([MODULES["data"].DrawingDataset()[index] for index in indices])


def test_workers0_and_workers2_load_in_the_same_order() -> None:
    in_process = run("data.loader_workers0")
    workers = run("data.loader_workers2")
    default = run("data.loader_workers2_default_seeding")
    assert torch.equal(in_process["indices"], workers["indices"])
    assert torch.equal(workers["indices"], default["indices"])
    assert sorted(workers["indices"].tolist()) == list(range(MODULES["data"].LENGTH))
    assert not torch.equal(workers["numpy_draws"], default["numpy_draws"])


def test_workers0_draws_come_from_the_main_process_seeds() -> None:
    outputs = run("data.loader_workers0")
    expected = _expected_draws(
        {"torch": 40, "numpy": 40, "python": 40}, outputs["indices"].tolist()
    )
    assert torch.equal(outputs["torch_draws"], expected[:, 1])
    assert torch.equal(outputs["numpy_draws"], expected[:, 2])
    assert torch.equal(outputs["python_draws"], expected[:, 3])


def test_seed_worker_recipe_seeds_each_worker_from_its_torch_seed() -> None:
    """Rebuild the two workers' draws: base seed from the Generator, round-robin batches."""
    data = MODULES["data"]
    outputs = run("data.loader_workers2")
    generator = torch.Generator()
    generator.manual_seed(40)
    base_seed = int(torch.empty((), dtype=torch.int64).random_(generator=generator).item())
    order = outputs["indices"].tolist()
    batches = [order[start : start + data.BATCH] for start in range(0, len(order), data.BATCH)]
    expected: dict[int, Any] = {}
    for worker in (0, 1):
        seed = base_seed + worker
        mine = [index for batch in batches[worker::2] for index in batch]
        seeds = {"torch": seed, "numpy": seed % 2**32, "python": seed % 2**32}
        expected.update(zip(mine, _expected_draws(seeds, mine)))
    rebuilt = torch.stack([expected[index] for index in order])
    assert torch.equal(outputs["torch_draws"], rebuilt[:, 1])
    assert torch.equal(outputs["numpy_draws"], rebuilt[:, 2])
    assert torch.equal(outputs["python_draws"], rebuilt[:, 3])


def test_global_seed_decides_the_order_without_a_generator() -> None:
    outputs = run("data.loader_global_seed")
    assert sorted(outputs["indices"].tolist()) == list(range(MODULES["data"].LENGTH))
    assert not torch.equal(outputs["indices"], run("data.loader_workers0")["indices"])


def test_samplers_and_split_semantics() -> None:
    sampled = run("data.random_sampler")
    generator = torch.Generator()
    generator.manual_seed(42)
    assert torch.equal(sampled["permutation"], torch.randperm(20, generator=generator))
    assert sorted(sampled["permutation_1000"].tolist()) == list(range(1000))
    assert sampled["with_replacement"].numel() == 30
    assert sampled["with_replacement"].max().item() < 20

    subset = run("data.subset_random_sampler")["order"].tolist()
    assert sorted(subset) == [3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610]

    weighted = run("data.weighted_random_sampler")
    assert sorted(weighted["without_replacement"].tolist()) == list(range(8))
    assert weighted["with_replacement"].numel() == 40

    split = run("data.random_split")
    for kind in ("generator", "global"):
        parts = [split[f"{kind}.{position}"].tolist() for position in range(3)]
        assert [len(part) for part in parts] == [6, 4, 10]
        assert sorted(sum(parts, [])) == list(range(20))


# --- numpy --------------------------------------------------------------------------------


def test_random_state_stream_is_pinned() -> None:
    outputs = run("numpy.random_state")
    for name, expected in RANDOM_STATE_SHA256.items():
        assert sha256_le(outputs[name]) == expected, name
    assert outputs["random_sample"].dtype == torch.float64
    assert outputs["randint"].dtype == torch.int64


def test_global_seed_is_the_legacy_stream() -> None:
    outputs = run("numpy.global_seed")
    state = np.random.RandomState(MODULES["numpy"].SEED)
    assert torch.equal(outputs["rand"], torch.from_numpy(state.random_sample(12)))
    assert torch.equal(outputs["randn"], torch.from_numpy(state.standard_normal(64)))


def test_bit_generators_are_distinct_streams() -> None:
    firsts = {
        name: run(f"numpy.{name}")["random_small"]
        for name in ("default_rng", "philox", "sfc64", "mt19937_generator")
    }
    assert len({digest(tensor) for tensor in firsts.values()}) == len(firsts)
    pcg = run("numpy.default_rng")
    assert torch.equal(pcg["random_small"], pcg["default_rng_random"])


def test_as_tensor_widens_integers_and_keeps_uint64_bits() -> None:
    as_tensor = MODULES["numpy"].as_tensor
    widened = as_tensor(np.array([1, -2], dtype=np.int32))
    assert widened.dtype == torch.int64 and widened.tolist() == [1, -2]
    top = as_tensor(np.array([2**64 - 1], dtype=np.uint64))
    assert top.dtype == torch.int64 and top.tolist() == [-1]
    assert as_tensor(np.array([True, False])).tolist() == [1, 0]
    transposed = as_tensor(np.arange(6.0).reshape(2, 3).T)
    assert transposed.is_contiguous() and transposed.dtype == torch.float64


def test_shuffles_are_permutations() -> None:
    outputs = run("numpy.shuffle_permutation_choice")
    for kind in ("generator", "legacy"):
        assert sorted(outputs[f"{kind}.shuffle"].tolist()) == list(range(50))
        assert outputs[f"{kind}.choice_no_replace"].unique().numel() == 10


# --- python -------------------------------------------------------------------------------


def test_python_random_stream_is_pinned() -> None:
    outputs = run("python.random_instance")
    assert outputs["random"].dtype == torch.float64
    assert sha256_le(outputs["random"]) == PYTHON_RANDOM_SHA256


def test_module_seed_is_the_instance_stream() -> None:
    instance = run("python.random_instance")
    module = run("python.module_seed")
    assert digests(instance) == digests(module)


def test_python_state_and_seed_types() -> None:
    state = run("python.getstate")
    assert state["version"].tolist() == [3]
    assert state["seeded"].numel() == 625 and state["seeded"][-1].item() == 624
    assert not torch.equal(state["seeded"], state["after_draws"])
    seeds = run("python.seed_types")
    assert torch.equal(seeds["str"], seeds["bytes"])  # a str seeds as its UTF-8 bytes
    positive = random.Random(MODULES["python"].SEED)
    assert seeds["negative"].tolist() == [positive.random() for _ in range(8)]  # |seed|
    assert len({digest(seeds[name]) for name in ("str", "negative", "big")}) == 3
