"""The one fake clock of the tests: time that moves only when a test (or a wait of the code
under test) moves it, so no test measures the wall clock to judge a timing."""

from __future__ import annotations

import asyncio
import threading


class FakeClock:
    """Call it for the time; :meth:`advance` moves it; :meth:`sleep` is an ``asyncio.sleep``
    for the code under test, each wait recorded in ``waits``. By default a sleep moves the
    clock at once instead of waiting; a ``manual`` clock's sleep waits until the test has
    moved the clock far enough. Thread-safe: an emulator's thread and the client under test
    may share it."""

    def __init__(self, now: float = 1_800_000_000.0, *, manual: bool = False) -> None:
        self.now = now
        self.manual = manual
        self.waits: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return float(self.now)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += max(0.0, seconds)

    async def sleep(self, seconds: float) -> None:
        with self._lock:
            self.waits.append(seconds)
            until = self.now + seconds
        if not self.manual:
            self.advance(seconds)
        while self() < until:
            await asyncio.sleep(0.001)  # the test moves the clock from another task
        await asyncio.sleep(0)  # still a point where other tasks run
