"""The canonical digest (audit/capture/hashing.py) on real tensors, case by case.

Expected digests are rebuilt here from the documented format, never from the code under
test: BLAKE3 over a JSON header (sorted keys, json's default separators, then NUL), then
for each part a JSON part header (NUL-terminated) and the part's little-endian C-order
bytes. `spec_digest` writes those headers by hand, so a silent change of the format (key
names, separators, part order, the NUL, the format version) fails here. A few digests are
also pinned as literal hex, the way numpy's random tests pin streams.
"""

from __future__ import annotations

import types

import blake3
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from audit.capture import hashing  # noqa: E402
from audit.capture.hashing import (  # noqa: E402
    FORMAT,
    THREADED_FROM_BYTES,
    digest,
    tensor_parts,
    to_little_endian,
)

pytestmark = [
    pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor:UserWarning"),
    pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta:UserWarning"),
    pytest.mark.filterwarnings("ignore:Sparse invariant checks:UserWarning"),
    pytest.mark.filterwarnings("ignore:ComplexHalf support is experimental:UserWarning"),
]


# --- the format, written out by hand -------------------------------------------------------

def _shape(shape) -> str:
    return "[" + ", ".join(str(int(n)) for n in shape) + "]"


def spec_digest(kind: str, dtype: str, shape, parts, threads: bool = False) -> str:
    """Digest from the documented format; parts are (name, dtype, shape, little-endian bytes)."""
    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO) if threads else blake3.blake3()
    hasher.update(
        f'{{"dtype": "{dtype}", "format": "repro-audit-digest/1", "kind": "{kind}", '
        f'"shape": {_shape(shape)}}}'.encode() + b"\0"
    )
    for name, part_dtype, part_shape, data in parts:
        hasher.update(
            f'{{"dtype": "{part_dtype}", "nbytes": {len(data)}, "part": "{name}", '
            f'"shape": {_shape(part_shape)}}}'.encode() + b"\0"
        )
        hasher.update(data)
    return hasher.hexdigest()


def dense_spec(dtype: str, shape, data: bytes) -> str:
    return spec_digest("dense", dtype, shape, [("values", dtype, shape, data)])


def test_format_version_is_the_documented_one():
    assert FORMAT == "repro-audit-digest/1"


# --- dtype tables ----------------------------------------------------------------------------

DENSE_DTYPES = [
    "float64", "float32", "float16", "bfloat16",
    "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz", "float8_e8m0fnu",
    "float4_e2m1fn_x2",
    "complex32", "complex64", "complex128",
    "int8", "int16", "int32", "int64",
    "uint8", "uint16", "uint32", "uint64",
    "bool",
]
# Sub-byte shells: one byte per element, no arithmetic, but views and copies work.
SHELL_DTYPES = [f"int{n}" for n in range(1, 8)] + [f"uint{n}" for n in range(1, 8)] + [
    "bits8", "bits16", "bits1x8", "bits2x4", "bits4x2"]

RAW = bytes(range(1, 17))  # 16 bytes: a whole number of elements of every width up to 16
ZERO_ONE = bytes([1, 0, 0, 1, 1, 1, 0, 1, 0, 0, 1, 0, 1, 1, 1, 0])  # valid bool bytes too


def torch_dtype(name: str):
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        pytest.skip(f"torch {torch.__version__} has no dtype {name}")
    return dtype


def from_bytes(data: bytes, dtype) -> torch.Tensor:
    """A tensor of `dtype` whose little-endian element bytes are `data` (a fresh copy)."""
    raw = torch.frombuffer(bytearray(data), dtype=torch.uint8).clone()
    try:
        return raw.view(dtype)
    except RuntimeError as err:  # pragma: no cover - depends on the torch version
        pytest.skip(f"cannot view uint8 as {dtype}: {err}")


def raw_for(name: str) -> bytes:
    return ZERO_ONE if name == "bool" else RAW


