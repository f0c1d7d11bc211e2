"""Prometheus metrics: `zonefan serve --metrics` (and `[serve] metrics`) scraped over HTTP
and read with prometheus_client's own parser; the sync sidecar's collector against
in-memory targets on a fake clock and inside `serve --sync` against pdns_server; the
endpoint's bounds under idle connections and oversized requests."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import math
import os
import socket
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path

import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsigkeyring
import dns.update
import pytest
from prometheus_client import generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector, CollectorRegistry

from nameserver.serve.counts import Activity, QueryCounts
from nameserver.serve.metrics import ServerCollector
from nameserver.store.drills import DrillEndpoint
from nameserver.store.store import Store
from nameserver.zone.zones import ZoneRegistry
from settings import Address
from sync.engine import Outcome
from sync.errors import TargetUnavailableError
from sync.metrics import SyncCollector
from sync.providers.testkit.faults import Fault as ProxyFault
from sync.providers.testkit.faults import FaultProxy
from sync.providers.testkit.memory import Fault, MemoryTarget, StaticSource
from tests.clock import FakeClock
from tests.pdns import PdnsServer
from tests.servers import ZonefanServer, query_message, run_cli
from tests.sidecar import API_KEY_ENV, SECRET_ENV, Sidecar
from tests.test_sync_e2e import KEY, PLAIN, build_store, dig, primary_config
from tests.test_sync_engine import ORIGIN, engine_for, zone
from tests.test_sync_serve import serve_with_sync
from tests.tools import example_store, free_port, write_private
from tests.wait import until, wait_until
from zonefan.metrics import MetricsEndpoint
from zonefan.pool_metrics import DrillCollector

ZONE = "example.test."
SECRET = base64.b64encode(b"metrics-test-secret-0123456789ab").decode()


def config_text(metrics_port: int) -> str:
    return f"""[key.upd]
algorithm = "hmac-sha256"
secret = "{SECRET}"

[[secondary]]
address = "127.0.0.1"

[zone."example.test."]
update-policy = ["grant upd. wildcard *.example.test. TXT"]

[serve]
metrics = "127.0.0.1:{metrics_port}"
"""


def scrape(port: int, accept: str | None = None) -> str:
    headers = {"Accept": accept} if accept else {}
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers=headers)
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200
        return str(response.read().decode())


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    """Every sample of a scrape by (sample name, labels), read by the official parser."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


# -- the server ------------------------------------------------------------------------------


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[ZonefanServer, int]]:
    db = example_store(tmp_path / "z.db")
    port = free_port()
    config = write_private(tmp_path / "zonefan.toml", config_text(port))
    with ZonefanServer(tmp_path, db, probe_name=ZONE, config=config) as server:
        wait_until(lambda: _reachable(port), what="the metrics endpoint answers")
        yield server, port


def _reachable(port: int) -> bool:
    try:
        scrape(port)
    except OSError:
        return False
    return True


def _query(server: ZonefanServer, name: str, tcp: bool) -> int:
    message = dns.message.make_query(name, "A")
    return query_message(server.host, server.port, message, tcp=tcp).rcode()


def _queries(found: Samples) -> dict[tuple[str, str], float]:
    return {
        (dict(labels)["protocol"], dict(labels)["rcode"]): v
        for (name, labels), v in found.items()
        if name == "zonefan_queries_total"
    }


def _delta(
    after: dict[tuple[str, str], float], before: dict[tuple[str, str], float]
) -> dict[tuple[str, str], float]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


