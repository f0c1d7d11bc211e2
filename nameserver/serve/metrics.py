"""The server's Prometheus collector: the counters of :mod:`nameserver.serve.counts` and
what the served snapshots already hold, as metric families, built when a scraper asks.

The work of a scrape is proportional to the number of zones and secondaries: serials and
the earliest RRSIG expiration are read from each served snapshot (its expiration tally is
built when the version is loaded, off the event loop, and carried along by patches).

The collector is registered in a ``prometheus_client.CollectorRegistry`` the caller owns
(the CLI, which serves it over HTTP); the other collectors of the same process (the sync
sidecar of ``serve --sync``, health-checked pools) go in the same registry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import dns.rcode
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from nameserver.serve.counts import RCODE_MASK, SIGNING_BUCKETS, Activity, QueryCounts
from nameserver.serve.rrl import RateLimiter
from nameserver.zone.zones import ZoneRegistry

RCODE_NAMES = tuple(dns.rcode.to_text(dns.rcode.Rcode.make(i)) for i in range(RCODE_MASK + 1))
# RCODEs reported even at zero, so that a rate() over them has a series from the start.
COMMON_RCODES = (0, 1, 2, 3, 4, 5)


class ServerCollector(Collector):
    """The server's metric families, built from its counters when scraped."""

    def __init__(
        self,
        zones: ZoneRegistry,
        counts: QueryCounts,
        activity: Activity,
        rrl: RateLimiter | None = None,
        tcp_open: Callable[[], int] | None = None,
    ) -> None:
        self.zones = zones
        self.counts = counts
        self.activity = activity
        self.rrl = rrl
        self.tcp_open = tcp_open

    def collect(self) -> Iterator[Metric]:
        yield from self._queries()
        yield from self._zones()
        yield from self._activity()
        if self.tcp_open is not None:
            yield GaugeMetricFamily(
                "zonefan_tcp_connections", "Open DNS TCP connections.", value=self.tcp_open()
            )

    def _queries(self) -> Iterator[Metric]:
        queries = CounterMetricFamily(
            "zonefan_queries",
            "DNS answers sent, by protocol and RCODE (UPDATEs included, zone transfers not).",
            labels=("protocol", "rcode"),
        )
        unanswered = CounterMetricFamily(
            "zonefan_queries_unanswered",
            "Messages that got no answer: malformed, dropped by rate limiting, or a TCP "
            "stream closed instead.",
            labels=("protocol",),
        )
        counts = self.counts
        for protocol, slots, none in (
            ("udp", list(counts.udp), counts.udp_unanswered),
            ("tcp", list(counts.tcp), counts.tcp_unanswered),
        ):
            by_rcode = [0] * (RCODE_MASK + 1)
            for slot, count in enumerate(slots):
                by_rcode[slot & RCODE_MASK] += count
            for rcode, total in enumerate(by_rcode):
                if total or rcode in COMMON_RCODES:
                    queries.add_metric((protocol, RCODE_NAMES[rcode]), total)
            unanswered.add_metric((protocol,), none)
        yield queries
        yield unanswered
        if self.rrl is not None:
            limited = self.rrl.limited
            slipped = self.rrl.slipped
            yield CounterMetricFamily(
                "zonefan_rrl_dropped",
                "UDP answers dropped by response rate limiting.",
                value=limited - slipped,
            )
            yield CounterMetricFamily(
                "zonefan_rrl_slipped",
                "UDP answers over the rate limit sent truncated instead (slip).",
                value=slipped,
            )

    def _zones(self) -> Iterator[Metric]:
        serials = GaugeMetricFamily(
            "zonefan_zone_serial", "SOA serial of each served zone.", labels=("zone",)
        )
        expiry = GaugeMetricFamily(
            "zonefan_signature_expiry_timestamp_seconds",
            "Earliest RRSIG expiration in each served signed zone (Unix time); alert when "
            "it comes within the time to repair, e.g. `... - time() < 3 * 86400`.",
            labels=("zone",),
        )
        for origin in self.zones.origins():
            zone = self.zones.get(origin)
            if zone is None:
                continue
            name = zone.origin_name.to_text()
            serials.add_metric((name,), zone.serial)
            # Tallied when the version was loaded (off the loop), carried along by patches.
            earliest = zone.earliest_expiration()
            if earliest is not None:
                expiry.add_metric((name,), earliest)
        yield serials
        yield expiry

    def _activity(self) -> Iterator[Metric]:
        activity = self.activity
        with activity.lock:
            changesets = dict(activity.changesets)
            failures = dict(activity.notify_failures)
            acked = dict(activity.notify_acked)
            signing = list(activity.signing)
            signing_sum = activity.signing_sum
        family = CounterMetricFamily(
            "zonefan_changesets",
            "Changesets committed by this process (UPDATEs, DNSSEC maintenance).",
            labels=("zone",),
        )
        for zone, count in sorted(changesets.items()):
            family.add_metric((zone,), count)
        yield family
        cumulative, total = [], 0
        for bound, count in zip((*map(float, SIGNING_BUCKETS), float("inf")), signing, strict=True):
            total += count
            cumulative.append((_bound_text(bound), total))
        yield HistogramMetricFamily(
            "zonefan_signing_seconds",
            "Time of each signing step of this process (an UPDATE's, a maintenance pass).",
            buckets=cumulative,
            sum_value=signing_sum,
        )
        family = CounterMetricFamily(
            "zonefan_notify_failures",
            "NOTIFY attempts that failed (timeout, error RCODE, bad TSIG), per zone and secondary.",
            labels=("zone", "secondary"),
        )
        for (zone, secondary), count in sorted(failures.items()):
            family.add_metric((zone, secondary), count)
        yield family
        gauge = GaugeMetricFamily(
            "zonefan_notify_acked",
            "1 when the latest NOTIFY of the zone's serial was answered by the secondary.",
            labels=("zone", "secondary"),
        )
        for (zone, secondary), ok in sorted(acked.items()):
            gauge.add_metric((zone, secondary), 1 if ok else 0)
        yield gauge


def _bound_text(bound: float) -> str:
    """A bucket bound as Prometheus writes it (``+Inf``, ``0.005``, ``1.0``)."""
    return "+Inf" if bound == float("inf") else repr(bound)
