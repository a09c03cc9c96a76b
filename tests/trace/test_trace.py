"""Op traces: recording (audit.trace) and finding where two runs diverge (audit.trace.origin)."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Callable

import pytest
import torch

from audit.scenarios.context import Context
from audit.scenarios.registry import Unavailable
from audit.store.traces import trace_key
from audit.trace.align import align
from audit.trace.files import read_traces, write_traces
from audit.trace.model import UNINITIALISED, Event, Trace
from audit.trace.origin import NoOrigin, Origin, describe_origin, find_origin
from audit.trace.record import recorder_for, traced
from tests.support import ROOT

# A float32 sum of 2**22 elements is split differently with 1 and 2 threads; every op after
# it only inherits the difference. Variant "clone" adds an op, as a torch upgrade might.
CHAIN = '''
import json, sys
from pathlib import Path
import numpy as np, torch
from audit.scenarios.context import Context
from audit.store.traces import trace_key
from audit.trace.files import write_traces
from audit.trace.record import traced

threads, variant, out = int(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
torch.set_num_threads(threads)

def chain(ctx):
    values = np.random.RandomState(0).random_sample(2 ** 22).astype(np.float32)
    x = torch.from_numpy(values) - 0.5
    if variant == "clone":
        x = x.clone()
    total = x.sum()
    ctx.checkpoint("total", total)
    return {"y": (x * total).exp().mean()}

result, trace = traced(chain, Context(device="cpu"))
write_traces(out, {trace_key("test.chain", "cpu", {"threads": threads}): trace})
print(json.dumps({"y": result["y"].item().hex()}))
'''


@pytest.fixture(scope="module")
def chains(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, Trace]]:
    """Final value and trace of the chain for (threads, variant), run in parallel children."""
    folder = tmp_path_factory.mktemp("chains")
    script = folder / "chain.py"
    script.write_text(CHAIN, encoding="utf-8")
    runs = {"1-plain": ("1", "plain"), "2-plain": ("2", "plain"), "2-clone": ("2", "clone")}
    children = {
        name: subprocess.Popen(
            [sys.executable, str(script), threads, variant, str(folder / f"{name}.gz")],
            cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name, (threads, variant) in runs.items()
    }
    found = {}
    for name, child in children.items():
        stdout, stderr = child.communicate(timeout=300)
        assert child.returncode == 0, stderr
        (trace,) = read_traces(folder / f"{name}.gz").values()
        found[name] = (json.loads(stdout)["y"], trace)
    return found


def ops(trace: Trace) -> list[str]:
    return [event.op for event in trace.events if event.kind == "op"]


def test_thread_divergence_starts_at_the_reduction(chains: dict[str, tuple[str, Trace]]
                                                   ) -> None:
    (y1, one), (y2, two) = chains["1-plain"], chains["2-plain"]
    assert y1 != y2, "the final outputs must differ for this test to mean anything"
    assert ops(one) == ops(two) == ["aten::sub", "aten::sum", "aten::mul", "aten::exp",
                                    "aten::mean"]
    origin = find_origin(one, two)
    assert isinstance(origin, Origin), origin
    assert find_origin(one, two, output="y") == origin
    assert origin.op == "aten::sum"
    assert one.events[origin.call_index_a].op == "aten::sum"
    assert origin.source_line is not None and origin.source_line.startswith("chain.py:")
    assert origin.distance is not None and origin.distance.max_ulp >= 1
    assert origin.more == 0  # mul, exp, mean only inherited the difference
    text = describe_origin(origin)
    assert text.startswith(f"first diverges at aten::sum ({origin.source_line}), ")
    assert text.endswith(" ULP")


def test_an_extra_op_on_one_side_still_aligns(chains: dict[str, tuple[str, Trace]]) -> None:
    (_, plain), (_, cloned) = chains["1-plain"], chains["2-clone"]
    assert ops(cloned) == ["aten::sub", "aten::clone", "aten::sum", "aten::mul", "aten::exp",
                           "aten::mean"]
    pairs = align(plain, cloned)
    clone = ops(cloned).index("aten::clone")
    assert (None, clone) in pairs
    for reverse in (False, True):
        a, b = (cloned, plain) if reverse else (plain, cloned)
        origin = find_origin(a, b)
        assert isinstance(origin, Origin) and origin.op == "aten::sum", origin


def test_no_divergence_reports_none() -> None:
    def function(ctx: Context) -> dict[str, torch.Tensor]:
        x = ctx.fixed(64, 32)
        return {"y": torch.nn.functional.softmax(x @ x.t(), dim=1).sum(0)}

    _, a = traced(function, Context(device="cpu"))
    _, b = traced(function, Context(device="cpu"))
    result = find_origin(a, b)
    assert isinstance(result, NoOrigin) and not result
    assert result.reason == "no traced op differs"
    assert describe_origin(result) == "origin not found: no traced op differs"


def test_recording_only_reads_tensors() -> None:
    def function(ctx: Context) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(),
                                    torch.nn.Linear(16, 2))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        x = ctx.fixed(32, 8)
        for _ in range(3):
            optimizer.zero_grad()
            loss = model(x).pow(2).mean()
            loss.backward()
            optimizer.step()
        buffer = torch.empty(4)
        buffer.copy_(x[0, :4]).mul_(2)
        return {"params": model.state_dict(), "loss": loss.detach(), "buffer": buffer}

    from audit.capture.hashing import digest
    from audit.capture.outputs import flatten_outputs

    bare = flatten_outputs("t", function(Context(device="cpu")))
    result, trace = traced(function, Context(device="cpu"))
    assert {k: digest(v) for k, v in bare.items()} == {
        k: digest(v) for k, v in flatten_outputs("t", result).items()}
    assert [e.op for e in trace.events if e.kind == "output"] == sorted(bare)
    assert not trace.truncated


def test_uninitialised_memory_is_skipped_and_marked() -> None:
    def function(ctx: Context) -> dict[str, torch.Tensor]:
        garbage = torch.empty(5)
        filled = torch.empty(3).fill_(2.0)
        like = torch.empty_like(filled).uniform_()
        return {"read": garbage[1:] + 1, "filled": filled, "like": like}

    _, trace = traced(function, Context(device="cpu"))
    assert not any(op.startswith("aten::empty") for op in ops(trace))
    assert trace.skipped >= 3
    fill = next(event for event in trace.events if event.op == "aten::fill_")
    assert fill.inputs == [] and fill.outputs[0] not in (None, UNINITIALISED)
    add = next(event for event in trace.events if event.op == "aten::add")
    assert add.inputs == [UNINITIALISED]  # a view of garbage is garbage, on both sides alike


def test_writes_invalidate_cached_digests() -> None:
    def function(ctx: Context) -> dict[str, torch.Tensor]:
        p = torch.ones(3)
        first = p * 2
        p.data.add_(1)  # another tensor object, same storage
        view = p[:2]
        view.mul_(3)
        return {"first": first, "second": p * 2}

    _, trace = traced(function, Context(device="cpu"))
    muls = [event for event in trace.events if event.op == "aten::mul" and event.overload
            == "Tensor"]
    assert len(muls) == 2 and muls[0].inputs != muls[1].inputs
    from audit.capture.hashing import digest

    assert muls[1].inputs[0] == digest(torch.tensor([6.0, 6.0, 2.0]))[:32]


def _sgd_bias(scale: float) -> Callable[[Context], dict[str, torch.Tensor]]:
    """Two SGD steps of a linear layer; the input is scaled by a traced op first."""

    def function(ctx: Context) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        layer = torch.nn.Linear(8, 4)
        optimizer = torch.optim.SGD(layer.parameters(), lr=0.1, momentum=0.9)
        x = ctx.fixed(16, 8) * scale
        for _ in range(2):
            optimizer.zero_grad()
            layer(x).pow(2).sum().backward()
            optimizer.step()
        return {"bias": layer.bias.detach().clone()}

    return function


def test_a_gradient_autograd_detached_is_traced_to_the_op_that_made_it() -> None:
    """The bias' gradient reaches the optimizer as a detached alias of `sum`'s output (no
    `_base`): linked to it, the bias' divergence is followed back to where it began."""
    _, a = traced(_sgd_bias(1.0), Context(device="cpu"))
    _, b = traced(_sgd_bias(1.0 + 2**-10), Context(device="cpu"))
    sums = {event.outputs[0] for event in a.events
            if event.op == "aten::sum" and event.shapes == [[1, 4]]}
    assert sums and sums <= set(a.views.values())
    origin = find_origin(a, b, output="bias")
    assert isinstance(origin, Origin) and origin.op == "aten::mul"
    assert origin.note == "its non-tensor arguments differ too"