def test_serve_counts_queries_by_protocol_and_rcode_and_reports_expiry(
    served: tuple[ZonefanServer, int],
) -> None:
    server, port = served
    before = _queries(samples(scrape(port)))
    sent = {
        ("udp", "NOERROR"): [("www.example.test.", False)] * 5,
        ("udp", "NXDOMAIN"): [("nothing-here.example.test.", False)] * 3,
        ("udp", "REFUSED"): [("www.not-served.org.", False)] * 2,
        ("tcp", "NOERROR"): [("www.example.test.", True)] * 2,
        ("tcp", "NXDOMAIN"): [("nothing-here.example.test.", True)],
        ("tcp", "REFUSED"): [("www.not-served.org.", True)],
    }
    for (_protocol, rcode), queries in sent.items():
        for name, tcp in queries:
            assert dns.rcode.to_text(dns.rcode.Rcode(_query(server, name, tcp))) == rcode
    expected = {key: len(queries) for key, queries in sent.items()}
    # The endpoint serves one rendering for a second: wait for a fresh one, then the exact
    # counts (one more query anywhere would show).
    wait_until(
        lambda: _delta(_queries(samples(scrape(port))), before) == expected,
        what=f"the scrape counts {expected}",
    )

    found = samples(scrape(port))
    soa = query_message(server.host, server.port, dns.message.make_query(ZONE, "SOA"))
    assert value(found, "zonefan_zone_serial", zone=ZONE) == soa.answer[0][0].serial
    expirations = [
        rdata.expiration
        for message in dns.query.xfr(server.host, ZONE, port=server.port, timeout=10)
        for rrset in message.answer
        if rrset.rdtype == dns.rdatatype.RRSIG
        for rdata in rrset
    ]
    assert expirations
    assert value(found, "zonefan_signature_expiry_timestamp_seconds", zone=ZONE) == min(expirations)
    assert value(found, "zonefan_tcp_connections") is not None
    assert value(found, "process_resident_memory_bytes") is not None  # the process collector


def test_an_update_bumps_the_serial_changesets_and_signing_count(
    served: tuple[ZonefanServer, int],
) -> None:
    server, port = served
    before = samples(scrape(port))
    changesets = value(before, "zonefan_changesets_total", zone=ZONE) or 0
    signings = value(before, "zonefan_signing_seconds_count") or 0
    serial = value(before, "zonefan_zone_serial", zone=ZONE)
    keyring = dns.tsigkeyring.from_text({"upd.": ("hmac-sha256", SECRET)})
    update = dns.update.UpdateMessage(ZONE, keyring=keyring, keyname=dns.name.from_text("upd."))
    update.add("_acme-challenge.www", 60, "TXT", '"token"')
    response = dns.query.tcp(update, server.host, port=server.port, timeout=10)
    assert response.rcode() == dns.rcode.NOERROR

    def moved() -> bool:
        now = samples(scrape(port))
        return value(now, "zonefan_zone_serial", zone=ZONE) != serial

    wait_until(moved, what="the new serial in the scrape")
    after = samples(scrape(port))
    soa = query_message(server.host, server.port, dns.message.make_query(ZONE, "SOA"))
    assert value(after, "zonefan_zone_serial", zone=ZONE) == soa.answer[0][0].serial
    assert value(after, "zonefan_changesets_total", zone=ZONE) == changesets + 1
    assert (value(after, "zonefan_signing_seconds_count") or 0) > signings
    assert (value(after, "zonefan_signing_seconds_sum") or 0) > 0


def test_a_taken_metrics_port_fails_serve_before_it_starts(tmp_path: Path) -> None:
    example_store(tmp_path / "z.db", signed=False)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = ("serve", "--listen", f"127.0.0.1:{free_port()}", "--metrics", f"127.0.0.1:{port}")
        done = run_cli(tmp_path / "z.db", *args, check=False)
    assert done.returncode == 1
    assert f"cannot serve metrics on 127.0.0.1:{port}: Address already in use" in done.stderr


def test_the_metrics_option_needs_a_port_and_an_address(tmp_path: Path) -> None:
    done = run_cli(tmp_path / "z.db", "serve", "--metrics", "127.0.0.1", check=False)
    assert done.returncode == 2
    assert "'127.0.0.1': give the port too, e.g. 127.0.0.1:9153" in done.stderr
    config = write_private(tmp_path / "zonefan.toml", '[serve]\nmetrics = "localhost:9"\n')
    done = run_cli(tmp_path / "z.db", "--config", str(config), "serve", check=False)
    assert done.returncode != 0
    assert "serve.metrics" in done.stderr and "not an IP address" in done.stderr