@pytest.mark.parametrize("name", DENSE_DTYPES + SHELL_DTYPES)
def test_dense_dtype_matches_the_format_and_is_stable(name):
    dtype = torch_dtype(name)
    data = raw_for(name)
    tensor = from_bytes(data, dtype)
    expected = dense_spec(name, tuple(tensor.shape), data)
    assert digest(tensor) == expected
    assert digest(from_bytes(data, dtype)) == expected  # a fresh tensor, same bytes
    if name not in SHELL_DTYPES:  # shells have no copy kernel, so no clone()
        assert digest(tensor.clone()) == expected
    changed = bytearray(data)
    changed[-1] ^= 1
    assert digest(from_bytes(bytes(changed), dtype)) != expected


@pytest.mark.parametrize("name", DENSE_DTYPES + SHELL_DTYPES)
def test_dtype_is_in_the_header(name):
    """The same 16 bytes as `name` and as a one-byte integer dtype: different digests."""
    dtype = torch_dtype(name)
    tensor = from_bytes(ZERO_ONE, dtype)
    other = "int8" if name == "uint8" else "uint8"
    assert digest(tensor) != digest(from_bytes(ZERO_ONE, getattr(torch, other)))
    assert digest(tensor) != dense_spec(other, (16,), ZERO_ONE)
    assert digest(tensor) == dense_spec(name, tuple(tensor.shape), ZERO_ONE)


def test_all_dtypes_with_the_same_bytes_differ():
    present = [getattr(torch, n) for n in DENSE_DTYPES + SHELL_DTYPES
               if isinstance(getattr(torch, n, None), torch.dtype)]
    digests = {digest(from_bytes(ZERO_ONE, dtype)) for dtype in present}
    assert len(digests) == len(present)


def test_int32_and_float32_views_of_the_same_bytes_differ():
    ints = torch.tensor([1065353216, -1073741824, 0], dtype=torch.int32)
    floats = ints.view(torch.float32)
    assert floats.tolist() == [1.0, -2.0, 0.0]
    assert digest(ints) != digest(floats)
    assert digest(ints) == dense_spec("int32", (3,), np.array([1065353216, -1073741824, 0],
                                                               dtype="<i4").tobytes())
    assert digest(floats) == dense_spec("float32", (3,), np.array([1.0, -2.0, 0.0],
                                                                   dtype="<f4").tobytes())


# Pinned: any change of these is a change of the digest format (or of torch's bytes).
PINNED = {
    "float32 arange(6) (2, 3)": (
        lambda: torch.arange(6, dtype=torch.float32).reshape(2, 3),
        "66fd6b353197ef42bebd09cf76316fe8d22e5d1f8370be04a26235e45e0e96b6"),
    "int64 arange(5)": (
        lambda: torch.arange(5, dtype=torch.int64),
        "044bde705b9d27992c7f0e60ba94a6db30b1190deb2378a879f4945bb7fd5910"),
    "bfloat16 [1, -2.5, 3]": (
        lambda: torch.tensor([1.0, -2.5, 3.0], dtype=torch.bfloat16),
        "93d060a009c4e3fcfb74bce7ab7e50187ac43ec08d4b90f8039565b82c7bf920"),
    "complex64 [1+2j, -3j]": (
        lambda: torch.tensor([1 + 2j, -3j], dtype=torch.complex64),
        "5ecdc161b1552a2df939e25bea2c883180bd1e73af420fed0406550b2d2f02e3"),
    "bool 0-dim True": (
        lambda: torch.tensor(True),
        "f61ca5c4f032b934cf684450839054f92ee32fba1c2cdc137cc5e3f0177140e2"),
    "float16 empty (0, 3)": (
        lambda: torch.zeros(0, 3, dtype=torch.float16),
        "ebf8fc970df0bd741af23a834a9381a81a0b4056968c4afa50e7f004cc113f4e"),
}


@pytest.mark.parametrize("case", sorted(PINNED))
def test_pinned_digests(case):
    make, expected = PINNED[case]
    assert digest(make()) == expected


def test_pinned_float32_is_the_documented_format():
    expected = dense_spec("float32", (2, 3), np.arange(6, dtype="<f4").tobytes())
    assert expected == PINNED["float32 arange(6) (2, 3)"][1]


# --- shapes ----------------------------------------------------------------------------------

