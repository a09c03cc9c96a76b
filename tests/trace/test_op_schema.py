"""What the recorder reads from an op's schema (audit.trace.ops) and its argument fingerprint."""

from __future__ import annotations

import torch

from audit.trace.ops import arguments_fingerprint, op_info, scalar_digest


def test_views_writes_and_out_arguments_come_from_the_schema() -> None:
    aten = torch.ops.aten
    assert op_info(aten.view.default).view
    added = op_info(aten.add_.Tensor)
    assert not added.view and added.writes == (0, "self") and not added.outs
    out = op_info(aten.add.out)
    assert out.writes == ("out",) and out.outs == frozenset({"out"})
    assert op_info(aten.empty.memory_format).uninitialising
    assert op_info(aten.fill_.Scalar).overwriting
    norm = op_info(aten.native_batch_norm.default)  # running stats: written, undeclared
    assert {3, "running_mean", 4, "running_var"} <= set(norm.writes)


def test_fingerprints_tell_non_tensor_arguments_apart_but_not_devices() -> None:
    assert arguments_fingerprint([]) is None
    assert arguments_fingerprint([1, 0.5]) != arguments_fingerprint([1, 0.25])
    assert (arguments_fingerprint([torch.device("cpu")])
            == arguments_fingerprint([torch.device("meta")]))
    assert scalar_digest(0.1) == f"scalar:float:{(0.1).hex()}"
    assert scalar_digest(3) == "scalar:int:3"
