"""The one progress protocol: plain lines when the stream is not a terminal (reference: the format
documented in latplan.pipeline.progress, ``[done/total] message``)."""

from __future__ import annotations

import io

from latplan.pipeline import PlainProgress, terminal_progress


def test_plain_progress_lines() -> None:
    buf = io.StringIO()
    p = PlainProgress(buf)
    p("measuring", 1, 4)
    p("lesion_1: rfa")
    assert buf.getvalue() == "[1/4] measuring\nlesion_1: rfa\n"


def test_terminal_progress_is_plain_when_not_a_tty() -> None:
    with terminal_progress(io.StringIO()) as p:
        assert isinstance(p, PlainProgress)