def test_same_bytes_different_shapes_differ():
    base = torch.arange(6, dtype=torch.float32)
    shapes = [(6,), (2, 3), (3, 2), (1, 6), (6, 1), (1, 2, 3)]
    digests = [digest(base.reshape(shape)) for shape in shapes]
    assert len(set(digests)) == len(shapes)
    for shape, value in zip(shapes, digests):
        assert value == dense_spec("float32", shape, np.arange(6, dtype="<f4").tobytes())


def test_zero_dim():
    scalar = torch.tensor(1.5)
    assert scalar.dim() == 0
    assert digest(scalar) == dense_spec("float32", (), np.float32(1.5).tobytes())
    assert digest(scalar) != digest(scalar.reshape(1))
    assert digest(torch.tensor(1.5, dtype=torch.float64)) != digest(scalar)


def test_empty_tensors_of_different_shapes_differ():
    shapes = [(0,), (0, 3), (3, 0), (0, 0), (2, 0, 5)]
    digests = [digest(torch.empty(shape)) for shape in shapes]
    assert len(set(digests)) == len(shapes)
    for shape, value in zip(shapes, digests):
        assert value == dense_spec("float32", shape, b"")
    assert digest(torch.empty(0, dtype=torch.int32)) != digest(torch.empty(0))


# --- layout never matters, only the logical C-order bytes ------------------------------------

BASE = torch.arange(60, dtype=torch.float32).reshape(3, 4, 5)
VIEWS = {
    "transpose": lambda: BASE.transpose(0, 2),
    "2-D .t()": lambda: BASE[0].t(),
    "permute": lambda: BASE.permute(1, 2, 0),
    "step slices": lambda: BASE[:, ::2, 1::3],
    "narrow": lambda: BASE[1:, 1:3],
    "diagonal": lambda: BASE[0].diagonal(),
    "unfold (overlapping)": lambda: BASE.reshape(-1).unfold(0, 4, 3),
    "as_strided": lambda: BASE.as_strided((4, 3), (1, 7), 2),
}


@pytest.mark.parametrize("name", sorted(VIEWS))
def test_views_hash_like_their_contiguous_copy(name):
    view = VIEWS[name]()
    assert not view.is_contiguous()
    copy = view.contiguous()
    assert digest(view) == digest(copy)
    assert digest(view) == dense_spec("float32", tuple(view.shape),
                                      copy.numpy().astype("<f4").tobytes())


def test_transposed_view_is_not_hashed_in_storage_order():
    matrix = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    assert digest(matrix.t()) != digest(matrix.reshape(4, 3))  # same storage, same shape


def test_expanded_stride_zero():
    row = torch.tensor([1.0, 2.0, 3.0])
    wide = row.expand(4, 3)
    assert wide.stride() == (0, 1)
    assert digest(wide) == digest(wide.contiguous())
    assert digest(wide) == dense_spec("float32", (4, 3),
                                      np.tile(np.array([1, 2, 3], dtype="<f4"), 4).tobytes())
    assert digest(wide) != digest(row)


def test_channels_last_equals_contiguous():
    images = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    last = images.to(memory_format=torch.channels_last)
    assert not last.is_contiguous() and last.is_contiguous(memory_format=torch.channels_last)
    assert digest(last) == digest(images)
    volumes = images.reshape(1, 2, 3, 4, 5)
    assert digest(volumes.to(memory_format=torch.channels_last_3d)) == digest(volumes)


# --- lazy bits, autograd ---------------------------------------------------------------------

@pytest.mark.parametrize("name", ["complex32", "complex64", "complex128"])
def test_lazy_conj_bit_is_resolved(name):
    dtype = torch_dtype(name)
    x = torch.tensor([1 + 2j, -3 + 0.5j, 4 - 1j], dtype=torch.complex128).to(dtype)
    lazy = x.conj()
    assert lazy.is_conj()
    resolved = lazy.resolve_conj()
    assert not resolved.is_conj()
    assert digest(lazy) == digest(resolved)
    assert digest(lazy) != digest(x)
    expected = np.conj(np.array([1 + 2j, -3 + 0.5j, 4 - 1j]))
    if name != "complex32":
        assert digest(lazy) == dense_spec(name, (3,), expected.astype(
            "<c8" if name == "complex64" else "<c16").tobytes())


