"""Built-in families `seed`, `rng` and `state`: every scenario repeats, and means what it says.

Between two runs the global RNGs are reseeded with fresh entropy, as the runner does, so a
scenario that forgets to seed fails here on real tensors.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from audit.capture.hashing import digest
from audit.scenarios.registry import Unavailable
from tests.scenarios.support import CPU, Families, digests
from tests.scenarios.support import scramble_rng_states as scramble

FAMILIES = ("seed", "rng", "state")
BUILT_IN = Families(*FAMILIES)
MODULES, SCENARIOS, run = BUILT_IN.modules, BUILT_IN.scenarios, BUILT_IN.run
CPU_SCENARIOS = sorted(
    name for name, item in SCENARIOS.items() if item.devices is None or "cpu" in item.devices
)


# rng scenarios run on every device, but for sizes whose code path changes on accelerators
# only: CPU randperm is one Fisher-Yates loop at every length below 2**32 / 20.
ACCELERATOR_SIZES = ("rng.randperm_huge",)


def test_families_register_the_expected_scenarios() -> None:
    for family in FAMILIES:
        names = [name for name in SCENARIOS if name.startswith(f"{family}.")]
        assert len(names) >= 5, f"{family}: only {names}"
    for name in (
        "seed.manual_seed_246_rand",
        "seed.reseed_each_call",
        "seed.torch_seed_functions",
        "seed.fork_rng",
        "rng.rand",
        "rng.randn",
        "rng.randint",
        "rng.randperm",
        "rng.randperm_huge",
        "rng.normal",
        "rng.bernoulli",
        "rng.multinomial",
        "rng.exponential",
        "rng.geometric",
        "rng.cauchy",
        "rng.log_normal",
        "rng.poisson",
        "rng.like",
        "rng.dtype_float16",
        "rng.dtype_bfloat16",
        "rng.dtype_float64",
        "rng.distributions",
        "state.cpu_get_state",
        "state.set_state_roundtrip",
        "state.generator_state",
        "state.restore_saved",
        "state.cuda_get_state",
    ):
        assert name in SCENARIOS, name
    for name, item in SCENARIOS.items():
        assert item.description and "\n" not in item.description, name
        assert len(item.description) <= 100, name
        if name.startswith("rng.") and name not in ACCELERATOR_SIZES:
            assert item.devices is None, f"{name} must run on every device"
    assert SCENARIOS["state.cuda_get_state"].devices == ("cuda",)
    for name in ACCELERATOR_SIZES:
        assert SCENARIOS[name].devices == ("cuda", "mps"), name


def test_scramble_catches_a_scenario_that_forgets_to_seed() -> None:
    scramble()
    first = torch.rand(3, 4)
    scramble()
    assert digest(torch.rand(3, 4)) != digest(first)


@pytest.mark.parametrize("name", CPU_SCENARIOS)
def test_scenario_repeats_bitwise_across_scrambled_rng(name: str) -> None:
    first = run(name)
    second = run(name)
    assert first, name
    assert digests(first) == digests(second)


# --- seed ---------------------------------------------------------------------------------


def test_the_lesson_reproduces_its_published_values() -> None:
    scenario = SCENARIOS["seed.manual_seed_246_rand"]
    outputs = run("seed.manual_seed_246_rand")
    assert set(scenario.references) == {"first", "second"}
    for name, reference in scenario.references.items():
        assert reference["decimals"] == 4
        assert "reproducibility lesson" in reference["source"]
        values = outputs[name]
        assert values.dtype == torch.float32 and values.shape == (3, 4)
        expected = torch.tensor(reference["values"], dtype=torch.float64)
        gap = (values.double() - expected).abs().max().item()
        assert gap <= 0.5e-4 + 1e-9, f"{name}: {gap}"
    assert not torch.equal(outputs["first"], outputs["second"])


def test_the_lesson_reference_values_are_the_tutorials() -> None:
    references = SCENARIOS["seed.manual_seed_246_rand"].references
    assert references["first"]["values"][0] == [0.7902, 0.9813, 0.5914, 0.3650]
    assert references["second"]["values"][2] == [0.0846, 0.1081, 0.6236, 0.3008]


def test_reseeding_before_each_call_repeats_the_draw() -> None:
    outputs = run("seed.reseed_each_call")
    assert digest(outputs["first"]) == digest(outputs["second"])
    lesson = run("seed.manual_seed_246_rand")
    assert torch.equal(outputs["first"], lesson["first"])


def test_seed_functions_share_one_stream() -> None:
    outputs = run("seed.torch_seed_functions")
    assert torch.equal(outputs["manual_seed"], outputs["random_manual_seed"])
    assert torch.equal(outputs["manual_seed"], outputs["generator"])
    assert outputs["initial_seed"].tolist() == [7]


def test_cpu_seed_keeps_only_the_low_32_bits() -> None:
    outputs = run("seed.seed_values")
    assert torch.equal(outputs["s5"], outputs["s2p32_plus5"])
    assert not torch.equal(outputs["zero"], outputs["s5"])
    assert not torch.equal(outputs["s2p63_plus1"], outputs["s2p64_minus1"])


def test_fork_rng_leaves_the_outer_stream_untouched() -> None:
    outputs = run("seed.fork_rng")
    torch.manual_seed(5)
    unforked_first = torch.rand(3, 4)
    unforked_second = torch.rand(3, 4)
    torch.manual_seed(99)
    inner = torch.rand(3, 4)
    assert torch.equal(outputs["outer_first"], unforked_first)
    assert torch.equal(outputs["outer_second"], unforked_second)
    assert torch.equal(outputs["inner"], inner)


# --- rng ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["rng.rand", "rng.randn", "rng.randint", "rng.exponential", "rng.poisson"]
)
def test_explicit_cpu_generator_gives_the_global_stream(name: str) -> None:
    outputs = run(name)
    for size in ("small", "large"):
        assert torch.equal(outputs[size], outputs[f"generator_{size}"]), size


def test_sizes_and_ranges() -> None:
    outputs = run("rng.rand")
    assert outputs["small"].shape == (3, 4) and outputs["large"].numel() == 2**20
    assert outputs["large"].min().item() >= 0 and outputs["large"].max().item() < 1
    ints = run("rng.randint")
    assert ints["large"].dtype == torch.int64
    assert ints["large"].min().item() >= 0 and ints["large"].max().item() < 1000
    assert ints["wide_large"].abs().max().item() > 2**32


def test_randperm_outputs_are_permutations() -> None:
    outputs = run("rng.randperm")
    for n in (10, 1000, 2**20):
        for name in (f"n{n}", f"generator_n{n}"):
            assert torch.bincount(outputs[name], minlength=n).eq(1).all(), name
    huge = run("rng.randperm_huge")["perm"]
    assert huge.numel() == 2**24 + 1
    assert torch.bincount(huge, minlength=2**24 + 1).eq(1).all()


def test_bernoulli_and_multinomial_semantics() -> None:
    outputs = run("rng.bernoulli")
    for name, tensor in outputs.items():
        assert set(tensor.unique().tolist()) <= {0.0, 1.0}, name
    share = outputs["scalar_p_large"].mean().item()
    assert abs(share - 0.3) < 0.01
    samples = run("rng.multinomial")
    assert samples["one_sample"].shape == (8, 1)
    assert samples["with_replacement"].shape == (8, 20)
    for row in samples["without_replacement"]:
        assert sorted(row.tolist()) == list(range(10))
    for row in samples["large_without_replacement"]:
        assert row.unique().numel() == 1024


def test_dtype_scenarios_draw_in_their_dtype() -> None:
    for name in ("float16", "bfloat16", "float64"):
        for output, tensor in run(f"rng.dtype_{name}").items():
            assert tensor.dtype == getattr(torch, name), output


def test_a_dtype_a_kernel_lacks_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = MODULES["rng"]

    def missing(*args: object, **kwargs: object) -> torch.Tensor:
        raise RuntimeError("\"normal_kernel_cpu\" not implemented for 'Half'")

    monkeypatch.setattr(torch, "randn", missing)
    with pytest.raises(Unavailable, match="randn in float16"):
        rng.dtype_float16(CPU)

    def broken(*args: object, **kwargs: object) -> torch.Tensor:
        raise RuntimeError("something else")

    monkeypatch.setattr(torch, "randn", broken)
    with pytest.raises(RuntimeError, match="something else"):
        rng.dtype_float16(CPU)


def test_distributions_sample_counts() -> None:
    outputs = run("rng.distributions")
    assert outputs["normal_large"].shape == (2**20,)
    assert outputs["dirichlet_large"].shape == (2**16, 4)
    assert torch.allclose(outputs["dirichlet_large"].sum(-1), torch.ones(2**16))
    assert outputs["multivariate_normal_small"].shape == (12, 3)


# --- state --------------------------------------------------------------------------------


def test_cpu_state_bytes() -> None:
    outputs = run("state.cpu_get_state")
    assert outputs["seeded"].dtype == torch.uint8 and outputs["seeded"].numel() == 5056
    assert not torch.equal(outputs["seeded"], outputs["after_draws"])
    generator = run("state.generator_state")
    assert torch.equal(generator["seeded"], outputs["seeded"])


def test_set_state_round_trips_repeat_the_draws() -> None:
    outputs = run("state.set_state_roundtrip")
    for kind in ("global", "generator"):
        for draw in ("rand", "randn_small", "randn_large"):
            first = outputs[f"{kind}_first.{draw}"]
            assert digest(first) == digest(outputs[f"{kind}_second.{draw}"]), (kind, draw)
    moved = run("state.default_to_generator")
    for draw in ("rand", "randn_small", "randn_large"):
        assert torch.equal(moved[f"default.{draw}"], moved[f"generator.{draw}"])


def test_saved_states_are_shipped_and_named_by_torch_version() -> None:
    state = MODULES["state"]
    files = state.saved_state_files()
    names = {path.name for path in files}
    assert {f"cpu-torch-2.13.0-seed-{seed}.bin" for seed in state.SAVED_SEEDS} <= names
    assert all(path.stat().st_size == 5056 for path in files)
    outputs = run("state.restore_saved")
    assert "torch_2_13_0_seed_1234.randn_large" in outputs
    assert len(outputs) == 3 * len(files)


def test_restoring_a_saved_state_resumes_its_stream() -> None:
    state = MODULES["state"]
    outputs = run("state.restore_saved")
    for seed in state.SAVED_SEEDS:
        torch.manual_seed(seed)
        state.advance_saved_stream()
        expected = {
            "rand": torch.rand(3, 4),
            "randn_small": torch.randn(3),
            "randn_large": torch.randn(1024),
        }
        for draw, tensor in expected.items():
            assert torch.equal(outputs[f"torch_2_13_0_seed_{seed}.{draw}"], tensor), (seed, draw)


def test_this_torch_writes_its_saved_states_byte_for_byte(tmp_path: Path) -> None:
    state = MODULES["state"]
    version = torch.__version__.split("+", 1)[0]
    for seed in state.SAVED_SEEDS:
        shipped = state.SAVED_STATES / f"cpu-torch-{version}-seed-{seed}.bin"
        if not shipped.exists():
            pytest.skip(f"no state saved by torch {version}")
        written = state.save_cpu_state(tmp_path, seed)
        assert written.name == shipped.name
        assert written.read_bytes() == shipped.read_bytes()


def test_cuda_state_is_unavailable_off_cuda() -> None:
    with pytest.raises(Unavailable):
        MODULES["state"].cuda_get_state(CPU)
