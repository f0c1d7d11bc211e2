"""SOA serial arithmetic (RFC 1982) and the per-zone serial policies."""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum

from nameserver.errors import SerialError

Clock = Callable[[], float]

SERIAL_BITS = 32
_HALF = 2 ** (SERIAL_BITS - 1)
_MOD = 2**SERIAL_BITS


class SerialPolicy(StrEnum):
    """How a zone's SOA serial moves on each change."""

    INCREMENT = "increment"
    DATE = "date"  # YYYYMMDDnn
    UNIXTIME = "unixtime"

    @classmethod
    def parse(cls, text: str) -> SerialPolicy:
        """Parse a policy name, with a message listing the valid ones."""
        try:
            return cls(text)
        except ValueError:
            valid = ", ".join(p.value for p in cls)
            raise SerialError(f"unknown serial policy {text!r}; use one of: {valid}") from None


def serial_add(serial: int, n: int) -> int:
    """RFC 1982 §3.1 addition; ``n`` must be in 0..2^31-1."""
    if not 0 <= n <= _HALF - 1:
        raise SerialError(f"cannot add {n} to a serial (RFC 1982 allows 0..{_HALF - 1})")
    return int((serial + n) % _MOD)


def serial_gt(a: int, b: int) -> bool:
    """RFC 1982 §3.2: True when serial ``a`` is greater than ``b``.

    The comparison is undefined when the two are exactly 2^31 apart; like BIND, we call that
    not greater, so a move by exactly half the space is never taken as an increase.
    """
    return a != b and ((a < b and b - a > _HALF) or (a > b and a - b < _HALF))


def serial_ge(a: int, b: int) -> bool:
    """``a`` is equal to or greater than ``b`` in serial arithmetic."""
    return a == b or serial_gt(a, b)


def next_serial(current: int, policy: SerialPolicy, clock: Clock = time.time) -> int:
    """The serial after ``current`` under ``policy``; always greater in RFC 1982 terms."""
    bumped = serial_add(current, 1)
    now = clock()
    if policy is SerialPolicy.INCREMENT:
        return bumped
    if policy is SerialPolicy.UNIXTIME:
        candidate = int(now) % _MOD
    else:
        candidate = int(time.strftime("%Y%m%d", time.gmtime(now))) * 100
    # A clock-derived serial is used only when it moves forward and by less than half the
    # space; otherwise the zone keeps counting from where it is (e.g. 100 changes in a day).
    if serial_gt(candidate, current):
        return int(candidate)
    return bumped