def test_lazy_conj_bit_on_a_non_contiguous_view():
    x = torch.tensor([[1 + 2j, 3 - 4j], [5 + 6j, -7j]], dtype=torch.complex64)
    lazy = x.t().conj()
    assert lazy.is_conj() and not lazy.is_contiguous()
    assert digest(lazy) == digest(x.t().conj().resolve_conj().contiguous())


@pytest.mark.skipif(not hasattr(torch, "_neg_view"), reason="torch._neg_view is absent")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.complex64])
def test_lazy_neg_bit_is_resolved(dtype):
    x = torch.tensor([1.0, -2.5, 3.0], dtype=dtype)
    lazy = torch._neg_view(x)
    assert lazy.is_neg()
    assert digest(lazy) == digest(lazy.resolve_neg())
    assert digest(lazy) == digest(-x)
    assert digest(lazy) != digest(x)


def test_requires_grad_and_grad_fn_do_not_matter():
    x = torch.tensor([1.0, 2.0, 3.0])
    leaf = x.clone().requires_grad_()
    assert digest(leaf) == digest(x)
    y = leaf * 2
    assert y.grad_fn is not None
    assert digest(y) == digest(torch.tensor([2.0, 4.0, 6.0]))


# --- bitwise, not by value -------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
def test_signed_zeros_differ(dtype):
    plus, minus = torch.tensor([0.0], dtype=dtype), torch.tensor([-0.0], dtype=dtype)
    assert torch.equal(plus, minus)  # by value they are the same: why values are not hashed
    assert digest(plus) != digest(minus)


def test_complex_signed_zeros_differ():
    a = torch.complex(torch.tensor([0.0]), torch.tensor([0.0]))
    b = torch.complex(torch.tensor([-0.0]), torch.tensor([0.0]))
    c = torch.complex(torch.tensor([0.0]), torch.tensor([-0.0]))
    assert len({digest(a), digest(b), digest(c)}) == 3


def test_nan_payloads_differ():
    bits = np.array([0x7FC00000, 0x7FC00001, 0x7F800001, 0xFFC00000], dtype=np.uint32)
    nans = [torch.from_numpy(bits[i:i + 1].view(np.int32).copy()).view(torch.float32)
            for i in range(len(bits))]
    assert all(torch.isnan(n).all() for n in nans)
    digests = [digest(n) for n in nans]
    assert len(set(digests)) == len(nans)
    for pattern, value in zip(bits, digests):
        assert value == dense_spec("float32", (1,), np.array([pattern], dtype="<u4").tobytes())


def test_same_value_different_bytes_differ_fp8():
    name = "float8_e5m2"
    dtype = torch_dtype(name)
    plus, minus = from_bytes(b"\x00", dtype), from_bytes(b"\x80", dtype)
    assert plus.float().item() == minus.float().item() == 0.0
    assert digest(plus) != digest(minus)


# --- sparse ----------------------------------------------------------------------------------

def coo(indices, values, size=(2, 3)):
    return torch.sparse_coo_tensor(torch.tensor(indices), torch.tensor(values), size)


COALESCED_INDICES = [[0, 1, 1], [2, 0, 2]]
COALESCED_VALUES = [3.0, 4.0, 5.0]


def test_sparse_coo_matches_the_format():
    tensor = coo(COALESCED_INDICES, COALESCED_VALUES).coalesce()
    expected = spec_digest("sparse_coo", "float32", (2, 3), [
        ("indices", "int64", (2, 3), np.array(COALESCED_INDICES, dtype="<i8").tobytes()),
        ("values", "float32", (3,), np.array(COALESCED_VALUES, dtype="<f4").tobytes()),
    ])
    assert digest(tensor) == expected


