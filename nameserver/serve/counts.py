"""What the server counts for its metrics, in plain Python: no lock or call per query.

The UDP and TCP handlers add to :class:`QueryCounts` (one list item incremented per
answer); :class:`Activity` is told of what happens off the query path (a commit, a signing
step, a NOTIFY attempt). :mod:`nameserver.serve.metrics` reads both when scraped; this
module imports no metrics library, so a server without ``--metrics`` loads none.
"""

from __future__ import annotations

import bisect
import threading

import dns.name

from nameserver.zone.changeset import Changeset

# An answer's slot in a protocol's list: the header's fourth octet as it is (RA, Z, AD, CD
# and the RCODE in its low 4 bits), folded to RCODEs when scraped. One subscript per answer,
# no arithmetic: masking out the RCODE, or also reading TC from the third octet, doubles the
# cost of counting (timed in the UDP handler, where a cached answer costs 0.35 us).
SLOTS = 256
RCODE_MASK = 0x0F
# Upper bounds (seconds) of the signing histogram's buckets: one RRset's signatures take
# milliseconds, a full pass over a large zone seconds.
SIGNING_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


def answer_slot(response: bytes) -> int:
    """The slot of ``response`` in a :class:`QueryCounts` list (the UDP handler inlines it)."""
    return response[3]


class QueryCounts:
    """Answers sent by protocol and RCODE, and messages left unanswered. The handlers
    write on the event loop, the collector reads there too."""

    __slots__ = ("tcp", "tcp_unanswered", "udp", "udp_unanswered")

    def __init__(self) -> None:
        self.udp = [0] * SLOTS
        self.tcp = [0] * SLOTS
        # Messages that got no answer: malformed, a failure, dropped by RRL, a TCP stream
        # ended instead.
        self.udp_unanswered = 0
        self.tcp_unanswered = 0


class Activity:
    """What the server's workers report: changesets committed and signing steps (from the
    UPDATE and maintenance threads), and each secondary's latest NOTIFY (on the loop)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()  # taken per commit, signing step or NOTIFY, not per query
        self.changesets: dict[str, int] = {}
        # The signing histogram: a count per bucket of SIGNING_BUCKETS (the last: above
        # them all), the sum of the observed seconds.
        self.signing = [0] * (len(SIGNING_BUCKETS) + 1)
        self.signing_sum = 0.0
        self.notify_failures: dict[tuple[str, str], int] = {}
        self.notify_acked: dict[tuple[str, str], bool] = {}

    def committed(self, changeset: Changeset) -> None:
        zone = changeset.zone.to_text()
        with self.lock:
            self.changesets[zone] = self.changesets.get(zone, 0) + 1

    def signed(self, origin: dns.name.Name, seconds: float) -> None:
        with self.lock:
            self.signing[bisect.bisect_left(SIGNING_BUCKETS, seconds)] += 1
            self.signing_sum += seconds

    def notify_attempt(self, zone: str, secondary: str, acked: bool, failed: bool) -> None:
        """One NOTIFY attempt to ``secondary`` for ``zone``: answered or not, failed or not
        (a failure is a timeout, an error RCODE or a bad TSIG)."""
        key = (zone, secondary)
        with self.lock:
            self.notify_acked[key] = acked
            if failed:
                self.notify_failures[key] = self.notify_failures.get(key, 0) + 1