def test_batch_norm_running_statistics_are_written_outputs() -> None:
    """`native_batch_norm` updates running_mean and running_var in place although its
    schema does not say so: the trace records the new values, never a stale digest."""
    from audit.capture.hashing import digest

    def function(ctx: Context) -> dict[str, torch.Tensor]:
        norm = torch.nn.BatchNorm1d(3)
        x = ctx.fixed(8, 3)
        norm(x)
        norm(x * 2)
        return {"mean": norm.running_mean.detach().clone()}

    result, trace = traced(function, Context(device="cpu"))
    norms = [event for event in trace.events if event.op == "aten::native_batch_norm"]
    assert len(norms) == 2 and len(norms[0].outputs) == 5
    assert norms[1].inputs[3] == norms[0].outputs[3] != norms[0].inputs[3]
    named = next(event for event in trace.events if event.kind == "output")
    assert named.outputs[0] == norms[1].outputs[3] == digest(result["mean"])[:32]


def test_the_recorders_flattening_gives_pytrees_leaves_in_the_same_order() -> None:
    from torch.utils._pytree import tree_flatten

    from audit.trace.record import recorder_for

    leaves = type(recorder_for()).leaves
    x, y = torch.ones(2), torch.zeros(3)
    values = [
        x, 3, None, (x, 2.5, [y, None]), [x, (y, torch.Size([2, 3]))],
        {"out": x, "dim": (0, 1), "dtype": torch.float64},
        torch.max(torch.ones(2, 3), dim=1),  # torch.return_types: not a plain tuple
        [torch.max(y, dim=0), {"a": [x, {"b": y}]}], torch.Size([4]), (),
        (torch.nn.Parameter(x), torch.device("cpu"), torch.strided, torch.contiguous_format),
    ]
    for value in values:
        expected = tree_flatten(value)[0]
        found = leaves(value)
        assert len(found) == len(expected) and all(
            a is b for a, b in zip(found, expected)), value