def test_sparse_coo_uncoalesced_equals_coalesced():
    reference = digest(coo(COALESCED_INDICES, COALESCED_VALUES).coalesce())
    shuffled = coo([[1, 0, 1], [2, 2, 0]], [5.0, 3.0, 4.0])
    duplicated = coo([[1, 0, 0, 1], [0, 2, 2, 2]], [4.0, 1.0, 2.0, 5.0])
    for tensor in (shuffled, duplicated):
        assert not tensor.is_coalesced()
        assert digest(tensor) == reference


def test_sparse_coo_different_values_size_or_dense_differ():
    reference = coo(COALESCED_INDICES, COALESCED_VALUES)
    others = [
        coo(COALESCED_INDICES, [3.0, 4.0, 6.0]),
        coo(COALESCED_INDICES, COALESCED_VALUES, size=(2, 4)),
        coo(COALESCED_INDICES, [3.0, 4.0, 5.0]).double(),
        reference.to_dense(),
    ]
    digests = {digest(reference)} | {digest(other) for other in others}
    assert len(digests) == 1 + len(others)


def test_sparse_coo_hybrid_and_requires_grad():
    values = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    hybrid = torch.sparse_coo_tensor(torch.tensor([[0, 2]]), values, (3, 2))
    assert digest(hybrid) == spec_digest("sparse_coo", "float32", (3, 2), [
        ("indices", "int64", (1, 2), np.array([[0, 2]], dtype="<i8").tobytes()),
        ("values", "float32", (2, 2), values.numpy().astype("<f4").tobytes()),
    ])
    assert digest(hybrid.clone().requires_grad_()) == digest(hybrid)


def test_sparse_csr_hashes_its_dense_equivalent_under_its_own_kind():
    dense = torch.tensor([[0.0, 1.5, 0.0], [2.0, 0.0, -3.0]])
    csr = dense.to_sparse_csr()
    expected = spec_digest("dense_from_sparse_csr", "float32", (2, 3), [
        ("values", "float32", (2, 3), dense.numpy().astype("<f4").tobytes())])
    assert digest(csr) == expected
    assert digest(dense.clone().to_sparse_csr()) == expected
    assert digest(csr) != digest(dense)
    assert digest(dense.to_sparse_csc()) not in (digest(csr), digest(dense))
    assert digest(torch.tensor([[0.0, 1.5, 0.0], [2.0, 0.0, 3.0]]).to_sparse_csr()) != expected


# --- quantized -------------------------------------------------------------------------------

@pytest.fixture
def no_quantized_view(monkeypatch):
    """Make `Tensor.view` on a quantized tensor fail: hashing must use int_repr()."""
    real_view = torch.Tensor.view

    def guarded(self, *args, **kwargs):
        if self.is_quantized:
            raise AssertionError("view() called on a quantized tensor")
        return real_view(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "view", guarded)


QX = torch.tensor([[-1.0, 0.0, 1.5], [2.0, 3.5, 4.0]])


def test_quantized_per_tensor_matches_the_format(no_quantized_view):
    q = torch.quantize_per_tensor(QX, 0.5, 3, torch.quint8)
    ints = q.int_repr()
    assert ints.tolist() == [[1, 3, 6], [7, 10, 11]]
    expected = spec_digest("quantized", "quint8", (2, 3), [
        ("int_repr", "uint8", (2, 3), bytes([1, 3, 6, 7, 10, 11])),
        ("scale:per_tensor_affine", "float64", (1,), np.array([0.5], dtype="<f8").tobytes()),
        ("zero_point", "int64", (1,), np.array([3], dtype="<i8").tobytes()),
    ])
    assert digest(q) == expected
    assert digest(torch.quantize_per_tensor(QX.clone(), 0.5, 3, torch.quint8)) == expected


def test_quantized_per_tensor_scale_and_zero_point_matter(no_quantized_view):
    q = torch.quantize_per_tensor(QX, 0.5, 3, torch.quint8)
    ints = q.int_repr()
    rescaled = torch._make_per_tensor_quantized_tensor(ints, 0.25, 3)
    shifted = torch._make_per_tensor_quantized_tensor(ints, 0.5, 4)
    assert torch.equal(rescaled.int_repr(), ints) and torch.equal(shifted.int_repr(), ints)
    digests = {digest(q), digest(rescaled), digest(shifted), digest(ints)}
    assert len(digests) == 4


