"""Digests and samples of the tensors an op reads and writes, each hashed once while unwritten.

A digest is the canonical one (audit.capture.hashing), cut to its first 128 bits. It is
reused for a tensor of the same storage, offset, shape, strides and dtype while the tensor
first hashed lives and no op has written that storage: the recorder tells the cache what
each op writes. Writes that bypass the dispatcher (through `.numpy()`, another process) are
not seen. Non-materialisable tensors (meta, some subclasses) get the digest None.

Tensors are only read: in place through ctypes for dense CPU tensors (never through
`Tensor.numpy()`, which would make a storage unresizable for good), from a copy otherwise.
"""

from __future__ import annotations

import ctypes
import sys
import weakref
from typing import Any

import numpy as np
import torch

from audit.capture.hashing import Part, digest_parts, dtype_name, tensor_parts
from audit.trace.model import DIGEST_CHARS, UNINITIALISED
from audit.trace.samples import trace_sample

try:
    from torch.multiprocessing.reductions import StorageWeakRef
except ImportError:  # pragma: no cover - every audited torch has it
    StorageWeakRef = None

_LITTLE = sys.byteorder == "little"
_inference_mode = getattr(torch, "is_inference_mode_enabled", lambda: False)


def parts_of(tensor: Any) -> tuple[str, list[Part]]:
    """`tensor_parts`, but never handing the tensor's own storage to numpy.

    `Tensor.numpy()` marks a storage as not resizable, for good: a later `resize_`, or
    an `out=` op that resizes, would then fail where it ran before. Dense CPU bytes are
    read in place through ctypes instead; anything else is hashed from a copy.
    """
    if (tensor.layout == torch.strided and not tensor.is_quantized and _LITTLE
            and tensor.device.type == "cpu" and tensor.is_contiguous()
            and not tensor.is_conj() and not tensor.is_neg()):
        nbytes = tensor.numel() * tensor.element_size()
        data = (np.frombuffer((ctypes.c_ubyte * nbytes).from_address(tensor.data_ptr()),
                              dtype=np.uint8) if nbytes else np.zeros(0, dtype=np.uint8))
        return "dense", [Part("values", dtype_name(tensor.dtype), tuple(tensor.shape), data)]
    moved = tensor.device.type != "cpu" and tensor.layout == torch.strided
    return tensor_parts(tensor if moved and not tensor.is_quantized else tensor.clone())


def storage_key(tensor: Any) -> tuple[str, int] | None:
    """(device, address of the storage's first byte): what a write changes."""
    try:
        start = int(tensor.data_ptr()) - tensor.storage_offset() * tensor.element_size()
        return str(tensor.device), start
    except Exception:  # noqa: BLE001 - sparse, meta, subclasses: not cached
        return None


def geometry(tensor: Any) -> tuple[Any, ...] | None:
    """Tensors with the same geometry on an unwritten storage hold the same values."""
    storage = storage_key(tensor)
    if storage is None:
        return None
    return (storage, tensor.storage_offset(), tuple(tensor.shape), tuple(tensor.stride()),
            tensor.dtype, tensor.is_conj(), tensor.is_neg())


def storage_reference(tensor: Any) -> Any:
    """A weak reference to the tensor's storage (None where torch gives none)."""
    if StorageWeakRef is None:
        return None
    try:
        storage = (tensor.untyped_storage() if hasattr(tensor, "untyped_storage")
                   else tensor.storage())  # torch < 2.0
        return StorageWeakRef(storage)
    except Exception:  # noqa: BLE001 - sparse, meta, subclasses: no link
        return None


def version(tensor: Any) -> int | None:
    try:
        return int(tensor._version)
    except Exception:  # noqa: BLE001 - inference tensors have no version counter
        return None


