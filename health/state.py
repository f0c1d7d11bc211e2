"""The state of one member: one checker's rise/fall streak, and flap damping.

Both take the time as an argument (the caller's clock), so a test drives an hour of
flapping without waiting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from health.config import Damping


@dataclass
class Streak:
    """One checker's judgement of one member, as HAProxy's checks judge a server: while up,
    ``fall`` failures in a row bring it down; while down, ``rise`` successes in a row bring
    it up; a result that agrees with the state resets the count. A member starts up: the
    pool is published as configured until checks say otherwise."""

    rise: int
    fall: int
    up: bool = True
    count: int = 0  # results in a row that disagree with ``up``
    at: float = -math.inf  # when the last result was taken
    detail: str = ""  # what the last result saw

    def record(self, ok: bool, at: float, detail: str = "") -> bool:
        """Take a result; True when it changes ``up``."""
        self.at = max(self.at, at)
        self.detail = detail
        if ok == self.up:
            self.count = 0
            return False
        self.count += 1
        if self.count < (self.rise if ok else self.fall):
            return False
        self.up, self.count = ok, 0
        return True


@dataclass
class Flap:
    """RFC 2439 damping of one member: a figure of merit that each withdrawal raises by
    the penalty and that decays exponentially; at ``suppress`` the member is held out
    until the figure decays below ``reuse``. Capped at the ceiling, so a member that stops
    flapping is held at most ``max_suppress``."""

    damping: Damping
    merit: float = 0.0
    at: float = 0.0
    suppressed: bool = False

    def value(self, now: float) -> float:
        if not self.merit:
            return 0.0
        elapsed = max(0.0, now - self.at)
        return float(self.merit * 0.5 ** (elapsed / self.damping.half_life))

    def withdrawn(self, now: float) -> None:
        """A withdrawal at ``now``: the penalty, and suppression at the threshold."""
        if not self.damping.enabled:
            return
        self.merit = min(self.value(now) + self.damping.penalty, self.damping.ceiling)
        self.at = now
        if self.merit >= self.damping.suppress:
            self.suppressed = True

    def update(self, now: float) -> bool:
        """Release a suppressed member whose figure decayed below ``reuse``; True when it
        was released now."""
        if self.suppressed and self.value(now) < self.damping.reuse:
            self.suppressed = False
            return True
        return False

    def reuse_at(self) -> float:
        """When a suppressed member will be released if it does not flap again."""
        if not self.merit or self.merit < self.damping.reuse:
            return self.at
        return self.at + self.damping.half_life * math.log2(self.merit / self.damping.reuse)
