"""How far apart two kept samples of the same output are: max abs, max ULP, share differing.

A digest says only same or different; this says by how much, on the values a `Sample`
kept. Numbers are read from their exact little-endian bits, so the audit stays bitwise:
an element "differs" when its bits differ (+0 vs -0 and NaN payloads included), and
distances are measured from the bits too, never through a value comparison that would
call +0 == -0 or NaN != NaN.

ULP distance uses the monotone integer order of sign-magnitude floats: for bits `b` of
width `w`, ordered(b) = b when the sign bit is clear, else -(b & (2**(w-1) - 1)) - 1.
Neighbouring floats are 1 apart, +0 and -0 are 1 apart, +inf is 1 above the largest
finite value, and two different bit patterns are never 0 apart. It is computed as an
unsigned key (ordered + 2**(w-1)) so that even float64 and int64 gaps fit in uint64.

No torch here: the report side runs without it. Types numpy lacks (bfloat16, float8,
float4) are decoded from their bit patterns by shifting (bfloat16) or a lookup table
built from the format definition (float8, float4).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from audit.capture import distance_text
from audit.capture.sample import Sample

if TYPE_CHECKING:  # annotations only: subscripting Callable at run time needs Python 3.9
    from collections.abc import Callable

    Decoder = Callable[[np.ndarray], np.ndarray]  # bit patterns (uint64) -> float64 values
    Order = Callable[[np.ndarray], np.ndarray]  # bit patterns (uint64) -> monotone uint64 keys


@dataclass(frozen=True)
class Distance:
    """How far two samples of one output are apart, measured on the elements they kept.

    `differing` counts elements whose bits differ, out of `compared`. `max_abs` and
    `max_rel` are on decoded values of the differing elements (`max_rel` =
    |a - b| / max(|a|, |b|), 0 for +0 vs -0); a NaN or infinity against anything else
    makes both inf, NaN against NaN leaves them out. Both are None where no value could
    be measured (every difference a NaN pair; floats only for `max_rel`). `max_ulp` is
    the largest ULP distance (floats only, from the bits, NaN included). Complex numbers
    and packed float4 pairs are compared part by part: an element differs when any part
    does, and the maxima are over parts. `exact` is True when both samples are the whole
    output. `note` names what the numbers alone hide (NaN and infinity cases), or why the
    samples could not be compared at all; then `compared` is 0 and every maximum None.
    """

    max_abs: float | None
    max_rel: float | None
    max_ulp: int | None
    differing: int
    compared: int
    exact: bool
    note: str | None = None

    @property
    def share(self) -> float:
        """Share of compared elements that differ (0.0 when nothing was compared)."""
        return self.differing / self.compared if self.compared else 0.0

    @property
    def comparable(self) -> bool:
        """False when the samples could not be compared (dtype or shape differs, ...)."""
        return self.compared > 0 or self.note is None

    def describe(self) -> str:
        """Short text for a report cell (`audit.capture.distance_text.describe`)."""
        return distance_text.describe(self)

    def brief(self) -> str:
        """The largest measure alone: '1 ULP' (`audit.capture.distance_text.brief`)."""
        return distance_text.brief(self)


# --- bit orders -------------------------------------------------------------------------

def _sign_magnitude(width: int) -> Order:
    """Keys of sign-magnitude floats: ordered(b) + 2**(width-1), monotone in value."""
    sign = np.uint64(1 << (width - 1))
    full = np.uint64((1 << width) - 1)

    def order(bits: np.ndarray) -> np.ndarray:
        return np.where(bits & sign, ~bits & full, bits | sign)

    return order


def _twos_complement(width: int) -> Order:
    """Keys of two's complement integers: value + 2**(width-1) (offset binary)."""
    sign = np.uint64(1 << (width - 1))
    return lambda bits: bits ^ sign


def _unsigned(bits: np.ndarray) -> np.ndarray:
    return bits


