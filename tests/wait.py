"""Polling for an event, the one way a test waits: the wait ends as soon as the event is
seen, and only a deadline far beyond any expected delay fails the test. A test never
sleeps to show that something did not happen; it waits for the event that would show it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

DEADLINE = 10.0  # seconds: a failure, never a measurement


def wait_until(
    check: Callable[[], object],
    timeout: float = DEADLINE,
    interval: float = 0.05,
    what: str | None = None,
) -> float:
    """Poll ``check()`` until truthy; the seconds it took. Raises AssertionError on timeout,
    naming ``what`` did not happen."""
    start = time.monotonic()
    while True:
        if check():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not true within {timeout} s: {what or check}")
        time.sleep(interval)


async def until(check: Callable[[], object], what: str, timeout: float = DEADLINE) -> None:
    """``wait_until`` inside an event loop: other tasks run while it polls."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out after {timeout} s: {what}"
        await asyncio.sleep(0.01)
