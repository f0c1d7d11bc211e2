"""Progress of long work (imports, full signs, initial pushes) on the terminal.

One status line on stderr, redrawn at most ten times a second, shown only when stderr is a
terminal and only once the work has taken longer than a second: a script, a pipe or a quick
command sees nothing. When the line was shown, the work ends with one line saying what was
done and how long it took.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

DELAY = 1.0  # seconds of work before anything is shown
REDRAW = 0.1  # seconds between redraws
TICK = 0.25  # seconds between redraws of a step that reports nothing (the time still runs)


class Progress:
    """One long command's progress: :meth:`phase` names the step, :meth:`count` says how
    far it is, :meth:`finish` ends with what was done. A context manager: leaving it clears
    the line (so an error message starts on a clean one). On a terminal a thread redraws
    the line every ``tick`` seconds, so a step that only waits (a provider storing a zone)
    still shows its time running; ``tick=None`` leaves redrawing to the calls."""

    def __init__(
        self,
        title: str,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        interactive: bool | None = None,
        tick: float | None = TICK,
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
        self._lock = threading.Lock()  # the ticker and the work both draw
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        if self.interactive and tick is not None:
            self._ticker = threading.Thread(target=self._tick, args=(tick,), daemon=True)

    def __enter__(self) -> Progress:
        if self._ticker is not None:
            self._ticker.start()
        return self

    def _tick(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self._draw(force=True)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._ticker is not None and self._ticker.is_alive():
            self._ticker.join()
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
        self._stop.set()
        with self._lock:
            if self.shown:
                self._clear()
                self.stream.write(f"{self.title}: {summary} in {_seconds(self.elapsed)}\n")
                self.stream.flush()
                self.shown = False  # said once

    def _draw(self, force: bool = False) -> None:
        if not self.interactive or self._stop.is_set():
            return
        with self._lock:
            self._draw_locked(force)

    def _draw_locked(self, force: bool) -> None:
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
