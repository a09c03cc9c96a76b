"""The progress line: 'scenario i of N' on a terminal, nothing in CI or a pipe."""

from __future__ import annotations

import io

from audit.run.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_sees_one_rewritten_line(monkeypatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    stream = Terminal()
    progress = Progress(stream)
    progress(0, 3, "rng.rand [cpu]")
    progress(1, 3, "rng.randn [cpu]")
    progress.close()
    text = stream.getvalue()
    assert "\r[1/3] rng.rand [cpu]" in text and "\r[2/3] rng.randn [cpu]" in text
    assert "\n" not in text and text.endswith("\r")


def test_ci_and_pipes_stay_quiet(monkeypatch) -> None:
    monkeypatch.setenv("CI", "true")
    stream = Terminal()
    Progress(stream)(0, 3, "rng.rand [cpu]")
    assert stream.getvalue() == ""
    monkeypatch.delenv("CI")
    pipe = io.StringIO()
    Progress(pipe)(0, 3, "rng.rand [cpu]")
    assert pipe.getvalue() == ""


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_log_gets_a_line_every_tenth_of_the_units_or_30_seconds(monkeypatch) -> None:
    monkeypatch.setenv("CI", "true")
    stream, clock = io.StringIO(), Clock()
    progress = Progress(stream, clock=clock)
    for done in range(0, 45):  # 200 units, one per second
        clock.now = 100.0 + done
        progress(done, 200, "x")
    lines = stream.getvalue().splitlines()
    # 20 units (a tenth) come before 30 s: lines at 20 and 40 units
    assert lines == ["20/200 units done, 20 s elapsed", "40/200 units done, 40 s elapsed"]
    slow, clock = io.StringIO(), Clock()
    progress = Progress(slow, clock=clock)
    for done in range(0, 5):  # one unit every 20 s: the 30 s interval comes first
        clock.now = 100.0 + 20 * done
        progress(done, 200, "x")
    assert slow.getvalue().splitlines() == ["2/200 units done, 40 s elapsed",
                                            "4/200 units done, 80 s elapsed"]


def test_the_stream_is_read_when_written_not_at_import(monkeypatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    swapped = io.StringIO()
    monkeypatch.setattr("sys.stderr", swapped)
    clock = Clock()
    progress = Progress(clock=clock)
    progress(0, 2, "x")
    clock.now += 1
    progress(1, 2, "x")
    assert swapped.getvalue() == "1/2 units done, 1 s elapsed\n"
