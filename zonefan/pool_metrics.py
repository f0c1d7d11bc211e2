"""The health-checked pools' Prometheus metrics, registered beside the server's when
``zonefan serve`` runs pools and ``--metrics``: per pool its members, how many the checks
find healthy, and whether it is degraded (every member down, all kept in the answer)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import dns.name
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

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