def test_the_collector_folds_header_flags_into_rcodes_and_reports_activity() -> None:
    counts, activity = QueryCounts(), Activity()
    counts.udp[0x83] += 2  # NXDOMAIN, RA set
    counts.udp[0x03] += 1  # NXDOMAIN
    counts.udp[0x20 | 0x0C] += 1  # AD set, RCODE 12 (unassigned): reported once seen
    counts.tcp[0x05] += 1
    counts.udp_unanswered = 4
    activity.signed(dns.name.root, 0.003)
    activity.signed(dns.name.root, 100.0)
    for acked in (False, False, True):
        activity.notify_attempt(ZONE, "192.0.2.1:53", acked=acked, failed=not acked)
    registry = CollectorRegistry()
    registry.register(ServerCollector(ZoneRegistry(), counts, activity))
    found = samples(generate_latest(registry).decode())
    assert value(found, "zonefan_queries_total", protocol="udp", rcode="NXDOMAIN") == 3
    assert value(found, "zonefan_queries_total", protocol="udp", rcode="12") == 1
    assert value(found, "zonefan_queries_total", protocol="udp", rcode="NOERROR") == 0
    assert value(found, "zonefan_queries_total", protocol="tcp", rcode="REFUSED") == 1
    assert value(found, "zonefan_queries_total", protocol="tcp", rcode="12") is None
    assert value(found, "zonefan_queries_unanswered_total", protocol="udp") == 4
    assert value(found, "zonefan_signing_seconds_bucket", le="0.0025") == 0
    assert value(found, "zonefan_signing_seconds_bucket", le="0.005") == 1
    assert value(found, "zonefan_signing_seconds_bucket", le="60.0") == 1
    assert value(found, "zonefan_signing_seconds_bucket", le="+Inf") == 2
    assert value(found, "zonefan_signing_seconds_count") == 2
    assert value(found, "zonefan_signing_seconds_sum") == 100.003
    secondary = {"zone": ZONE, "secondary": "192.0.2.1:53"}
    assert value(found, "zonefan_notify_failures_total", **secondary) == 2
    assert value(found, "zonefan_notify_acked", **secondary) == 1


# -- the endpoint's bounds ---------------------------------------------------------------------


def _server_sockets(pid: int) -> int:
    fds = Path(f"/proc/{pid}/fd")
    return sum(1 for fd in fds.iterdir() if os.readlink(fd).startswith("socket:"))


