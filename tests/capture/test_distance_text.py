"""Distances in words: the report, the CLI, pytest and origins say a gap one way."""

from __future__ import annotations

import numpy as np

from audit.capture import distance_text
from audit.capture.distance import Distance, distance, sample_from_array


def test_each_message_says_ulp_the_same_way() -> None:
    for ulp, said in ((2, "2 ULP"), (999_999, "999999 ULP"), (2**62, "4.6e+18 ULP")):
        gap = Distance(1.0, 1.0, ulp, 1, 4, True)
        assert gap.describe() == f"max abs 1, max {said}, 1 of 4 elements"
        assert distance_text.describe_gap(gap, [4], [4]) == gap.describe()
        assert gap.brief() == said


def test_brief_gives_the_largest_measure_alone() -> None:
    ints = distance(sample_from_array("int32", np.array([1, 2, 3], np.int32)),
                    sample_from_array("int32", np.array([1, 7, 3], np.int32)))
    assert ints.describe() == "max abs 5, 1 of 3 elements"
    assert ints.brief() == "max abs 5"
    bits = Distance(None, None, None, 3, 1_000, False)
    assert bits.describe() == "3 of 1,000 sampled elements"
    assert bits.brief() == "3 of 1000 elements"
    assert Distance(None, None, None, 0, 256, False).brief() == "not in the sampled elements"
    assert distance_text.brief(None) == ""
    assert distance_text.brief(Distance(None, None, None, 0, 0, False, "shape differs")) == ""


def test_a_gap_says_what_keeps_it_from_being_measured() -> None:
    same = Distance(None, None, None, 0, 4, True)
    assert distance_text.describe_gap(same, None, None) == (
        "identical values, digest differs (layout or parameters)")
    assert distance_text.describe_gap(None, [2, 3], (3, 2)) == "shape differs ([2, 3] vs [3, 2])"
    assert distance_text.describe_gap(None, [2], [2]) == (
        "digest differs (no sample kept to measure by how much)")
