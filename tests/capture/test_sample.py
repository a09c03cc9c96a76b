"""Kept samples (audit/capture/sample.py): whole small outputs, fixed positions for large ones.

Expected bytes come from numpy / torch directly (`.numpy()` of the tensor, or of its
same-width integer view for dtypes numpy lacks), never from audit.capture.hashing.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.capture.sample import SAMPLE_SIZE, WHOLE_UP_TO, Sample, sample_positions, take_sample

torch = pytest.importorskip("torch")

pytestmark = [
    pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor:UserWarning"),
    pytest.mark.filterwarnings("ignore:Sparse invariant checks:UserWarning"),
    pytest.mark.filterwarnings("ignore:ComplexHalf support is experimental:UserWarning"),
]


def le_bytes(tensor) -> np.ndarray:
    """Little-endian element bytes of a dense tensor, one row per element."""
    flat = tensor.detach().resolve_conj().contiguous().reshape(-1)
    width = flat.element_size()
    data = flat.view(torch.uint8).numpy().reshape(-1, width)
    if np.little_endian:
        return data
    return data.reshape(-1, width // (2 if flat.is_complex() else 1))[:, ::-1].reshape(
        -1, width)  # pragma: no cover - big-endian hosts only


def test_sizes_are_the_documented_ones():
    assert WHOLE_UP_TO == 256 and SAMPLE_SIZE == 256


# --- whole outputs ---------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(), (1,), (7, 3), (16, 16), (0,), (0, 4)])
def test_small_outputs_are_kept_whole(shape):
    count = int(np.prod(shape, dtype=np.int64))
    tensor = torch.arange(count, dtype=torch.float32).reshape(shape) * 1.25 - 3
    sample = take_sample(tensor)
    assert sample.index is None
    assert sample.dtype == "float32"
    assert sample.data == tensor.numpy().astype("<f4").tobytes()
    assert len(sample.data) == 4 * count


def test_whole_up_to_boundary():
    assert sample_positions(WHOLE_UP_TO) is None
    assert sample_positions(WHOLE_UP_TO + 1) is not None
    assert take_sample(torch.zeros(WHOLE_UP_TO)).index is None
    assert take_sample(torch.zeros(WHOLE_UP_TO + 1)).index is not None


def test_whole_sample_of_a_non_contiguous_view_is_in_c_order():
    matrix = torch.arange(12, dtype=torch.int32).reshape(3, 4)
    sample = take_sample(matrix.t())
    assert sample.data == np.arange(12, dtype="<i4").reshape(3, 4).T.tobytes()


# --- sampled outputs -------------------------------------------------------------------------

@pytest.mark.parametrize("numel", [WHOLE_UP_TO + 1, 1000, 65_537, 10 ** 6, 10 ** 12])
def test_positions_sorted_distinct_and_spanning(numel):
    positions = sample_positions(numel)
    assert positions is not None
    assert len(positions) == SAMPLE_SIZE
    assert positions[0] == 0 and positions[-1] == numel - 1
    assert all(a < b for a, b in zip(positions, positions[1:]))
    assert all(isinstance(p, int) for p in positions)
    assert positions == sample_positions(numel)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=WHOLE_UP_TO + 1, max_value=2 ** 40))
def test_positions_property(numel):
    positions = sample_positions(numel)
    assert len(positions) == SAMPLE_SIZE
    assert positions[0] == 0 and positions[-1] == numel - 1
    assert all(0 <= a < b < numel for a, b in zip(positions, positions[1:]))


def test_positions_are_evenly_spaced():
    positions = sample_positions(25_501)  # (25_501 - 1) / 255 = 100 exactly
    assert positions == list(range(0, 25_501, 100))


def test_same_shape_same_positions_and_bytes_at_them():
    a = torch.arange(3000, dtype=torch.float64).reshape(30, 100)
    b = torch.linspace(-1, 1, 3000, dtype=torch.float64).reshape(30, 100)
    sa, sb = take_sample(a), take_sample(b)
    assert sa.index == sb.index == sample_positions(3000)
    assert len(sa.index) == SAMPLE_SIZE
    assert sa.index[0] == 0 and sa.index[-1] == 2999
    assert sa.data == np.asarray(sa.index, dtype="<f8").tobytes()  # a[i] == i
    assert sb.data == b.reshape(-1).numpy()[sb.index].astype("<f8").tobytes()


def test_sampled_view_equals_sampled_copy():
    base = torch.arange(40 * 50, dtype=torch.int64).reshape(40, 50)
    view = base.t()[:, ::2]
    assert take_sample(view) == take_sample(view.contiguous())
    assert take_sample(view) != take_sample(base[:, :20])


# --- exact bytes for every kind of element ----------------------------------------------------

@pytest.mark.parametrize("name", ["bfloat16", "float16", "complex32", "complex64",
                                  "complex128", "float8_e5m2", "bool", "int64"])
@pytest.mark.parametrize("count", [10, 1000])
def test_samples_keep_exact_bytes(name, count):
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        pytest.skip(f"torch {torch.__version__} has no dtype {name}")
    # values whose bytes are all different: signed zeros, NaN payloads included
    raw = torch.from_numpy(np.random.default_rng(7).integers(0, 256, size=count * 16,
                                                            dtype=np.uint8))
    if name == "bool":
        raw = raw % 2
    tensor = raw.view(dtype)[:count]
    sample = take_sample(tensor)
    assert sample.dtype == name
    rows = le_bytes(tensor)
    if count <= WHOLE_UP_TO:
        assert sample.index is None
        assert sample.data == rows.tobytes()
    else:
        assert sample.index == sample_positions(count)
        assert sample.data == rows[sample.index].tobytes()


def test_bfloat16_and_complex_bits_not_values():
    patterns = np.array([0x0000, 0x8000, 0x7FC0, 0x7FC1], dtype=np.uint16)
    bits = torch.from_numpy(patterns.view(np.int16).copy())
    sample = take_sample(bits.view(torch.bfloat16))
    assert sample.data == np.array([0x0000, 0x8000, 0x7FC0, 0x7FC1], dtype="<u2").tobytes()
    z = torch.complex(torch.tensor([0.0, -0.0]), torch.tensor([-0.0, 0.0]))
    assert take_sample(z).data == np.array([0.0, -0.0, -0.0, 0.0], dtype="<f4").tobytes()
    lazy = torch.tensor([1 + 2j], dtype=torch.complex64).conj()
    assert take_sample(lazy).data == np.array([1.0, -2.0], dtype="<f4").tobytes()


# --- sparse and quantized ---------------------------------------------------------------------

def test_sparse_sample_is_the_coalesced_values():
    indices = torch.tensor([[1, 0, 0], [0, 2, 2]])
    values = torch.tensor([4.0, 1.0, 2.0])
    sparse = torch.sparse_coo_tensor(indices, values, (2, 3))
    sample = take_sample(sparse)
    assert sample.dtype == "float32" and sample.index is None
    assert sample.data == np.array([3.0, 4.0], dtype="<f4").tobytes()  # (0,2)=1+2, (1,0)=4


def test_large_sparse_sample_is_over_values():
    count = 1000
    indices = torch.arange(count).unsqueeze(0) * 3
    values = torch.arange(count, dtype=torch.float64) / 7
    sparse = torch.sparse_coo_tensor(indices, values, (3 * count,))
    sample = take_sample(sparse)
    assert sample.index == sample_positions(count)
    assert sample.data == values.numpy()[sample.index].astype("<f8").tobytes()


def test_quantized_sample_is_int_repr():
    x = torch.linspace(-2, 2, 12).reshape(3, 4)
    q = torch.quantize_per_tensor(x, 0.05, 10, torch.quint8)
    sample = take_sample(q)
    assert sample.dtype == "uint8" and sample.index is None
    assert sample.data == q.int_repr().numpy().tobytes()
    rescaled = torch._make_per_tensor_quantized_tensor(q.int_repr(), 0.1, 10)
    assert take_sample(rescaled) == sample  # the sample is the integers; scale is in the digest
    big = torch.quantize_per_tensor(torch.linspace(-2, 2, 5000), 0.05, 0, torch.qint8)
    sampled = take_sample(big)
    assert sampled.dtype == "int8"
    assert sampled.data == big.int_repr().numpy()[sampled.index].tobytes()


# --- JSON ------------------------------------------------------------------------------------

@pytest.mark.parametrize("tensor", [
    torch.tensor([1.0, -0.0, float("nan")]),
    torch.arange(1000, dtype=torch.bfloat16),
    torch.zeros(0, 3),
    torch.tensor([1 + 1j, 2 - 2j], dtype=torch.complex128),
], ids=["whole", "sampled", "empty", "complex"])
def test_json_round_trip(tensor):
    sample = take_sample(tensor)
    encoded = sample.to_json()
    # standard positions are stored as the element count they come from, not 256 numbers
    assert set(encoded) == ({"dtype", "of", "b64"} if sample.index else {"dtype", "index", "b64"})
    assert isinstance(encoded["b64"], str)
    through_text = json.loads(json.dumps(encoded))
    assert Sample.from_json(through_text) == sample
    assert Sample.from_json(encoded) == sample


def test_older_files_with_explicit_positions_still_read():
    sample = take_sample(torch.arange(1000, dtype=torch.float32))
    old_format = {"dtype": "float32", "index": sample.index,
                  "b64": sample.to_json()["b64"]}
    assert Sample.from_json(old_format).index == sample.index
    assert Sample.from_json(old_format).data == sample.data


def test_json_is_plain_base64_of_the_bytes():
    sample = Sample("uint8", [0, 5], b"\x00\xff")
    assert sample.to_json() == {"dtype": "uint8", "index": [0, 5], "b64": "AP8="}
    assert Sample.from_json({"dtype": "uint8", "b64": "AP8="}) == Sample("uint8", None, b"\x00\xff")
