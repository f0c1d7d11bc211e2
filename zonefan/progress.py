"""Progress of long work (imports, full signs, initial pushes) on the terminal.

One status line on stderr, redrawn at most ten times a second, shown only when stderr is a
terminal and only once the work has taken longer than a second: a script, a pipe or a quick
command sees nothing. When the line was shown, the work ends with one line saying what was
done and how long it took.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

DELAY = 1.0  # seconds of work before anything is shown
REDRAW = 0.1  # seconds between redraws


class Progress:
    """One long command's progress: :meth:`phase` names the step, :meth:`count` says how
    far it is, :meth:`finish` ends with what was done. A context manager: leaving it clears
    the line (so an error message starts on a clean one)."""

    def __init__(
        self,
        title: str,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        interactive: bool | None = None,
    ) -> None:
        self.title = title
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self.interactive = _is_terminal(self.stream) if interactive is None else interactive
        self.started = clock()
        self.shown = False
        self._phase = ""
        self._count = ""
        self._drawn_at = float("-inf")
        self._width = 0

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._clear()

    @property
    def elapsed(self) -> float:
        return self.clock() - self.started

    def phase(self, text: str) -> None:
        """A new step of the work, e.g. ``"signing"``."""
        self._phase, self._count = text, ""
        self._draw(force=True)

    def count(self, done: int, total: int | None = None) -> None:
        """How far the step is: ``done`` of ``total`` (unknown: None)."""
        self._count = _count_text(done, total)
        self._draw()

    def signing(self, done: int, total: int | None) -> None:
        """A signing pass's callback: counts signatures, then says the change is stored."""
        if total is not None and done >= total:
            self.phase("storing")
            return
        first = self._phase != "signing"
        self._phase, self._count = "signing", _count_text(done, total)
        self._draw(force=first)

    def finish(self, summary: str) -> None:
        """End with ``summary`` and the time taken, when the progress line was shown."""
        if self.shown:
            self._clear()
            self.stream.write(f"{self.title}: {summary} in {_seconds(self.elapsed)}\n")
            self.stream.flush()

    def _draw(self, force: bool = False) -> None:
        if not self.interactive:
            return
        now = self.clock()
        if now - self.started < DELAY or (not force and now - self._drawn_at < REDRAW):
            return
        self._drawn_at = now
        parts = [f"{self.title}: {self._phase}", self._count, _seconds(now - self.started)]
        text = " ".join(p for p in parts if p)
        width = shutil.get_terminal_size((80, 24)).columns - 1
        text = text[:width]
        self.stream.write("\r" + text.ljust(self._width))
        self.stream.flush()
        self._width = len(text)
        self.shown = True

    def _clear(self) -> None:
        if self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False


def _count_text(done: int, total: int | None) -> str:
    return f"{done:,}/{total:,} ({100 * done // total}%)" if total else f"{done:,}"


def _seconds(seconds: float) -> str:
    return f"{seconds:.1f} s"
