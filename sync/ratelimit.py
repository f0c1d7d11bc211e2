"""A per-target token bucket: a target declares how many requests per second it takes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class RateLimiter:
    """``rate`` tokens per second with a burst of ``burst``; a rate of 0 never waits."""

    def __init__(
        self,
        rate: float,
        burst: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.rate = rate
        self.sleep = sleep
        self.burst = max(burst, 1.0)
        self.clock = clock
        self._tokens = self.burst
        self._last = clock()
        self._lock = asyncio.Lock()

    def _delay_for(self, tokens: float) -> float:
        """Refill, then the seconds to wait before ``tokens`` are available (and take them)."""
        now = self.clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        self._tokens -= tokens
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    async def acquire(self, tokens: float = 1.0) -> None:
        """Wait until ``tokens`` requests may be sent."""
        if self.rate <= 0:
            return
        async with self._lock:
            delay = self._delay_for(tokens)
            if delay > 0:
                await self.sleep(delay)