# --- decoders ---------------------------------------------------------------------------

def _widen(values: np.ndarray) -> np.ndarray:
    """To float64; signalling NaNs come out quiet, silently (their bits were kept apart)."""
    with np.errstate(invalid="ignore"):
        return values.astype(np.float64)


def _view_as(float_type: type, uint_type: type) -> Decoder:
    """Floats numpy has: reinterpret the bits at their own width."""
    return lambda bits: _widen(bits.astype(uint_type).view(float_type))


def _bfloat16(bits: np.ndarray) -> np.ndarray:
    """bfloat16 is the top half of a float32."""
    return _widen((bits.astype(np.uint32) << np.uint32(16)).view(np.float32))


def minifloat_table(exponent: int, mantissa: int, bias: int, special: str) -> np.ndarray:
    """Value of every bit pattern of a small float format (1 sign bit unless 'unsigned').

    `special` says how the format spends its top codes: 'ieee' (all-ones exponent is inf
    or NaN), 'fn' (no inf; only all-ones exponent and mantissa is NaN), 'fnuz' (no inf,
    no -0: the -0 pattern is the only NaN), 'none' (every pattern finite), 'unsigned'
    (exponent only, no sign, all ones NaN: float8_e8m0fnu).
    """
    signed = special != "unsigned"
    width = exponent + mantissa + signed
    table = np.empty(1 << width, dtype=np.float64)
    top, full = (1 << exponent) - 1, (1 << mantissa) - 1
    for bits in range(1 << width):
        negative = signed and bits >> (width - 1)
        e = (bits >> mantissa) & top
        m = bits & full
        if e == 0 and mantissa:
            value = math.ldexp(m, 1 - bias - mantissa)
        else:
            value = math.ldexp((1 << mantissa) + m, e - bias - mantissa)
        if e == top and special == "ieee":
            value = math.inf if m == 0 else math.nan
        elif e == top and (special == "unsigned" or special == "fn" and m == full):
            value = math.nan
        table[bits] = -value if negative else value
    if special == "fnuz":
        table[1 << (width - 1)] = math.nan
    return table


def _by_table(table: np.ndarray) -> Decoder:
    return lambda bits: table[bits.astype(np.intp)]


# --- the per-dtype table ----------------------------------------------------------------

@dataclass(frozen=True)
class _Format:
    """How to read one dtype: `parts` numbers of `width` bits per element."""

    kind: str  # 'float', 'int', 'bool' (integer-valued) or 'bits' (opaque: counts only)
    width: int
    parts: int
    order: Order
    decode: Decoder | None = None  # floats only

    @property
    def element_bytes(self) -> int:
        return self.width * self.parts // 8


def _float(width: int, decode: Decoder, parts: int = 1) -> _Format:
    return _Format("float", width, parts, _sign_magnitude(width), decode)


def _int(width: int, signed: bool) -> _Format:
    return _Format("int", width, 1, _twos_complement(width) if signed else _unsigned)


_F16 = _view_as(np.float16, np.uint16)
_F32 = _view_as(np.float32, np.uint32)
_F64 = _view_as(np.float64, np.uint64)

