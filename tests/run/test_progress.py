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
