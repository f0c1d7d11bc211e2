"""The health-checked pools' Prometheus metrics, registered beside the server's when
``zonefan serve`` runs pools and ``--metrics``: per pool its members, how many the checks
find healthy, and whether it is degraded (every member down, all kept in the answer); per
region its latest failover drill (``zonefan drill`` runs in its own process and records
it in the store: read from there, the latest drill of each region only)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from pathlib import Path

import dns.name
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from nameserver.store.store import Store
from zonefan.pools import PoolState


class PoolCollector(Collector):
    """Reads the pools' last decided states when scraped: bounded by the number of pools."""

    def __init__(self, states: Mapping[dns.name.Name, PoolState]) -> None:
        self.states = states

    def collect(self) -> Iterator[Metric]:
        members = GaugeMetricFamily(
            "zonefan_pool_members", "Members configured in the pool.", labels=["pool"]
        )
        healthy = GaugeMetricFamily(
            "zonefan_pool_healthy_members",
            "Members the health checks (a quorum of checkers) find up; drains not counted.",
            labels=["pool"],
        )
        degraded = GaugeMetricFamily(
            "zonefan_pool_degraded",
            "1 while every member is down (all are kept in the answer), else 0.",
            labels=["pool"],
        )
        for name, state in sorted(dict(self.states).items()):
            label = [name.to_text()]
            members.add_metric(label, state.members)
            healthy.add_metric(label, state.healthy)
            degraded.add_metric(label, 1 if state.degraded else 0)
        yield members
        yield healthy
        yield degraded


class DrillCollector(Collector):
    """The latest drill of each region, read from the store when scraped: one indexed
    read of a row per region (about 0.6 ms), and the endpoint renders a scrape at most
    once a second per format. A phase an endpoint never finished reads +Inf."""

    def __init__(self, store_path: str | Path) -> None:
        self.store_path = store_path

    def collect(self) -> Iterator[Metric]:
        start = GaugeMetricFamily(
            "zonefan_drill_last_start_timestamp_seconds",
            "When the region's latest failover drill started (Unix time).",
            labels=["region"],
        )
        passed = GaugeMetricFamily(
            "zonefan_drill_last_passed",
            "1 when the region's latest drill passed (every endpoint converged both ways).",
            labels=["region"],
        )
        seconds = GaugeMetricFamily(
            "zonefan_drill_last_seconds",
            "The slowest endpoint's seconds in the latest drill: to serve the answer without "
            "the region (drained) and with it back (restored); +Inf if one never did.",
            labels=["region", "phase"],
        )
        with Store(self.store_path, create=False, read_only=True) as store:
            drills = store.drills(latest=True)
        for drill in drills:
            if drill.outcome == "running":
                continue
            start.add_metric([drill.region], drill.start)
            passed.add_metric([drill.region], 1 if drill.outcome == "passed" else 0)
            for phase in ("drained", "restored"):
                slowest = drill.slowest(phase)
                if slowest is None:
                    continue
                took = slowest.drained_at if phase == "drained" else slowest.restored_at
                seconds.add_metric([drill.region, phase], math.inf if took is None else took)
        yield start
        yield passed
        yield seconds
