"""The recorder's digest cache (audit.trace.digests): reused while unwritten, dropped after."""

from __future__ import annotations

import torch

from audit.capture.hashing import digest
from audit.trace.digests import DigestCache, storage_key
from audit.trace.model import DIGEST_CHARS, UNINITIALISED


def test_a_digest_is_the_canonical_one_and_is_reused_while_the_tensor_is_unwritten() -> None:
    cache = DigestCache({})
    x = torch.arange(6, dtype=torch.float32)
    first, sample = cache.digest(x)
    assert first == digest(x)[:DIGEST_CHARS]
    assert sample is not None and sample["of"] == 6
    assert cache.digest(x) == (first, sample)
    x.add_(1)  # bumps the version: the cached digest is stale
    assert cache.digest(x)[0] == digest(x)[:DIGEST_CHARS] != first


def test_a_view_is_linked_to_its_base_and_a_written_storage_is_forgotten() -> None:
    views: dict[str, str] = {}
    cache = DigestCache(views)
    x = torch.linspace(0, 1, 8)
    base = cache.digest(x)[0]
    tail = x[4:]
    view = cache.digest(tail)[0]
    assert view is not None and views == {view: base}
    cache.invalidate([x], [storage_key(x)])
    assert not cache.cache and not cache.roots


def test_a_tensor_on_uninitialised_memory_stays_uninitialised_until_written() -> None:
    cache = DigestCache({})
    t = torch.empty(16)
    cache.remember(t, UNINITIALISED, None, False)
    assert cache.digest(t) == (UNINITIALISED, None)
    assert cache.digest(t[:4]) == (UNINITIALISED, None)
    cache.forget_all()
    assert cache.digest(t)[0] == digest(t)[:DIGEST_CHARS]
