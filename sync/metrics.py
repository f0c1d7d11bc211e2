"""The sync sidecar's Prometheus metrics, read at scrape time.

Per configured (target, zone): the serial the sidecar transferred from the primary (the
source), the serial last pushed to the target, the lag (how long the target has not held
the source serial, 0 when it does), the time of the last successful push, and the failed
or refused attempts since the process started. The verdict and lag come from
:func:`sync.status.target_rows`, the same reading ``zonefan sync status`` prints; the state
file is read once per scrape (one query), the local copy's version only when its serial
changed. Push durations come from the engine's observers, in the engine's time.
"""

from __future__ import annotations

from collections.abc import Iterator

import dns.name
from prometheus_client import Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sync.engine import Outcome, SyncEngine
from sync.status import ZoneStatus, target_rows

# Seconds: a record push to an API takes a fraction of a second, a large zone's first push
# or a provider-side secondary's transfer tens of seconds.
PUSH_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class SyncCollector(Collector):
    """The metrics of one engine; observes its push attempts from construction on."""

    def __init__(self, engine: SyncEngine) -> None:
        self.engine = engine
        self.errors: dict[tuple[str, str], int] = {}
        self.push_seconds = Histogram(
            "zonefan_sync_push_seconds",
            "Time of one push attempt to a target (failed ones included).",
            labelnames=("target",),
            buckets=PUSH_BUCKETS,
            registry=None,
        )
        # Per zone: the local copy's (serial, first seen, content digest) as last read.
        self._copies: dict[dns.name.Name, tuple[int, float, str]] = {}
        engine.observers.append(self.observe)

    def observe(self, outcome: Outcome, seconds: float) -> None:
        self.push_seconds.labels(outcome.target).observe(max(seconds, 0.0))
        if not outcome.ok:
            key = (outcome.target, outcome.zone)
            self.errors[key] = self.errors.get(key, 0) + 1

    def _copy(self, zone: dns.name.Name) -> tuple[int, float, str] | None:
        """The local copy's version, read from the state only when its serial moved."""
        data = self.engine.zone(zone)
        if data is None:
            return None
        cached = self._copies.get(zone)
        if cached is None or cached[0] != data.serial:
            version = self.engine.state.zone_version(zone)
            if version is None:
                return None
            self._copies[zone] = cached = version
        return cached

    def collect(self) -> Iterator[Metric]:
        engine = self.engine
        zones = []
        for zone in engine.zones:
            copy = self._copy(zone)
            if copy is not None:
                serial, seen_at, digest = copy
                zones.append(ZoneStatus(zone.to_text(), serial, None, serial, digest, seen_at))
        copies = {z.zone: z for z in zones}
        pairs = [
            (name, zone.to_text())
            for name, spec in engine.targets.items()
            for zone in engine.zones
            if spec.serves(zone)
        ]
        labels = ("target", "zone")
        source = GaugeMetricFamily(
            "zonefan_sync_source_serial",
            "Serial of the zone the sidecar transferred from the primary.",
            labels=labels,
        )
        pushed = GaugeMetricFamily(
            "zonefan_sync_target_serial", "Serial last pushed to the target.", labels=labels
        )
        lag = GaugeMetricFamily(
            "zonefan_sync_lag_seconds",
            "Seconds since the source serial arrived that the target does not hold it "
            "(0: in sync).",
            labels=labels,
        )
        refused = GaugeMetricFamily(
            "zonefan_sync_refused",
            "1 while the push of the source serial is refused (waits for the zone, the "
            "config or an operator).",
            labels=labels,
        )
        success = GaugeMetricFamily(
            "zonefan_sync_last_success_timestamp_seconds",
            "When a push to the target last succeeded (Unix time).",
            labels=labels,
        )
        errors = CounterMetricFamily(
            "zonefan_sync_errors",
            "Push attempts that failed or were refused, since the sidecar started.",
            labels=labels,
        )
        now = engine.clock()
        rows = target_rows(
            zones,
            [p for p in pairs if p[1] in copies],
            engine.state.status(),
            engine.clock,
        )
        for row in rows:
            key = (row["target"], row["zone"])
            source.add_metric(key, row["copy_serial"])
            if row["pushed_serial"] is not None:
                pushed.add_metric(key, row["pushed_serial"])
            seconds = row["lag_seconds"]
            arrived = copies[row["zone"]].copy_seen_at
            if seconds is None and arrived is not None:  # refused: behind since it arrived
                seconds = max(0.0, now - arrived)
            lag.add_metric(key, seconds or 0.0)
            refused.add_metric(key, 1 if row["verdict"] == "refused" else 0)
            if row["last_success"] is not None:
                success.add_metric(key, row["last_success"])
        for key in pairs:
            errors.add_metric(key, self.errors.get(key, 0))
        yield from (source, pushed, lag, refused, success, errors)
        yield from self.push_seconds.collect()