@pytest.mark.parametrize("dtype", [torch.qint8, torch.qint32, torch.quint4x2])
def test_quantized_other_dtypes(dtype, no_quantized_view):
    q = torch.quantize_per_tensor(QX.reshape(-1), 0.5, 0, dtype)
    kind, parts = tensor_parts(q)
    assert kind == "quantized" and parts[0].name == "int_repr"
    assert parts[0].data.tobytes() == q.int_repr().numpy().tobytes()
    assert digest(q) != digest(torch.quantize_per_tensor(QX.reshape(-1), 0.25, 0, dtype))


SCALES = torch.tensor([0.5, 0.25], dtype=torch.float64)
POINTS = torch.tensor([0, 2])


def test_quantized_per_channel_matches_the_format(no_quantized_view):
    square = QX[:, :2]
    q = torch.quantize_per_channel(square, SCALES, POINTS, 0, torch.quint8)
    expected = spec_digest("quantized", "quint8", (2, 2), [
        ("int_repr", "uint8", (2, 2), q.int_repr().numpy().tobytes()),
        ("scale:per_channel_affine:axis=0", "float64", (2,),
         np.array([0.5, 0.25], dtype="<f8").tobytes()),
        ("zero_point", "int64", (2,), np.array([0, 2], dtype="<i8").tobytes()),
    ])
    assert digest(q) == expected


def test_quantized_per_channel_scales_points_and_axis_matter(no_quantized_view):
    q = torch.quantize_per_channel(QX[:, :2].contiguous(), SCALES, POINTS, 0, torch.quint8)
    ints = q.int_repr()
    variants = [
        torch._make_per_channel_quantized_tensor(ints, torch.tensor([0.5, 0.125],
                                                                    dtype=torch.float64),
                                                 POINTS, 0),
        torch._make_per_channel_quantized_tensor(ints, SCALES, torch.tensor([0, 3]), 0),
        # same int_repr, scales and zero points along the other axis: other values
        torch._make_per_channel_quantized_tensor(ints, SCALES, POINTS, 1),
    ]
    for variant in variants:
        assert torch.equal(variant.int_repr(), ints)
        assert not torch.equal(variant.dequantize(), q.dequantize())
    digests = {digest(q)} | {digest(v) for v in variants}
    assert len(digests) == 1 + len(variants)


def test_quantized_float_qparams_zero_points_are_exact(no_quantized_view):
    """Float zero points 0.25 and 0.5 must not both be hashed as int 0."""
    scales = torch.tensor([0.5, 0.25])
    a = torch.quantize_per_channel(QX[:, :2], scales, torch.tensor([0.25, 1.0]), 0,
                                   torch.quint8)
    b = torch.quantize_per_channel(QX[:, :2], scales, torch.tensor([0.5, 1.0]), 0,
                                   torch.quint8)
    assert a.qscheme() == torch.per_channel_affine_float_qparams
    assert torch.equal(a.int_repr(), b.int_repr())
    assert not torch.equal(a.dequantize(), b.dequantize())
    assert digest(a) != digest(b)
    _, parts = tensor_parts(a)
    assert parts[-1].dtype == "float64"
    assert parts[-1].data.tobytes() == np.array([0.25, 1.0], dtype="<f8").tobytes()


# --- large tensors: the threaded path --------------------------------------------------------

@pytest.fixture
def hasher_calls(monkeypatch):
    """Record the keyword arguments of every blake3 hasher audit.capture.hashing makes."""
    calls: list[dict] = []
    real = blake3.blake3

    class Recording:
        AUTO = real.AUTO

        def __new__(cls, *args, **kwargs):
            calls.append(kwargs)
            return real(*args, **kwargs)

    monkeypatch.setattr(hashing, "blake3", types.SimpleNamespace(blake3=Recording))
    return calls


def test_small_tensor_single_thread_by_hand(hasher_calls):
    small = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    assert digest(small) == dense_spec("float32", (2, 3), np.arange(6, dtype="<f4").tobytes())
    assert hasher_calls == [{}]