def test_in_place_and_out_ops_read_before_and_write_after() -> None:
    from audit.capture.hashing import digest

    def function(ctx: Context) -> dict[str, torch.Tensor]:
        x = torch.ones(3)
        x.add_(1)
        out = torch.empty(0)  # resized by the op: a new storage
        torch.mul(x, x, out=out)
        grown = torch.ones(2)
        grown.resize_(4)  # two elements more, uninitialised
        return {"x": x, "out": out, "sum": grown.sum()}

    _, trace = traced(function, Context(device="cpu"))
    events = {event.op: event for event in trace.events if event.kind == "op"}
    assert events["aten::add_"].inputs == [digest(torch.ones(3))[:32]]
    assert events["aten::add_"].outputs == [digest(torch.full((3,), 2.0))[:32]]
    assert events["aten::mul"].overload == "out"
    assert events["aten::mul"].inputs == [digest(torch.full((3,), 2.0))[:32]] * 2
    assert events["aten::mul"].outputs == [digest(torch.full((3,), 4.0))[:32]]
    assert events["aten::sum"].inputs == [UNINITIALISED]


def test_source_lines_point_at_the_callers_code() -> None:
    def function(ctx: Context) -> dict[str, torch.Tensor]:
        x = ctx.fixed(4)  # ops inside ctx.fixed are charged to this line
        return {"y": torch.nn.functional.relu(x)}

    _, trace = traced(function, Context(device="cpu"))
    lines = {event.op: event.source for event in trace.events if event.kind == "op"}
    assert lines["aten::_to_copy"] is not None and lines["aten::_to_copy"].startswith(
        "test_trace.py:")
    assert lines["aten::relu"] != lines["aten::_to_copy"]


# --- synthetic traces: what a torch version change does to the op sequence ----------------

def op(index: int, name: str, inputs: list[str], outputs: list[str], shape: list[int] | None = None,
       sample: dict | None = None) -> Event:
    return Event(index=index, kind="op", op=name, source=f"model.py:{10 + index}", inputs=inputs,
                 outputs=outputs, shapes=[shape or [4]] * len(outputs),
                 dtypes=["float32"] * len(outputs), samples=[sample] * len(outputs))


