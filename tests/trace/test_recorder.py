"""The recorder module's top-level names (audit.trace.recorder), imported as any module's."""

from __future__ import annotations

import sys

import torch
from torch.utils._pytree import tree_flatten

from audit.trace.digests import DigestCache
from audit.trace.ops import op_info
from audit.trace.record import recorder_for
from audit.trace.recorder import Recorder, before_call, leaves_of


def test_leaves_of_is_tree_flattens_leaves() -> None:
    x = torch.ones(2)
    value = [x, (1, {"k": x}), torch.max(torch.ones(2, 3), dim=1), torch.Size([3])]
    assert all(a is b for a, b in zip(leaves_of(value), tree_flatten(value)[0]))
    assert len(leaves_of(value)) == len(tree_flatten(value)[0])


def test_an_overwritten_argument_is_not_read_and_an_out_argument_is_written() -> None:
    x, y = torch.zeros(3), torch.ones(3)
    inputs, fingerprint, written, before = before_call(
        op_info(torch.ops.aten.copy_.default), (x, y), {}, DigestCache({}))
    assert len(inputs) == 1 and written == [x] and fingerprint == before_call(
        op_info(torch.ops.aten.copy_.default), (y, x), {}, DigestCache({}))[1]
    inputs, _, written, _ = before_call(
        op_info(torch.ops.aten.add.out), (x, y), {"out": x}, DigestCache({}))
    assert len(inputs) == 2 and written == [x]


def test_recorder_for_gives_a_fresh_recorder() -> None:
    first, second = recorder_for(10), recorder_for(10)
    assert isinstance(first, Recorder) and first is not second and first.max_events == 10
    with first:
        line = sys._getframe().f_lineno + 1
        torch.ones(3).sum()
    assert [event.op for event in first.trace.events] == ["aten::ones", "aten::sum"]
    assert first.trace.events[1].source == f"test_recorder.py:{line}"