FORMATS: dict[str, _Format] = {
    "float64": _float(64, _F64),
    "float32": _float(32, _F32),
    "float16": _float(16, _F16),
    "bfloat16": _float(16, _bfloat16),
    "float8_e4m3fn": _float(8, _by_table(minifloat_table(4, 3, 7, "fn"))),
    "float8_e5m2": _float(8, _by_table(minifloat_table(5, 2, 15, "ieee"))),
    "float8_e4m3fnuz": _float(8, _by_table(minifloat_table(4, 3, 8, "fnuz"))),
    "float8_e5m2fnuz": _float(8, _by_table(minifloat_table(5, 2, 16, "fnuz"))),
    "float8_e8m0fnu": _Format(
        "float", 8, 1, _unsigned, _by_table(minifloat_table(8, 0, 127, "unsigned"))
    ),
    "float4_e2m1fn_x2": _float(4, _by_table(minifloat_table(2, 1, 1, "none")), parts=2),
    "complex32": _float(16, _F16, parts=2),
    "complex64": _float(32, _F32, parts=2),
    "complex128": _float(64, _F64, parts=2),
    "int8": _int(8, True),
    "int16": _int(16, True),
    "int32": _int(32, True),
    "int64": _int(64, True),
    "uint8": _int(8, False),
    "uint16": _int(16, False),
    "uint32": _int(32, False),
    "uint64": _int(64, False),
    "bool": _Format("bool", 8, 1, _unsigned),
    "bits8": _Format("bits", 8, 1, _unsigned),
    "bits16": _Format("bits", 16, 1, _unsigned),
    "bits1x8": _Format("bits", 8, 1, _unsigned),
    "bits2x4": _Format("bits", 8, 1, _unsigned),
    "bits4x2": _Format("bits", 8, 1, _unsigned),
}
ALIASES = {
    "half": "float16", "float": "float32", "double": "float64", "chalf": "complex32",
    "cfloat": "complex64", "cdouble": "complex128", "short": "int16", "int": "int32",
    "long": "int64",
}


def _canonical(dtype: str) -> str:
    """'torch.half' and 'half' -> 'float16': hashing writes canonical names, users may not."""
    name = dtype.replace("torch.", "")
    return ALIASES.get(name, name)


def _unpack(data: bytes, fmt: _Format) -> np.ndarray:
    """Bit patterns of every part, shape (elements, parts), as uint64."""
    if fmt.width == 4:  # two float4 per byte; which nibble comes first does not matter here
        raw = np.frombuffer(data, dtype=np.uint8)
        return np.stack([raw & 0xF, raw >> 4], axis=1).astype(np.uint64)
    raw = np.frombuffer(data, dtype=f"<u{fmt.width // 8}")
    return raw.astype(np.uint64).reshape(-1, fmt.parts)


def values(sample: Sample) -> np.ndarray | None:
    """The kept values as float64 (complex: shape (n, 2)); None for opaque or unknown dtypes.

    Used to check printed reference values, which are decimal numbers, not bits.
    """
    fmt = FORMATS.get(_canonical(sample.dtype))
    if fmt is None or fmt.kind == "bits":
        return None
    if fmt.kind != "float":  # integers and bools: read the bytes as what they are
        signed = "u" if fmt.order is _unsigned else "i"
        return np.frombuffer(sample.data, dtype=f"<{signed}{fmt.width // 8}").astype(np.float64)
    decoded = np.asarray(fmt.decode(_unpack(sample.data, fmt)), dtype=np.float64)  # type: ignore[misc]
    return decoded if fmt.parts > 1 else decoded[:, 0]


# --- the comparison ---------------------------------------------------------------------