def named(index: int, kind: str, name: str, digest: str) -> Event:
    return Event(index=index, kind=kind, op=name, inputs=[digest], outputs=[digest],
                 shapes=[[4]], dtypes=["float32"], samples=[None])


def renumber(events: list[Event]) -> Trace:
    return Trace(events=[replace(event, index=k) for k, event in enumerate(events)])


def test_an_op_split_in_two_is_an_origin_only_where_values_differ() -> None:
    # a: y = addmm(b, x, w); b: t = mm(x, w); y = add(t, b). Then both: z = relu(y).
    a = renumber([op(0, "aten::addmm", ["bias", "x", "w"], ["y_a"]),
                  op(1, "aten::relu", ["y_a"], ["z_a"]), named(2, "output", "z", "z_a")])
    b = renumber([op(0, "aten::mm", ["x", "w"], ["t"]), op(1, "aten::add", ["t", "bias"], ["y_b"]),
                  op(2, "aten::relu", ["y_b"], ["z_b"]), named(3, "output", "z", "z_b")])
    origin = find_origin(a, b)
    assert isinstance(origin, Origin), origin
    assert origin.op == "aten::relu" and origin.call_index_a == 1 and origin.call_index_b == 2
    assert "only in a: aten::addmm" in origin.note and "only in b: aten::add" in origin.note
    # The same restructuring with identical results is no divergence at all.
    same = renumber([op(0, "aten::mm", ["x", "w"], ["t"]),
                     op(1, "aten::add", ["t", "bias"], ["y_a"]),
                     op(2, "aten::relu", ["y_a"], ["z_a"]), named(3, "output", "z", "z_a")])
    assert find_origin(a, same) == NoOrigin("no traced op differs")
    # Split at the very end: the output anchor shows it; the one-sided ops are named.
    a_end = renumber([op(0, "aten::addmm", ["bias", "x", "w"], ["y_a"]),
                      named(1, "output", "y", "y_a")])
    b_end = renumber([op(0, "aten::mm", ["x", "w"], ["t"]),
                      op(1, "aten::add", ["t", "bias"], ["y_b"]), named(2, "output", "y", "y_b")])
    origin = find_origin(a_end, b_end)
    assert isinstance(origin, Origin)
    assert origin.op == "aten::addmm (a) vs aten::add (b)"
    assert (origin.call_index_a, origin.call_index_b) == (0, 1)


def test_downstream_ops_are_not_origins_and_independent_ones_are_counted() -> None:
    a = renumber([op(0, "aten::sum", ["x"], ["s_a"], []), op(1, "aten::mul", ["x", "s_a"], ["m_a"]),
                  op(2, "aten::cumsum", ["x"], ["c_a"])])
    b = renumber([op(0, "aten::sum", ["x"], ["s_b"], []), op(1, "aten::mul", ["x", "s_b"], ["m_b"]),
                  op(2, "aten::cumsum", ["x"], ["c_b"])])
    origin = find_origin(a, b)
    assert isinstance(origin, Origin)
    assert (origin.op, origin.call_index_a, origin.more) == ("aten::sum", 0, 1)
    assert describe_origin(origin) == "first diverges at aten::sum (model.py:10) (+1 more origin)"
    # Per output: only the origins its value was computed from.
    for trace, side in ((a, "a"), (b, "b")):
        trace.events += [named(3, "output", "m", f"m_{side}"), named(4, "output", "c", f"c_{side}")]
    assert find_origin(a, b, output="m").op == "aten::sum"
    cumsum = find_origin(a, b, output="c")
    assert (cumsum.op, cumsum.call_index_a, cumsum.more) == ("aten::cumsum", 2, 0)


def test_no_origin_is_claimed_where_tracing_changed_the_output() -> None:
    a = renumber([op(0, "aten::prod", ["x"], ["p_a"]), named(1, "output", "p", "p_a")])
    b = renumber([op(0, "aten::prod", ["x"], ["p_b"]), named(1, "output", "p", "p_b")])
    assert find_origin(a, b, output="p", audited=("p_a" + "f" * 32, "p_b" + "0" * 32)).op \
        == "aten::prod"
    result = find_origin(a, b, output="p", audited=("p_a" + "f" * 32, "other"))
    assert isinstance(result, NoOrigin) and "tracing changed this output on side b" in \
        result.reason