class DigestCache:
    """Digests and samples by tensor geometry, dropped when their storage is written.

    `views` (the trace's) receives, for a view or alias hashed, its digest -> its base's.
    """

    def __init__(self, views: dict[str, str]) -> None:
        self.views = views
        # geometry -> (weakref to the tensor hashed, its version, digest, sample, in-place)
        self.cache: dict[tuple[Any, ...], tuple[Any, int, str | None, Any, bool]] = {}
        self.by_storage: dict[tuple[str, int], set[tuple[Any, ...]]] = {}
        # storage -> (weak reference to it, elements, digest) of its largest value
        self.roots: dict[tuple[str, int], tuple[Any, int, str | None]] = {}

    def digest(self, tensor: Any, in_place: bool = False) -> tuple[str | None, Any]:
        """Digest and sample of a tensor, from the cache while its storage is unwritten."""
        try:
            where = geometry(tensor)
            entry = self.cache.get(where) if where is not None else None
            if entry is not None:
                hashed = entry[0]()
                now = version(hashed) if hashed is not None else None
                if now is not None and (now == entry[1] or (entry[4] and now == entry[1] + 1)):
                    return entry[2], entry[3]
            base = tensor._base if tensor._is_view() else None
            root = self.digest(base)[0] if base is not None else self.alias_of(where)
            if root == UNINITIALISED:
                return UNINITIALISED, None
            if tensor.device.type == "meta":
                raise ValueError("meta tensors have no values")
            kind, parts = parts_of(tensor)
            digest = digest_parts(kind, dtype_name(tensor.dtype), tuple(tensor.shape),
                                  parts)[:DIGEST_CHARS]
            sample = trace_sample(parts)
        except Exception:  # noqa: BLE001 - a value we cannot read is unknown, not fatal
            return None, None
        if root is not None and root != digest:
            self.views[digest] = root
        self.remember(tensor, digest, sample, in_place)
        return digest, sample

    def alias_of(self, where: tuple[Any, ...] | None) -> str | None:
        """The digest of the largest tensor hashed on this storage, unwritten since.

        A detached alias (`detach()`, `.data`, the gradient autograd hands a leaf after
        `sum_to_size`'s view) has no `_base`, but reads bytes an op made: without the
        link the value would seem to come from nowhere (the origin of every bias after
        an optimizer step went unnamed). The cache's entry of that op's output is gone
        by then (its Python object dies when autograd takes the tensor), so each
        storage keeps its root apart, with a weak reference to the storage itself:
        while that lives, its address is not reused.
        """
        root = self.roots.get(where[0]) if where is not None else None
        if root is None:
            return None
        if root[0].expired():
            del self.roots[where[0]]
            return None
        return root[2]

    def remember(self, tensor: Any, digest: str | None, sample: Any, in_place: bool) -> None:
        now, where = version(tensor), geometry(tensor)
        if now is None or where is None:
            return
        self.forget(where)

        def dropped(_: Any, where: tuple[Any, ...] = where) -> None:
            entry = self.cache.get(where)
            if entry is not None and entry[0]() is None:
                self.forget(where)

        in_place = in_place and not _inference_mode()
        self.cache[where] = (weakref.ref(tensor, dropped), now, digest, sample, in_place)
        self.by_storage.setdefault(where[0], set()).add(where)
        size = tensor.numel()
        root = self.roots.get(where[0])
        if root is None or root[0].expired() or size > root[1]:
            reference = storage_reference(tensor)
            if reference is not None:
                self.roots[where[0]] = (reference, size, digest)

    def forget(self, where: tuple[Any, ...]) -> None:
        if self.cache.pop(where, None) is not None:
            owners = self.by_storage.get(where[0])
            if owners is not None:
                owners.discard(where)
                if not owners:
                    del self.by_storage[where[0]]

    def invalidate(self, written: list[Any], before: list[tuple[str, int] | None]) -> None:
        """Every cached tensor on a storage just written is stale (views, `.data`).

        `before` are the storages the written tensors had before the call: an op that
        resizes its output moves it to a new storage.
        """
        for key in before + [storage_key(tensor) for tensor in written]:
            self.roots.pop(key, None)
            for where in list(self.by_storage.get(key, ())) if key is not None else ():
                self.forget(where)

    def forget_all(self) -> None:
        """When it is unknown what an op wrote, nothing cached can be trusted."""
        self.cache.clear()
        self.by_storage.clear()
        self.roots.clear()