def distance(a: Sample, b: Sample) -> Distance:
    """How far apart two samples of one output are.

    Never None: samples that cannot be compared (dtype differs, different element count
    or positions, an unknown dtype, bytes that are not whole elements) give a Distance
    with `compared` 0, no maxima and the reason as its note, so a report cell can still
    print `describe()`. Same element count with a different shape cannot be seen here:
    a Sample keeps no shape.
    """
    if _canonical(a.dtype) != _canonical(b.dtype):
        return _incomparable(f"dtype differs ({a.dtype} vs {b.dtype})")
    fmt = FORMATS.get(_canonical(a.dtype))
    if fmt is None:
        return _incomparable(f"unknown dtype ({a.dtype})")
    sizes = []
    for sample in (a, b):
        count, rest = divmod(len(sample.data), fmt.element_bytes)
        if rest or (sample.index is not None and len(sample.index) != count):
            return _incomparable(f"malformed sample ({len(sample.data)} bytes of {a.dtype})")
        sizes.append(count)
    if a.index is None and b.index is None:
        if sizes[0] != sizes[1]:
            return _incomparable(f"shape differs ({sizes[0]:,} vs {sizes[1]:,} elements)")
    elif a.index != b.index:
        return _incomparable("shape differs")
    exact = a.index is None
    bits_a, bits_b = _unpack(a.data, fmt), _unpack(b.data, fmt)
    part_differs = bits_a != bits_b
    differing = int(part_differs.any(axis=1).sum())
    compared = sizes[0]
    if fmt.kind == "bits":
        return Distance(None, None, None, differing, compared, exact)
    bits_a, bits_b = bits_a[part_differs], bits_b[part_differs]
    gaps = _key_gap(fmt.order(bits_a), fmt.order(bits_b))
    largest = int(gaps.max()) if gaps.size else 0
    if fmt.decode is None:  # integers and bool: the key gap is the value gap
        return Distance(float(largest), None, None, differing, compared, exact)
    max_abs, max_rel, note = _value_gaps(fmt.decode(bits_a), fmt.decode(bits_b))
    return Distance(max_abs, max_rel, largest, differing, compared, exact, note)


def _incomparable(note: str) -> Distance:
    return Distance(None, None, None, 0, 0, False, note)


def _key_gap(key_a: np.ndarray, key_b: np.ndarray) -> np.ndarray:
    """|key_a - key_b| in uint64, exact over the whole 64-bit range (no signed overflow)."""
    return np.where(key_a >= key_b, key_a - key_b, key_b - key_a)


def _value_gaps(x: np.ndarray, y: np.ndarray) -> tuple[float | None, float | None, str | None]:
    """Max abs, max rel and a note over value pairs whose bits differ."""
    finite = np.isfinite(x) & np.isfinite(y)
    note = None
    if not finite.all():  # NaN or inf: named, and left out where no number says how far
        note, measured = _special_values(x, y)
        if not measured.any():
            return None, None, note
        x, y, finite = x[measured], y[measured], finite[measured]
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        gap = np.where(finite, np.abs(x - y), np.inf)
        scale = np.maximum(np.abs(x), np.abs(y))
        # Scaled before subtracting so float64 extremes do not overflow: at most 2.
        rel = np.where(scale > 0, np.abs(x / scale - y / scale), 0.0)
        rel = np.where(finite, rel, np.inf)
    max_abs = float(gap.max()) if gap.size else 0.0
    max_rel = float(rel.max()) if rel.size else 0.0
    return max_abs, max_rel, note


def _special_values(x: np.ndarray, y: np.ndarray) -> tuple[str | None, np.ndarray]:
    """What NaN and inf values differ by (a note), and the pairs a number can measure:
    all but those where both are NaN. Only called when some value is not finite."""
    nan_x, nan_y = np.isnan(x), np.isnan(y)
    inf_x, inf_y = np.isinf(x), np.isinf(y)
    notes = {
        "NaN vs number": bool((nan_x != nan_y).any()),
        "NaN payloads differ": bool((nan_x & nan_y).any()),
        "inf vs finite": bool(((inf_x | inf_y) & ~(nan_x | nan_y) & (inf_x != inf_y)).any()),
        "+inf vs -inf": bool((inf_x & inf_y).any()),
    }
    note = "; ".join(name for name, present in notes.items() if present) or None
    return note, ~(nan_x & nan_y)


def sample_from_array(dtype: str, values: np.ndarray | bytes,
                      index: list[int] | None = None) -> Sample:
    """A Sample from numpy values (bit patterns as uints for types numpy lacks) or bytes."""
    if isinstance(values, np.ndarray):
        flat = np.ascontiguousarray(values).reshape(-1)
        values = flat.astype(flat.dtype.newbyteorder("<")).tobytes()
    return Sample(dtype, None if index is None else list(index), bytes(values))