def test_values_made_outside_the_trace_are_not_blamed_on_an_op() -> None:
    a = renumber([op(0, "aten::_to_copy", ["numpy_a"], ["x_a"]),
                  op(1, "aten::exp", ["x_a"], ["e_a"])])
    b = renumber([op(0, "aten::_to_copy", ["numpy_b"], ["x_b"]),
                  op(1, "aten::exp", ["x_b"], ["e_b"])])
    result = find_origin(a, b)
    assert isinstance(result, NoOrigin)
    assert "already differ where first read, at aten::_to_copy (model.py:10)" in result.reason


def test_checkpoints_anchor_the_alignment() -> None:
    # Every value differs, so only structure is left: the longest common run of ops would
    # pair a's three muls with b's, across the checkpoint. The anchor keeps them apart.
    a = renumber([op(0, "aten::mul", ["x"], ["a0"]), op(1, "aten::mul", ["a0"], ["a1"]),
                  op(2, "aten::mul", ["a1"], ["a2"]), named(3, "checkpoint", "h", "a2"),
                  op(4, "aten::add", ["a2"], ["a4"])])
    b = renumber([op(0, "aten::mul", ["x"], ["b0"]), named(1, "checkpoint", "h", "b0"),
                  op(2, "aten::mul", ["b0"], ["b2"]), op(3, "aten::mul", ["b2"], ["b3"]),
                  op(4, "aten::mul", ["b3"], ["b4"]), op(5, "aten::add", ["b4"], ["b5"])])
    pairs = align(a, b)
    assert (3, 1) in pairs and (4, 5) in pairs
    assert [i for i, _ in pairs if i is not None] == list(range(5))
    assert [j for _, j in pairs if j is not None] == list(range(6))
    origin = find_origin(a, b)
    assert isinstance(origin, Origin) and (origin.call_index_a, origin.call_index_b) == (0, 0)


def test_ops_that_computed_the_same_values_pair_first() -> None:
    # b runs one mul more before the checkpoint: a's mul made what b's second mul made.
    a = renumber([op(0, "aten::mul", ["x"], ["p"]), named(1, "checkpoint", "h", "p"),
                  op(2, "aten::mul", ["p"], ["q_a"]), op(3, "aten::mul", ["q_a"], ["r_a"])])
    b = renumber([op(0, "aten::mul", ["x"], ["p0"]), op(1, "aten::mul", ["p0"], ["p"]),
                  named(2, "checkpoint", "h", "p"), op(3, "aten::mul", ["p"], ["q_b"])])
    assert align(a, b) == [(None, 0), (0, 1), (1, 2), (2, 3), (3, None)]
    origin = find_origin(a, b)
    assert isinstance(origin, Origin) and (origin.call_index_a, origin.call_index_b) == (2, 3)
    assert origin.note is None


@pytest.mark.parametrize("cap", [0, 10**9])  # greedy everywhere; difflib and LCS
def test_long_stretches_align_past_insertions_and_substitutions(
        monkeypatch: pytest.MonkeyPatch, cap: int) -> None:
    import audit.trace.align as align_module

    monkeypatch.setattr(align_module, "DIFFLIB_CAP", cap)
    monkeypatch.setattr(align_module, "LCS_CAP", cap)
    names = ["aten::mm", "aten::add", "aten::relu", "aten::mul_", "aten::add_"]

    def chain(side: str, extra: int, diverge: int) -> list[Event]:
        events, previous = [], "x"
        for k in range(300):
            value = f"v{k}" if k < diverge else f"{side}{k}"
            name = "aten::sub" if side == "b" and k == 200 else names[k % 5]  # renamed op
            events.append(op(k, name, [previous], [value]))
            previous = value
            if extra and k % extra == 0:
                events.append(op(k, "aten::clone", [previous], [previous]))
        return events

    a, b = renumber(chain("a", 0, 100)), renumber(chain("b", 7, 100))
    pairs = align(a, b)
    assert [i for i, _ in pairs if i is not None] == list(range(len(a.events)))
    assert [j for _, j in pairs if j is not None] == list(range(len(b.events)))
    clones = {j for j, event in enumerate(b.events) if event.op == "aten::clone"}
    assert {j for i, j in pairs if i is None} == clones | {b.events.index(
        next(e for e in b.events if e.op == "aten::sub"))}
    origin = find_origin(a, b)
    assert isinstance(origin, Origin) and origin.call_index_a == 100 and origin.more == 0


