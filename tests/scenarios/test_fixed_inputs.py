"""Context.fixed: inputs drawn once per process, never shared with a scenario that writes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audit.scenarios.context import Context


@pytest.mark.parametrize("dtype, kind", [(None, "normal"), (torch.float64, "normal"),
                                         (None, "int"), (torch.float16, "uniform")])
def test_a_scenario_writing_its_input_does_not_change_the_next_draw(dtype, kind) -> None:
    context = Context(device="cpu")
    first = context.fixed(5, 7, dtype=dtype, seed=3, kind=kind)
    expected = first.clone()
    first.zero_()  # in place, as a scenario may
    again = context.fixed(5, 7, dtype=dtype, seed=3, kind=kind)
    assert torch.equal(again, expected) and again.data_ptr() != first.data_ptr()


def test_draws_are_numpy_s_frozen_stream_cast_as_before() -> None:
    values = np.random.RandomState(11).standard_normal((64,))
    for _ in range(2):  # drawn, then from the cache
        drawn = Context(device="cpu").fixed(64, seed=11)
        assert drawn.dtype == torch.float32
        assert torch.equal(drawn, torch.from_numpy(values).to(torch.float32))