def _closed_by_peer(sock: socket.socket) -> bool:
    try:
        return sock.recv(1, socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def _raw(port: int, request: bytes) -> bytes:
    """Send ``request``, read until the server closes (or 5 s): what it answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        with contextlib.suppress(OSError):  # closed while still sending: read what it said
            sock.sendall(request)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except OSError:
            pass
        return b"".join(chunks)


def test_idle_connections_and_oversized_requests_cost_the_server_a_bounded_amount(
    served: tuple[ZonefanServer, int],
) -> None:
    server, port = served
    assert server.proc is not None
    pid = server.proc.pid
    baseline = _server_sockets(pid)
    idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(200)]
    try:
        # Each new connection past the limit closes the oldest: most of ours are closed.
        wait_until(
            lambda: sum(_closed_by_peer(s) for s in idle) >= 200 - 16,
            what="the idle connections past the limit closed by the server",
        )
        assert _server_sockets(pid) <= baseline + 16
        huge_line = b"GET /metrics?" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
        assert _raw(port, huge_line).split(b"\r\n")[0].split()[1] in (b"400", b"414")
        huge_header = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 100_000 + b"\r\n\r\n"
        assert _raw(port, huge_header).split(b"\r\n")[0].split()[1] in (b"400", b"431")
        many = b"".join(b"X-%d: y\r\n" % i for i in range(200))
        assert _raw(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")[9:12] in (
            b"400",
            b"431",
        )
        body = b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n"
        assert _raw(port, body + b"z" * 65536)[9:12] == b"405"
        assert _raw(port, b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n")[9:12] == b"404"
        # The DNS side and a scraper are still served, the idle flood still open.
        assert _query(server, "www.example.test.", tcp=False) == dns.rcode.NOERROR
        assert _query(server, "www.example.test.", tcp=True) == dns.rcode.NOERROR
        assert value(samples(scrape(port)), "zonefan_zone_serial", zone=ZONE)
        assert _server_sockets(pid) <= baseline + 16
    finally:
        for sock in idle:
            sock.close()


class CountingCollector(Collector):
    def __init__(self) -> None:
        self.calls = 0

    def collect(self) -> Iterable[Metric]:
        self.calls += 1
        yield CounterMetricFamily("test_renders", "Times collected.", value=self.calls)


async def test_the_endpoint_renders_once_per_interval_speaks_openmetrics_and_ends_idle_ones() -> (
    None
):
    registry = CollectorRegistry()
    counting = CountingCollector()
    registry.register(counting)
    clock = FakeClock()
    endpoint = MetricsEndpoint(
        registry, Address("127.0.0.1", 0), lifetime=0.5, reuse=1.0, clock=clock
    )
    await endpoint.start()
    try:
        loop = asyncio.get_running_loop()
        first = await loop.run_in_executor(None, scrape, endpoint.port)
        again = await loop.run_in_executor(None, scrape, endpoint.port)
        assert first == again and counting.calls == 1  # reused within the interval
        clock.advance(1.0)
        third = await loop.run_in_executor(None, scrape, endpoint.port)
        assert counting.calls == 2 and third != first
        text = await loop.run_in_executor(
            None, scrape, endpoint.port, "application/openmetrics-text; version=1.0.0"
        )
        assert text.endswith("# EOF\n")
        (family,) = openmetrics_families(text)  # type: ignore[no-untyped-call]
        assert family.name == "test_renders"
        # An idle connection is closed after the lifetime, whatever it does.
        reader, writer = await asyncio.open_connection("127.0.0.1", endpoint.port)
        await until(lambda: bool(endpoint.opened), "the connection is counted")
        assert await asyncio.wait_for(reader.read(), 5) == b""
        assert not endpoint.opened
        writer.close()
    finally:
        await endpoint.stop()


# -- the sidecar -------------------------------------------------------------------------------


def _sync_samples(registry: CollectorRegistry) -> Samples:
    return samples(generate_latest(registry).decode())


async def test_sync_metrics_show_serials_lag_errors_and_last_success(tmp_path: Path) -> None:
    clock = FakeClock()
    source = StaticSource(zone(1))
    good, bad = MemoryTarget("good"), MemoryTarget("bad")
    bad.faults = [Fault(TargetUnavailableError("bad", "HTTP 500"), 10)]
    engine = engine_for(tmp_path, source, good, bad, clock=clock)
    registry = CollectorRegistry()
    registry.register(SyncCollector(engine))
    zone_label = ORIGIN.to_text()

    await engine.refresh_zone(ORIGIN)
    arrived = clock()
    clock.advance(3.0)
    outcomes = await engine.drain()
    assert {(o.target, o.ok) for o in outcomes} == {("good", True), ("bad", False)}
    found = _sync_samples(registry)
    ok = {"target": "good", "zone": zone_label}
    failing = {"target": "bad", "zone": zone_label}
    assert value(found, "zonefan_sync_source_serial", **ok) == 1
    assert value(found, "zonefan_sync_target_serial", **ok) == 1
    assert value(found, "zonefan_sync_lag_seconds", **ok) == 0
    assert value(found, "zonefan_sync_last_success_timestamp_seconds", **ok) == clock()
    assert value(found, "zonefan_sync_errors_total", **ok) == 0
    assert value(found, "zonefan_sync_source_serial", **failing) == 1
    assert value(found, "zonefan_sync_target_serial", **failing) is None  # never pushed
    assert value(found, "zonefan_sync_lag_seconds", **failing) == clock() - arrived == 3.0
    assert value(found, "zonefan_sync_errors_total", **failing) == 1
    assert value(found, "zonefan_sync_last_success_timestamp_seconds", **failing) is None
    assert value(found, "zonefan_sync_push_seconds_count", target="bad") == 1

    # A new serial: the good target follows, the bad one keeps failing and falls behind.
    source.current = zone(2)
    await engine.refresh_zone(ORIGIN)
    clock.advance(40.0)
    await engine.drain()
    found = _sync_samples(registry)
    assert value(found, "zonefan_sync_source_serial", **ok) == 2
    assert value(found, "zonefan_sync_target_serial", **ok) == 2
    assert value(found, "zonefan_sync_lag_seconds", **ok) == 0
    assert value(found, "zonefan_sync_lag_seconds", **failing) == 40.0  # since serial 2 came
    assert value(found, "zonefan_sync_errors_total", **failing) == 2
    assert value(found, "zonefan_sync_push_seconds_count", target="good") == 2


def test_a_push_duration_is_observed_in_the_engines_time(tmp_path: Path) -> None:
    engine = engine_for(tmp_path, StaticSource(zone(1)), MemoryTarget("t"))
    collector = SyncCollector(engine)
    collector.observe(Outcome("t", ORIGIN.to_text(), 1, False, "down"), 2.0)
    registry = CollectorRegistry()
    registry.register(collector)
    found = _sync_samples(registry)
    assert value(found, "zonefan_sync_push_seconds_sum", target="t") == 2.0
    assert value(found, "zonefan_sync_push_seconds_bucket", target="t", le="2.5") == 1
    assert value(found, "zonefan_sync_push_seconds_bucket", target="t", le="1.0") == 0


def _stored_serial(server: ZonefanServer, zone: str) -> int:
    with Store(server.db) as store:
        return store.serial(dns.name.from_text(zone))


@pytest.mark.external
def test_sync_run_metrics_in_sync_then_behind_a_failing_target(
    tmp_path: Path, pdns: PdnsServer
) -> None:
    """`zonefan sync run --metrics` pushing to pdns_server through the fault proxy: in sync
    (serials equal, lag 0) after the first push; then every request fails (HTTP 500) and a
    new serial arrives by NOTIFY: the errors grow, the lag since it arrived is over 0, and
    the target keeps the old serial."""
    db = build_store(tmp_path)
    sidecar_port = free_port()
    config = primary_config(tmp_path, sidecar_port)
    with (
        ZonefanServer(tmp_path / "primary", db=db, probe_name=PLAIN, config=config) as primary,
    ):
        proxy = FaultProxy(pdns.api_url).start()
        try:
            sync = write_private(
                tmp_path / "sync.toml",
                f"""state = "sync.db"
listen = "127.0.0.1:{sidecar_port}"
refresh-interval = "1h"
retry-base = "0.2s"
retry-max = "0.5s"

[primary]
address = "127.0.0.1:{primary.port}"
key = "{KEY.name}"
zones = ["{PLAIN}"]

[key.{KEY.name}]
algorithm = "{KEY.algorithm}"
secret-env = "{SECRET_ENV}"

[target.pdns]
type = "powerdns"
url = "{proxy.url}"
api-key-env = "{API_KEY_ENV}"
timeout = "2s"
dns = "127.0.0.1:{pdns.dns_port}"
""",
            )
            port = free_port()
            env = {SECRET_ENV: KEY.secret, API_KEY_ENV: pdns.api_key}
            labels = {"target": "pdns", "zone": PLAIN}
            with Sidecar(tmp_path, sync, env, ["--metrics", f"127.0.0.1:{port}"]):
                wait_until(lambda: _reachable(port), 20, what="the sidecar's metrics endpoint")

                def pushed() -> float | None:
                    found = samples(scrape(port))
                    return value(found, "zonefan_sync_target_serial", **labels)

                first = _stored_serial(primary, PLAIN)
                wait_until(lambda: pushed() == first, 20, what=f"serial {first} pushed")
                found = samples(scrape(port))
                assert value(found, "zonefan_sync_source_serial", **labels) == first
                assert value(found, "zonefan_sync_lag_seconds", **labels) == 0
                assert value(found, "zonefan_sync_errors_total", **labels) == 0
                assert value(found, "zonefan_sync_last_success_timestamp_seconds", **labels)

                proxy.faults.append(ProxyFault("500", 100_000))
                primary.cli("record", "add", PLAIN, "metrics", "300", "A", "192.0.2.99")
                second = _stored_serial(primary, PLAIN)

                def failing() -> bool:
                    found = samples(scrape(port))
                    errors = value(found, "zonefan_sync_errors_total", **labels) or 0
                    source = value(found, "zonefan_sync_source_serial", **labels)
                    return source == second and errors >= 2

                wait_until(failing, 20, what="two failed pushes of the new serial counted")
                found = samples(scrape(port))
                assert value(found, "zonefan_sync_target_serial", **labels) == first
                assert (value(found, "zonefan_sync_lag_seconds", **labels) or 0) > 0
                assert (value(found, "zonefan_sync_push_seconds_count", target="pdns") or 0) >= 3
        finally:
            proxy.stop()


@pytest.mark.external
def test_serve_with_sync_serves_both_on_one_endpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pdns: PdnsServer
) -> None:
    port = free_port()
    primary = serve_with_sync(tmp_path, monkeypatch, pdns, "--metrics", f"127.0.0.1:{port}")
    labels = {"target": "pdns", "zone": PLAIN}
    with primary:
        wait_until(lambda: dig(pdns.dns_port, f"mail1.{PLAIN}", "A") == ["192.0.2.25"], 20)

        def in_sync() -> bool:
            found = samples(scrape(port))
            pushed = value(found, "zonefan_sync_target_serial", **labels)
            return pushed is not None and pushed == value(found, "zonefan_zone_serial", zone=PLAIN)

        wait_until(in_sync, what="the pushed serial in the scrape")
        found = samples(scrape(port))
        assert value(found, "zonefan_sync_source_serial", **labels) == value(
            found, "zonefan_sync_target_serial", **labels
        )
        assert value(found, "zonefan_sync_lag_seconds", **labels) == 0
        assert value(found, "zonefan_sync_errors_total", **labels) == 0
        assert value(found, "zonefan_sync_last_success_timestamp_seconds", **labels)


# -- drills ----------------------------------------------------------------------------------


def test_the_latest_drill_of_each_region_is_scraped(tmp_path: Path) -> None:
    """Read from the store, as `zonefan drill` writes it; an endpoint that never served the
    answer makes its phase +Inf, and a drill still running is not reported."""
    db = example_store(tmp_path / "z.db")
    origin = dns.name.from_text(ZONE)
    with Store(db) as store:
        for region, start, restored in (("fra", 1000.0, 0.5), ("fra", 2000.0, None)):
            drill = store.start_drill(region, [origin], "ops", "drill", start, 60)
            store.finish_drill(
                dataclasses.replace(
                    drill,
                    outcome="passed" if restored is not None else "failed",
                    restore_start=1.0,
                    finished=start + 2,
                    endpoints=(
                        DrillEndpoint("primary", "primary", "127.0.0.1:53", True, 0.02, 0.01),
                        DrillEndpoint("secondary", "knot", "127.0.0.1:54", True, 0.3, restored),
                    ),
                )
            )
        ams = store.start_drill("ams", [origin], "ops", "drill", 1500.0, 60)
        store.finish_drill(
            dataclasses.replace(
                ams,
                outcome="passed",
                restore_start=1.0,
                finished=1502.0,
                endpoints=(DrillEndpoint("primary", "primary", "127.0.0.1:53", True, 0.2, 0.7),),
            )
        )
        store.start_drill("ber", [origin], "ops", "running", 3000.0, 60)
    registry = CollectorRegistry()
    registry.register(DrillCollector(db))
    found = samples(generate_latest(registry).decode())
    assert value(found, "zonefan_drill_last_start_timestamp_seconds", region="fra") == 2000.0
    assert value(found, "zonefan_drill_last_passed", region="fra") == 0
    assert value(found, "zonefan_drill_last_seconds", region="fra", phase="drained") == 0.3
    assert value(found, "zonefan_drill_last_seconds", region="fra", phase="restored") == math.inf
    assert value(found, "zonefan_drill_last_passed", region="ams") == 1
    assert value(found, "zonefan_drill_last_seconds", region="ams", phase="restored") == 0.7
    assert value(found, "zonefan_drill_last_passed", region="ber") is None