# --- storage, availability ----------------------------------------------------------------

def test_traces_round_trip_and_corrupt_lines_are_skipped(tmp_path: Path) -> None:
    def function(ctx: Context) -> dict[str, torch.Tensor]:
        x = ctx.fixed(300)
        ctx.checkpoint("half", x * 0.5)
        return {"y": x.cumsum(0), "n": x.argmax()}

    _, trace = traced(function, Context(device="cpu"))
    traces = {trace_key("user.f", "cpu", {"threads": "1"}): trace,
              trace_key("user.f", "cpu", {"threads": "2"}): trace}
    path = tmp_path / "results.traces.jsonl.gz"
    write_traces(path, traces)
    again = read_traces(path)
    assert again.keys() == traces.keys()
    assert all(item.to_json() == trace.to_json() for item in again.values())
    assert any(event.kind == "checkpoint" and event.op == "half" for event in trace.events)
    first = path.read_bytes()
    write_traces(path, traces)
    assert path.read_bytes() == first  # stable bytes
    lines = gzip.decompress(first).splitlines()
    path.write_bytes(gzip.compress(lines[0] + b"\n{broken\n"))
    with pytest.warns(UserWarning, match="line 2 skipped"):
        assert len(read_traces(path)) == 1


def test_msgspec_and_the_standard_library_decode_trace_lines_alike(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from audit.trace import files as trace_module
    from audit.trace.files import decode_trace_line, trace_line

    pytest.importorskip("msgspec")

    def function(ctx: Context) -> dict[str, torch.Tensor]:
        x = ctx.fixed(200)
        ctx.checkpoint("sorted", x.sort().values)
        return {"y": (x * 3).cumsum(0), "i": x.argmax(), "v": x[::2]}

    _, trace = traced(function, Context(device="cpu"))
    key = trace_key("user.f", "cpu", {"threads": "1"})
    line = trace_line(key, trace.to_json())
    wrong = trace_line(key, {**trace.to_json(), "format": "other/9"})
    assert trace_module._line_decoder() is not None
    fast_key, fast = decode_trace_line(line)
    with pytest.raises(ValueError, match="format"):
        decode_trace_line(wrong)
    monkeypatch.setattr(trace_module, "_line_decoder", lambda: None)  # the json path
    slow_key, slow = decode_trace_line(line)
    with pytest.raises(ValueError, match="format"):
        decode_trace_line(wrong)
    assert fast_key == slow_key == key
    assert fast == slow and fast.to_json() == trace.to_json()
    assert any(event.samples for event in fast.events)


def test_without_dispatch_modes_tracing_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils._python_dispatch", None)
    with pytest.raises(Unavailable, match="TorchDispatchMode"):
        recorder_for()


def test_a_traces_file_is_made_from_the_journal_without_parsing_traces(tmp_path: Path) -> None:
    from audit.trace.files import journal_line, trace_lines, write_trace_lines

    def function(ctx: Context) -> dict[str, torch.Tensor]:
        return {"y": ctx.fixed(50).cumsum(0)}

    _, trace = traced(function, Context(device="cpu"))
    keys = [trace_key("user.f", "cpu", {"threads": str(n)}) for n in (2, 1)]
    journal = tmp_path / ".run.traces-journal"
    journal.write_text("".join(journal_line(key, trace.to_json()) + "\n" for key in keys)
                       + journal_line("torn", trace.to_json())[:-5], encoding="utf-8")
    lines = trace_lines(journal)
    assert sorted(lines) == sorted(keys)  # the torn last line is left out
    with pytest.warns(UserWarning, match="line 3 skipped"):
        assert set(read_traces(journal)) == set(keys)
    from_journal, direct = tmp_path / "a.traces.jsonl.gz", tmp_path / "b.traces.jsonl.gz"
    write_trace_lines(from_journal, lines)
    write_traces(direct, {key: trace for key in keys})
    assert from_journal.read_bytes() == direct.read_bytes()
    assert trace_lines(direct) == lines  # keys found in a traces file's lines too