def test_large_tensor_threaded_equals_by_hand(hasher_calls):
    count = THREADED_FROM_BYTES // 4 + 1000  # just over 4 MiB of float32
    assert count * 4 >= 4 * 1024 * 1024
    large = torch.arange(count, dtype=torch.float32).reshape(-1, 8)
    data = np.arange(count, dtype="<f4").tobytes()
    result = digest(large)
    assert hasher_calls == [{"max_threads": blake3.blake3.AUTO}]
    assert result == dense_spec("float32", tuple(large.shape), data)
    assert result == spec_digest("dense", "float32", tuple(large.shape),
                                 [("values", "float32", tuple(large.shape), data)], threads=True)
    strided = torch.arange(2 * count, dtype=torch.float32)[::2]
    assert digest(strided) == dense_spec("float32", (count,),
                                         np.arange(0, 2 * count, 2, dtype="<f4").tobytes())


# --- byte order ------------------------------------------------------------------------------

@pytest.mark.parametrize("width,code", [(2, "u2"), (4, "u4"), (8, "u8")])
def test_to_little_endian_swaps_big_endian_numbers(width, code):
    numbers = [1, 0x0102, 2 ** (8 * width) - 2, 0x11]
    big = np.array(numbers, dtype=">" + code).view(np.uint8)
    little = to_little_endian(big, width)
    assert little.dtype == np.uint8
    assert little.tobytes() == np.array(numbers, dtype="<" + code).tobytes()


def test_to_little_endian_known_pattern():
    data = np.arange(1, 9, dtype=np.uint8)
    assert to_little_endian(data, 4).tolist() == [4, 3, 2, 1, 8, 7, 6, 5]
    assert to_little_endian(data, 2).tolist() == [2, 1, 4, 3, 6, 5, 8, 7]
    assert to_little_endian(data, 8).tolist() == [8, 7, 6, 5, 4, 3, 2, 1]
    assert data.tolist() == list(range(1, 9))  # the input is left alone


@pytest.fixture
def big_endian_host(monkeypatch):
    """Make audit.capture.hashing believe it runs on a big-endian host; record the swaps it asks
    for.

    Only the module's own reference to `sys` is replaced, so nothing else sees the change.
    The tensor bytes stay this (little-endian) host's, so under the simulation the dense path
    must byte-swap them: proof that on a real big-endian host, where the native bytes are
    big-endian, the same call turns them into the canonical little-endian bytes.
    """
    if hashing.sys.byteorder != "little":  # pragma: no cover - a real big-endian host
        pytest.skip("the simulation assumes a little-endian host")
    widths: list[int] = []
    real = hashing.to_little_endian

    def recording(data, width):
        widths.append(width)
        return real(data, width)

    monkeypatch.setattr(hashing, "sys", types.SimpleNamespace(byteorder="big"))
    monkeypatch.setattr(hashing, "to_little_endian", recording)
    return widths


@pytest.mark.parametrize("name,width", [
    ("int16", 2), ("float16", 2), ("bfloat16", 2), ("int32", 4), ("float32", 4),
    ("float64", 8), ("uint64", 8), ("complex32", 2), ("complex64", 4), ("complex128", 8),
    ("uint8", None), ("int8", None), ("bool", None), ("float8_e4m3fn", None),
])
def test_dense_path_swaps_on_big_endian_hosts(name, width, big_endian_host):
    dtype = torch_dtype(name)
    data = raw_for(name)
    tensor = from_bytes(data, dtype)
    simulated = hashing._dense_bytes(tensor).tobytes()
    if width is None:  # one-byte elements have no byte order
        assert big_endian_host == []
        assert simulated == data
        return
    # complex numbers are swapped per component, not as one wide number
    assert big_endian_host == [width]
    swapped = np.frombuffer(data, dtype=f">u{width}").astype(f"<u{width}").tobytes()
    assert simulated == swapped
    # A big-endian host holding the same values has exactly these swapped bytes natively:
    # its digest must equal the little-endian host's.
    native_big = from_bytes(swapped, dtype)
    assert digest(native_big) == dense_spec(name, tuple(tensor.shape), data)
