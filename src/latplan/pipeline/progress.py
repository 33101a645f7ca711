"""The one progress protocol of latplan: ``progress(message, done, total)``.

Every long-running entry point (``latplan plan``, ``latplan demo``, the web app's planning jobs,
cohort runs) takes an optional :class:`Progress`. ``done``/``total`` count steps of the caller's
choosing (pipeline stages, demo cases) and may be ``None`` when only a message is known.

:func:`terminal_progress` is the CLI's reporter: a rich progress bar when stdout is a terminal,
plain ``[done/total] message`` lines on stderr otherwise (logs, CI, pipes).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol, TextIO

from rich.console import Console
from rich.progress import BarColumn, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress

__all__ = ["PlainProgress", "Progress", "silent", "terminal_progress"]


class Progress(Protocol):
    """Called before each step: ``message`` says what runs now; ``done`` of ``total`` steps are finished."""

    def __call__(self, message: str, done: int | None = None, total: int | None = None) -> None: ...


def silent(message: str, done: int | None = None, total: int | None = None) -> None:
    """A :class:`Progress` that reports nothing."""


class PlainProgress:
    """Plain lines, one per call: ``[done/total] message`` (or ``message`` when no count is known)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream

    def __call__(self, message: str, done: int | None = None, total: int | None = None) -> None:
        stream = self._stream if self._stream is not None else sys.stderr
        prefix = f"[{done}/{total}] " if done is not None and total is not None else ""
        print(f"{prefix}{message}", file=stream, flush=True)


class _RichProgress:
    def __init__(self, bar: RichProgress) -> None:
        self._bar = bar
        self._task = bar.add_task("starting", total=None)

    def __call__(self, message: str, done: int | None = None, total: int | None = None) -> None:
        self._bar.update(self._task, description=message, completed=done or 0, total=total)


@contextmanager
def terminal_progress(stream: TextIO | None = None) -> Iterator[Progress]:
    """The CLI's reporter: rich bar when ``stream`` (default stdout) is a TTY, else plain lines on stderr."""
    out = stream if stream is not None else sys.stdout
    if not out.isatty():
        yield PlainProgress()
        return
    console = Console(stderr=True)
    with RichProgress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                      console=console, transient=False) as bar:
        yield _RichProgress(bar)
