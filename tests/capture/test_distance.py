"""Distances between kept samples, on hand-made bit patterns with known gaps.

Expected ULP gaps come from the format definitions (neighbouring bit patterns, powers of
two), from numpy's `nextafter` stepping, and from a Python-int reference of the ordered
mapping, never from the code under test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from audit.capture.distance import FORMATS, Distance, distance, minifloat_table, sample_from_array
from audit.capture.sample import Sample, take_sample

try:  # the report side runs without torch; only the cross-checks against torch need it
    import torch
except ImportError:  # pragma: no cover
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")


def pair(dtype: str, left, right, index=None) -> Distance:
    """Distance between two samples built from numpy values or bit patterns."""
    return distance(sample_from_array(dtype, np.asarray(left), index),
                    sample_from_array(dtype, np.asarray(right), index))


def ordered(bits: int, width: int) -> int:
    """ordered(b) from the format definition, in Python ints: reference for the uint64 keys."""
    if bits >> (width - 1):
        return -(bits & ((1 << (width - 1)) - 1)) - 1
    return bits


# --- floats numpy has -------------------------------------------------------------------

def test_float32_one_and_two_ulp():
    one = np.float32(1.0)
    up = np.nextafter(one, np.float32(2))
    eps = np.finfo(np.float32).eps
    d1 = pair("float32", [one, one], [one, up])
    assert (d1.max_ulp, d1.differing, d1.compared, d1.exact) == (1, 1, 2, True)
    assert d1.max_abs == pytest.approx(float(eps))
    assert d1.max_rel == pytest.approx(float(eps) / (1 + float(eps)))
    assert d1.note is None
    d2 = pair("float32", [one], [np.float32(one + 2 * eps)])  # numpy 1.x promotes to float64
    assert d2.max_ulp == 2


def test_float16_and_bfloat16_neighbours_from_bits():
    # 0x3C00 is 1.0 in float16, 0x3F80 is 1.0 in bfloat16; +1 on the bits is the next float.
    d16 = pair("float16", np.array([0x3C00], np.uint16), np.array([0x3C01], np.uint16))
    assert d16.max_ulp == 1
    assert d16.max_abs == 2.0**-10
    dbf = pair("bfloat16", np.array([0x3F80, 0x4000], np.uint16),
               np.array([0x3F81, 0x4000], np.uint16))
    assert (dbf.max_ulp, dbf.differing) == (1, 1)
    assert dbf.max_abs == 2.0**-7


@needs_torch
@pytest.mark.parametrize("name", ["float16", "bfloat16"])
def test_16_bit_decoding_matches_torch_for_every_pattern(name):
    patterns = np.arange(1 << 16, dtype=np.uint16)
    ours = FORMATS[name].decode(patterns.astype(np.uint64))
    ints = torch.from_numpy(patterns.view(np.int16))
    np.testing.assert_array_equal(ours, ints.view(getattr(torch, name)).double().numpy())


def test_float64_large_gaps_exact_without_overflow():
    d = pair("float64", [1.0], [2.0])
    assert d.max_ulp == 2**52
    across = pair("float64", [-1.0], [1.0])
    # 1.0 is 0x3FF0000000000000: each side is that many steps from its zero, plus +0/-0.
    assert across.max_ulp == 2 * 0x3FF0000000000000 + 1
    assert across.max_rel == 2.0
    extreme = pair("float64", [-np.inf], [np.nan])  # keys 0 and near 2**64: the widest gap
    assert extreme.max_ulp == 0x7FF8000000000000 + 0x7FF0000000000000 + 1
    huge = pair("float64", [-1.7e308], [1.7e308])
    assert huge.max_abs == math.inf  # beyond float64 range, honestly
    assert huge.max_rel == 2.0  # scaled before subtracting: no overflow


def test_signed_zeros_are_one_ulp_apart_and_zero_abs():
    d = pair("float32", np.array([0.0, 0.0], np.float32), np.array([-0.0, 0.0], np.float32))
    assert (d.max_ulp, d.max_abs, d.max_rel, d.differing) == (1, 0.0, 0.0, 1)


def test_nan_vs_number():
    d = pair("float32", np.array([np.nan, 2.0], np.float32), np.array([1.0, 2.0], np.float32))
    assert d.max_abs == math.inf and d.max_rel == math.inf
    assert d.note == "NaN vs number"
    assert d.differing == 1
    nan_bits, one_bits = 0x7FC00000, 0x3F800000
    assert d.max_ulp == nan_bits - one_bits


def test_nan_payloads_differ_but_stay_nan_free():
    quiet, payload = np.array([0x7FC00000], np.uint32), np.array([0x7FC00001], np.uint32)
    d = pair("float32", quiet.view(np.float32), payload.view(np.float32))
    assert (d.differing, d.max_ulp, d.max_abs, d.max_rel) == (1, 1, None, None)
    assert d.note == "NaN payloads differ"
    signalling = np.array([0x7F800001, 0x3F800000], np.uint32)  # sNaN: no warning, no trap
    mixed = pair("float32", signalling.view(np.float32), np.array([np.nan, 1.0], np.float32))
    assert (mixed.differing, mixed.max_abs, mixed.max_ulp) == (1, None, 0x7FC00000 - 0x7F800001)
    # The same NaN bits on both sides is no difference at all.
    same = pair("float32", quiet.view(np.float32), quiet.view(np.float32))
    assert (same.differing, same.note) == (0, None)


def test_infinities():
    big = np.finfo(np.float32).max
    d = pair("float32", np.array([np.inf], np.float32), np.array([big], np.float32))
    assert (d.max_ulp, d.max_abs, d.note) == (1, math.inf, "inf vs finite")
    both = pair("float32", np.array([np.inf], np.float32), np.array([-np.inf], np.float32))
    assert (both.max_abs, both.note) == (math.inf, "+inf vs -inf")


# --- hypothesis cross-checks against numpy stepping and the Python-int reference ---------

FLOATS = {np.float16: 16, np.float32: 32, np.float64: 64}


@pytest.mark.parametrize("float_type", list(FLOATS))
@given(data=st.data(), steps=st.integers(0, 40), up=st.booleans())
def test_ulp_matches_nextafter_stepping(float_type, data, steps, up):
    width = FLOATS[float_type]
    start = float_type(data.draw(st.floats(allow_nan=False, allow_infinity=False, width=width)))
    target = float_type(np.inf if up else -np.inf)
    end = start
    with np.errstate(over="ignore"):
        for _ in range(steps):
            end = np.nextafter(end, target)
    assume(np.isfinite(end))
    # nextafter steps from +0 straight to -tiny: the -0 we count in between is one more.
    expected = steps + int(np.signbit(start) != np.signbit(end))
    d = pair(np.dtype(float_type).name, np.array([start]), np.array([end]))
    assert d.max_ulp == expected
    assert d.differing == int(expected > 0)


@pytest.mark.parametrize("width", [16, 32, 64])
@given(data=st.data())
def test_ulp_matches_python_int_reference_on_any_bits(width, data):
    a = data.draw(st.integers(0, 2**width - 1))
    b = data.draw(st.integers(0, 2**width - 1))
    uint = {16: np.uint16, 32: np.uint32, 64: np.uint64}[width]
    d = pair(f"float{width}", np.array([a], uint), np.array([b], uint))
    assert d.max_ulp == abs(ordered(a, width) - ordered(b, width))
    assert d.differing == int(a != b)


# --- float8 and float4 -------------------------------------------------------------------

FLOAT8 = ["float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz", "float8_e8m0fnu"]


@needs_torch
@pytest.mark.parametrize("name", FLOAT8)
def test_float8_tables_match_torch(name):
    dtype = getattr(torch, name, None)
    if dtype is None:
        pytest.skip(f"torch {torch.__version__} lacks {name}")
    patterns = np.arange(256, dtype=np.uint8)
    ours = FORMATS[name].decode(patterns.astype(np.uint64))
    theirs = torch.from_numpy(patterns).view(dtype).double().numpy()
    np.testing.assert_array_equal(ours, theirs)  # NaN positions must agree too


@pytest.mark.parametrize(("name", "pattern", "value"), [
    ("float8_e4m3fn", 0x38, 1.0), ("float8_e4m3fn", 0x7E, 448.0), ("float8_e4m3fn", 0x01, 2**-9),
    ("float8_e4m3fn", 0xB8, -1.0), ("float8_e5m2", 0x3C, 1.0), ("float8_e5m2", 0x7B, 57344.0),
    ("float8_e5m2", 0x7C, math.inf), ("float8_e4m3fnuz", 0x40, 1.0),
    ("float8_e4m3fnuz", 0x7F, 240.0), ("float8_e5m2fnuz", 0x40, 1.0),
    ("float8_e8m0fnu", 0x7F, 1.0), ("float8_e8m0fnu", 0x00, 2**-127),
    ("float4_e2m1fn_x2", 0x7, 6.0), ("float4_e2m1fn_x2", 0x1, 0.5),
])
def test_minifloat_known_patterns(name, pattern, value):
    assert FORMATS[name].decode(np.array([pattern], np.uint64))[0] == value


def test_float8_specials():
    e4m3 = minifloat_table(4, 3, 7, "fn")
    assert math.isnan(e4m3[0x7F]) and math.isnan(e4m3[0xFF]) and not np.isinf(e4m3).any()
    fnuz = minifloat_table(4, 3, 8, "fnuz")
    assert math.isnan(fnuz[0x80]) and np.isnan(fnuz).sum() == 1


def test_float8_neighbours_one_ulp():
    d = pair("float8_e4m3fn", np.array([0x38, 0x38], np.uint8), np.array([0x39, 0x38], np.uint8))
    assert (d.max_ulp, d.max_abs, d.differing) == (1, 0.125, 1)
    zeros = pair("float8_e5m2", np.array([0x00], np.uint8), np.array([0x80], np.uint8))
    assert (zeros.max_ulp, zeros.max_abs) == (1, 0.0)


def test_float4_pairs_compared_nibble_by_nibble():
    # e2m1: 0x2 is 1.0, 0x3 is 1.5, 0x7 is 6.0. Byte 0x72 holds the pair (1.0, 6.0).
    d = pair("float4_e2m1fn_x2", np.array([0x72, 0x11], np.uint8),
             np.array([0x73, 0x11], np.uint8))
    assert (d.max_ulp, d.max_abs, d.differing, d.compared) == (1, 0.5, 1, 2)


# --- complex, integers, bool --------------------------------------------------------------

def test_complex64_compared_by_halves():
    up = np.nextafter(np.float32(2), np.float32(3))
    left = np.array([1 + 2j, 3 + 4j, 5 + 6j], np.complex64)
    right = left.copy()
    right[0] = complex(1, up)
    right[2] = complex(-5, 7)  # both halves differ: still one element
    d = pair("complex64", left, right)
    assert (d.differing, d.compared) == (2, 3)
    assert d.share == pytest.approx(2 / 3)
    assert d.max_abs == 10.0  # the real part of the third element, not a modulus
    assert d.max_ulp == abs(ordered(0x40A00000, 32) - ordered(0xC0A00000, 32))


@needs_torch
@pytest.mark.filterwarnings("ignore:ComplexHalf support is experimental")
def test_complex_from_torch_matches_layout():
    left = torch.tensor([1 + 2j], dtype=torch.complex64)
    right = torch.complex(torch.tensor([1.0]), torch.nextafter(torch.tensor([2.0]),
                                                               torch.tensor([3.0])))
    d = distance(take_sample(left), take_sample(right))
    assert (d.max_ulp, d.differing) == (1, 1)
    half = torch.tensor([1 + 2j], dtype=torch.complex32)
    assert distance(take_sample(half), take_sample(half * 2)).max_ulp == 1 << 10


def test_integers_count_and_max_abs_without_overflow():
    d = pair("int32", np.array([1, 2, 3, 4], np.int32), np.array([1, -3, 3, 9], np.int32))
    assert (d.differing, d.compared, d.max_abs, d.max_ulp, d.max_rel) == (2, 4, 5.0, None, None)
    wide = pair("int64", np.array([np.iinfo(np.int64).min], np.int64),
                np.array([np.iinfo(np.int64).max], np.int64))
    assert wide.max_abs == float(2**64 - 1)
    unsigned = pair("uint64", np.array([0], np.uint64), np.array([2**64 - 1], np.uint64))
    assert unsigned.max_abs == float(2**64 - 1)
    small = pair("uint8", np.array([0, 255], np.uint8), np.array([255, 255], np.uint8))
    assert (small.max_abs, small.differing) == (255.0, 1)


def test_bool_counts():
    d = pair("bool", np.array([True, False, True]), np.array([False, False, False]))
    assert (d.differing, d.compared, d.max_abs, d.max_ulp) == (2, 3, 1.0, None)


# --- whole vs sample, incomparable, describe ---------------------------------------------

def test_identical_samples():
    values = np.linspace(0, 1, 12, dtype=np.float32)
    d = pair("float32", values, values)
    assert (d.differing, d.compared, d.max_ulp, d.max_abs, d.share) == (0, 12, 0, 0.0, 0.0)
    assert d.describe() == "identical"


@needs_torch
def test_sampled_output_is_not_exact():
    big = torch.arange(1000, dtype=torch.float32)
    other = big.clone()
    other[999] = torch.nextafter(other[999], torch.tensor(2000.0))
    a, b = take_sample(big), take_sample(other)
    assert a.index is not None
    d = distance(a, b)
    assert (d.exact, d.differing, d.compared, d.max_ulp) == (False, 1, len(a.index), 1)
    assert d.describe() == f"max abs 6.1e-05, max 1 ULP, 1 of {len(a.index)} sampled elements"
    unchanged = distance(a, take_sample(big))
    assert unchanged.describe() == f"same in {len(a.index)} sampled elements"


def test_incomparable_samples_say_why():
    f32 = sample_from_array("float32", np.zeros(4, np.float32))
    f64 = sample_from_array("float64", np.zeros(4, np.float64))
    d = distance(f32, f64)
    assert (d.compared, d.max_abs, d.max_ulp, d.comparable) == (0, None, None, False)
    assert d.describe() == "dtype differs (float32 vs float64)"
    longer = sample_from_array("float32", np.zeros(5, np.float32))
    assert distance(f32, longer).describe() == "shape differs (4 vs 5 elements)"
    sampled = sample_from_array("float32", np.zeros(4, np.float32), index=[0, 3, 6, 9])
    assert distance(f32, sampled).note == "shape differs"
    assert distance(Sample("float32", None, b"\0" * 6), f32).note.startswith("malformed")
    assert distance(Sample("qint4", None, b""), Sample("qint4", None, b"")).note == (
        "unknown dtype (qint4)")
    # Aliases name the same dtype.
    assert distance(Sample("half", None, b"\0\0"), Sample("float16", None, b"\0\0")).comparable


def test_describe_formats():
    nan = pair("float32", np.array([np.nan, 1, 1, 1], np.float32),
               np.array([1, 1, 1, 1], np.float32))
    assert nan.describe() == "max abs inf, max 1.1e+09 ULP, 1 of 4 elements; NaN vs number"
    ints = pair("int32", np.array([1, 2, 3], np.int32), np.array([1, 7, 3], np.int32))
    assert ints.describe() == "max abs 5, 1 of 3 elements"
    wide = pair("float64", np.zeros(2000), np.r_[np.zeros(1998), [1.0, 2.0]])
    assert wide.describe() == "max abs 2, max 4.6e+18 ULP, 2 of 2,000 elements"
    assert pair("float32", np.zeros(0, np.float32), np.zeros(0, np.float32)).describe() == (
        "no elements")
