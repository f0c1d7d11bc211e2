"""Log lines a client can cause, limited per reason so that no client can fill the log.

A refused transfer, a refused UPDATE or a closed TCP connection is worth a line for an
operator looking into a misconfigured secondary, but an attacker can cause one per packet.
:class:`LogLimiter` lets through at most ``lines`` lines per ``interval`` seconds for each
reason (a fixed string chosen by the caller, never client data, so the table stays small);
the rest are counted, and the first line let through after a suppression says how many were
left out (the way the kernel's printk rate limit reports "callbacks suppressed").
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

LINES = 10  # per reason and interval: enough to see who and what, not a flood
INTERVAL = 60.0  # seconds


_limiters: weakref.WeakSet[LogLimiter] = weakref.WeakSet()


@dataclass
class _Window:
    start: float
    logged: int = 0
    suppressed: int = 0


class LogLimiter:
    """At most ``lines`` log lines per ``interval`` seconds for each reason.

    Thread-safe: the UPDATE service logs from its worker thread. ``clock`` is injected in
    tests (it must not go backwards)."""

    def __init__(
        self,
        logger: logging.Logger,
        lines: int = LINES,
        interval: float = INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if lines < 1 or interval <= 0:
            raise ValueError("a log limit needs at least one line per positive interval")
        self.logger = logger
        self.lines = lines
        self.interval = interval
        self.clock = clock
        self._windows: dict[str, _Window] = {}
        self._lock = threading.Lock()
        _limiters.add(self)

    def log(self, level: int, reason: str, msg: str, *args: object) -> bool:
        """Log ``msg % args`` at ``level`` unless ``reason`` used up its lines in this
        interval; True when the line was written."""
        if not self.logger.isEnabledFor(level):
            return False
        suppressed = 0
        with self._lock:
            now = self.clock()
            window = self._windows.get(reason)
            if window is None or now - window.start >= self.interval:
                suppressed = window.suppressed if window is not None else 0
                window = self._windows[reason] = _Window(now)
            if window.logged >= self.lines:
                window.suppressed += 1
                return False
            window.logged += 1
        if suppressed:
            self._summary(level, reason, suppressed)
        self.logger.log(level, msg, *args)
        return True

    def info(self, reason: str, msg: str, *args: object) -> bool:
        """:meth:`log` at INFO."""
        return self.log(logging.INFO, reason, msg, *args)

    def flush(self) -> None:
        """Write the pending "suppressed" counts now (at shutdown: none is lost)."""
        with self._lock:
            pending = [(r, w.suppressed) for r, w in self._windows.items() if w.suppressed]
            self._windows.clear()
        for reason, suppressed in pending:
            self._summary(logging.INFO, reason, suppressed)

    def _summary(self, level: int, reason: str, suppressed: int) -> None:
        self.logger.log(
            level,
            "%d similar log lines (%s) suppressed: at most %d per %g s",
            suppressed,
            reason,
            self.lines,
            self.interval,
        )


def flush_all() -> None:
    """:meth:`LogLimiter.flush` every limiter (the server does at shutdown)."""
    for limiter in list(_limiters):
        limiter.flush()
