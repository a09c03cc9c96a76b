"""The canonical digest of a tensor: exact, bitwise, independent of layout and machine.

BLAKE3 over, for each part of the tensor, a header (format version, kind, dtype, shape)
and the element bytes in C-contiguous little-endian order. Dense tensors have one part;
sparse COO tensors two (coalesced indices, values); quantized tensors their integer
representation plus the quantisation parameters. -0.0 and 0.0 differ, NaN payloads differ:
this is a bitwise audit, so nothing is compared through values (`torch.equal` says
+0 == -0 and NaN != NaN, which is useless here).
"""

from __future__ import annotations

import functools
import json
import sys
from dataclasses import dataclass
from typing import Any

import blake3
import numpy as np

FORMAT = "repro-audit-digest/1"
THREADED_FROM_BYTES = 4 * 1024 * 1024  # below this, blake3's thread pool is slower than one thread


@dataclass(frozen=True)
class Part:
    """One hashed component of a tensor: its name, dtype name, shape and raw bytes."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    data: np.ndarray  # 1-D uint8 view of little-endian element bytes, C order


def dtype_name(dtype: Any) -> str:
    """'torch.float32' -> 'float32'."""
    return str(dtype).replace("torch.", "")


@functools.cache
def _has_lazy_bits() -> bool:
    """torch >= 1.10 has lazy conj / neg bits (checked once, not per tensor)."""
    import torch

    return hasattr(torch.Tensor, "resolve_conj") and hasattr(torch.Tensor, "resolve_neg")


def _dense_bytes(tensor: Any) -> np.ndarray:
    """Little-endian element bytes of a dense tensor in C order, zero-copy where possible.

    Every step is skipped when it has nothing to do: a small tensor's digest is mostly
    the cost of these calls.
    """
    if tensor.requires_grad:
        tensor = tensor.detach()
    if tensor.device.type != "cpu":
        tensor = tensor.cpu()
    # Lazy conjugate / negative bits are flags, not bytes: resolve them first.
    if _has_lazy_bits():
        tensor = tensor.resolve_conj().resolve_neg()
    if not tensor.is_contiguous():
        tensor = tensor.contiguous()
    try:  # dtypes numpy has: a zero-copy array straight away
        data = tensor.numpy().reshape(-1).view(np.uint8)
    except TypeError:  # bfloat16, float8, ...: view the bytes through torch
        if tensor.numel() == 0:
            return np.zeros(0, dtype=np.uint8)
        import torch

        data = tensor.reshape(-1).view(torch.uint8).numpy()
    if sys.byteorder == "big" and tensor.element_size() > 1:
        width = tensor.element_size() // (2 if tensor.is_complex() else 1)
        data = to_little_endian(data, width)
    return data


def to_little_endian(data: np.ndarray, width: int) -> np.ndarray:
    """Big-endian bytes of `width`-byte numbers, reordered little-endian.

    Called only on big-endian hosts, where these are the native bytes. The source order is
    spelled out ('>') rather than taken from the host ('='), so the swap is the same on every
    machine and can be checked on a little-endian one.
    """
    return data.view(f">u{width}").astype(f"<u{width}").view(np.uint8)


def tensor_parts(tensor: Any) -> tuple[str, list[Part]]:
    """The tensor's kind ('dense', 'sparse_coo', 'quantized') and the parts to hash."""
    import torch

    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"not a tensor: {type(tensor).__name__}")
    layout = tensor.layout
    if getattr(tensor, "is_quantized", False):
        # Never view a quantized tensor's bytes: `q.view(torch.uint8)` corrupts memory.
        ints = tensor.int_repr()
        scheme = str(tensor.qscheme()).replace("torch.", "")
        parts = [Part("int_repr", dtype_name(ints.dtype), tuple(ints.shape), _dense_bytes(ints))]
        if scheme in ("per_tensor_affine", "per_tensor_symmetric"):
            params = torch.tensor([tensor.q_scale()], dtype=torch.float64)
            points = torch.tensor([tensor.q_zero_point()], dtype=torch.int64)
        else:
            # The axis says which dimension the scales run along: same int_repr and scales on
            # another axis are other values. float_qparams zero points are floats: kept exact.
            scheme = f"{scheme}:axis={tensor.q_per_channel_axis()}"
            params = tensor.q_per_channel_scales().to(torch.float64)
            points = tensor.q_per_channel_zero_points()
            points = points.to(torch.float64 if points.is_floating_point() else torch.int64)
        parts.append(Part(f"scale:{scheme}", "float64", tuple(params.shape), _dense_bytes(params)))
        parts.append(Part("zero_point", dtype_name(points.dtype), tuple(points.shape),
                          _dense_bytes(points)))
        return "quantized", parts
    if layout == torch.sparse_coo:
        coalesced = tensor.detach().coalesce()
        indices, values = coalesced.indices(), coalesced.values()
        return "sparse_coo", [
            Part("indices", dtype_name(indices.dtype), tuple(indices.shape), _dense_bytes(indices)),
            Part("values", dtype_name(values.dtype), tuple(values.shape), _dense_bytes(values)),
        ]
    if layout != torch.strided:
        # CSR, CSC and other layouts: hash the dense equivalent, honestly labelled.
        dense = tensor.detach().to_dense()
        return f"dense_from_{str(layout).replace('torch.', '')}", [
            Part("values", dtype_name(dense.dtype), tuple(dense.shape), _dense_bytes(dense))
        ]
    return "dense", [
        Part("values", dtype_name(tensor.dtype), tuple(tensor.shape), _dense_bytes(tensor))
    ]


def digest_parts(kind: str, dtype: str, shape: tuple[int, ...], parts: list[Part]) -> str:
    """BLAKE3 hex digest of a header plus every part (each with its own header)."""
    total = sum(part.data.nbytes for part in parts)
    hasher = (
        blake3.blake3(max_threads=blake3.blake3.AUTO)
        if total >= THREADED_FROM_BYTES
        else blake3.blake3()
    )
    # The headers are json.dumps(..., sort_keys=True) of small dicts, written out directly:
    # the same bytes, and most of the time of a tiny tensor's digest saved.
    hasher.update(_header(kind, dtype, shape))
    for part in parts:
        nbytes = part.data.nbytes
        hasher.update(_part_header(part.name, part.dtype, part.shape, nbytes))
        if nbytes:
            hasher.update(part.data)
    return hasher.hexdigest()


@functools.lru_cache(maxsize=4096)  # the same outputs recur in every run of an audit
def _header(kind: str, dtype: str, shape: tuple[int, ...]) -> bytes:
    return (f'{{"dtype": {_quote(dtype)}, "format": "{FORMAT}", "kind": {_quote(kind)}, '
            f'"shape": {_json_list(shape)}}}\0').encode()


@functools.lru_cache(maxsize=4096)
def _part_header(name: str, dtype: str, shape: tuple[int, ...], nbytes: int) -> bytes:
    return (f'{{"dtype": {_quote(dtype)}, "nbytes": {nbytes}, "part": {_quote(name)}, '
            f'"shape": {_json_list(shape)}}}\0').encode()


_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_:=.-")


def _quote(text: str) -> str:
    """json.dumps of a string: plain names directly, anything else through json."""
    return f'"{text}"' if _PLAIN.issuperset(text) else json.dumps(text)


def _json_list(values: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(int(value)) for value in values) + "]"


def digest(tensor: Any) -> str:
    """The canonical digest of one tensor (hex). Same bytes, dtype and shape: same digest."""
    kind, parts = tensor_parts(tensor)
    return digest_parts(kind, dtype_name(tensor.dtype), tuple(tensor.shape), parts)
