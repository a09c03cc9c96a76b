"""Which units need a trace (audit.trace.needs): both sides of every differing comparison,
one context of each differing pair first, and more only where that one names no origin."""

from __future__ import annotations

import json
from typing import Any

from audit.store.results import make_row
from audit.trace.needs import Source, differing, every_cell, wanted


def row(scenario: str, output: str, digest: str, torch: str = "2.13.0", **settings: str
        ) -> dict[str, Any]:
    return make_row(scenario=scenario, output=output, status="ok", digest=digest,
                    repeatable=True, device="cpu", torch_version=torch, env_id=torch,
                    settings=settings)


def test_only_both_sides_of_a_differing_comparison_need_a_trace() -> None:
    rows = [row("a.sum", "x", "1", threads="1", cpu_capability="avx2"),
            row("a.sum", "x", "2", threads="2", cpu_capability="avx2"),
            row("a.sum", "x", "1", threads="1", cpu_capability="avx512"),
            row("a.sum", "x", "1", threads="2", cpu_capability="avx512"),
            row("b.same", "y", "7", threads="1", cpu_capability="avx2"),
            row("b.same", "y", "7", threads="2", cpu_capability="avx2")]
    cells = differing([Source("f", {}, rows)])
    need = wanted(cells, "f")
    expected = {json.dumps(["a.sum", "cpu", {"cpu_capability": "avx2", "threads": t}],
                           sort_keys=True) for t in ("1", "2")}
    # avx2 threads 1 vs 2 differ; at avx512 they agree, and across capabilities the
    # two-thread cells differ (2 vs 1): those are traced too.
    expected.add(json.dumps(["a.sum", "cpu", {"cpu_capability": "avx512", "threads": "2"}],
                            sort_keys=True))
    assert set(need) == expected
    assert len(every_cell([Source("f", {}, rows)])) == 6
    assert wanted(cells, "f", traced=set(need.values())) == {}


def test_across_environments_a_difference_needs_traces_on_both_sides() -> None:
    old = [row("a.f", "x", "1", torch="2.13.0", threads="1")]
    new = [row("a.f", "x", "2", torch="2.14.1", threads="1")]
    same = [row("a.f", "x", "1", torch="2.15.0", threads="1")]
    cells = differing([Source("old", {}, old), Source("new", {}, new),
                       Source("same", {}, same)])
    assert {cell.source for cell in cells} == {"old", "new", "same"}
    assert differing([Source("old", {}, old), Source("same", {}, same)]) == set()


def test_not_repeatable_values_are_not_compared_so_need_no_trace() -> None:
    rows = [row("a.f", "x", "1", threads="1"), row("a.f", "x", "2", threads="2")]
    rows[1]["repeatable"] = False
    assert differing([Source("f", {}, rows)]) == set()


def test_a_side_that_cannot_be_traced_makes_the_other_side_not_needed() -> None:
    here = [row("a.f", "x", "1", threads="1")]
    kept = [row("a.f", "x", "2", torch="2.14.1", threads="1")]
    sources = [Source("here", {}, here), Source("kept", {}, kept)]
    assert {cell.source for cell in differing(sources)} == {"here", "kept"}
    assert differing(sources, lambda cell: cell.source == "here") == set()
    both = differing(sources, lambda cell: True)
    assert {cell.source for cell in both} == {"here", "kept"}


def test_one_context_per_differing_pair_is_traced_unless_it_gives_no_origin() -> None:
    from audit.trace.needs import Selection, groups_of

    # threads 1 vs 2 differ under every capability; avx2 vs default only at threads 2.
    digests = {("1", "default"): "a", ("2", "default"): "b", ("1", "avx2"): "a",
               ("2", "avx2"): "c"}
    rows = [row("a.sum", "x", digest, threads=t, cpu_capability=c)
            for (t, c), digest in digests.items()]
    selection = Selection(groups_of([Source("f", {}, rows)]))
    first = {json.loads(cell.trace)[2]["cpu_capability"] + json.loads(cell.trace)[2]["threads"]
             for cell in selection.cells()}
    # threads: the default-capability context only; capability: threads 2 (where it differs)
    assert first == {"default1", "default2", "avx22"}
    checks = {key[2]: key for key, _, _ in selection.checks()}
    selection.resolved(checks["setting:cpu_capability"])
    assert selection.more(checks["setting:threads"])  # no origin there: every context
    assert len(selection.cells()) == 4
    assert selection.checks() == []  # nothing left to check: as with every unit traced
