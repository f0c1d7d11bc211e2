"""Health-checked pools in `zonefan serve`: real HTTP backends on loopback addresses, the
server as a subprocess, answers read with DNS. A withdrawal is an ordinary changeset:
journalled with its author and reason, signed when the zone is, served at once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import dns.dnssec
import dns.message
import dns.name
import dns.query
import dns.rdatatype
import dns.rrset
import pytest
from aiohttp import web

from nameserver.store.store import Store
from tests.servers import KnotSecondary, XfrKey, ZonefanServer, _Process, transfer_config
from tests.test_metrics import samples, scrape, value
from tests.tools import example_store, free_port, require_tool, write_private
from tests.wait import wait_until

ZONE = "example.test."
POOL = "pool.example.test."
FRA, AMS = "127.0.0.2", "127.0.0.3"  # one backend per region, on the same port
INTERVAL, FALL, RISE = 1.0, 2, 2
# A member's failure shows in the answer within fall intervals, one more for the probe
# that is in flight, and the commit; the deadline of a wait, not a measurement.
FAILOVER_DEADLINE = INTERVAL * (FALL + 2) + 5


async def healthz(_: web.Request) -> web.Response:
    return web.Response(text="ok")


class Backends:
    """HTTP backends answering /healthz with 200, one per address, in a thread of their own
    so the test can stop and start each while it polls the server.

    A stopped backend's port stays bound by a socket that does not listen: a connection to
    it is refused, as to a dead server, and no other process on the host can take the port
    before the backend starts again."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.runners: dict[str, web.AppRunner] = {}
        self.held: dict[str, socket.socket] = {}

    def _call(self, coro: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(10)

    def start(self, address: str) -> None:
        held = self.held.pop(address, None)
        if held is not None:
            held.close()

        async def up() -> None:
            app = web.Application()
            app.router.add_get("/healthz", healthz)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, address, self.port).start()
            self.runners[address] = runner

        self._call(up())

    def stop(self, address: str) -> None:
        self._call(self.runners.pop(address).cleanup())
        held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        held.bind((address, self.port))
        self.held[address] = held

    def close(self) -> None:
        for address in list(self.runners):
            self.stop(address)
        for held in self.held.values():
            held.close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def backends() -> Iterator[Backends]:
    b = Backends(free_port())
    try:
        yield b
    finally:
        b.close()


def pool_config(path: Path, port: int, extra: str = "") -> Path:
    return write_private(
        path,
        f"""[pool."{POOL}"]
type = "A"
ttl = 30
members = [{{ address = "{FRA}", region = "fra" }}, {{ address = "{AMS}", region = "ams" }}]
check = {{ kind = "http", path = "/healthz", port = {port}, interval = "{INTERVAL:g}s", \
timeout = "0.5s", rise = {RISE}, fall = {FALL} }}
{extra}""",
    )


def answer(server: _Process, name: str = POOL, rdtype: str = "A") -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, want_dnssec=True)
    return dns.query.udp(query, server.host, port=server.port, timeout=2)


def addresses(server: _Process) -> set[str]:
    found = answer(server).get_rrset(
        dns.message.ANSWER, dns.name.from_text(POOL), dns.rdataclass.IN, dns.rdatatype.A
    )
    return set() if found is None else {r.address for r in found}


def pool_history(server: ZonefanServer) -> list[dict[str, Any]]:
    """The zone's changesets by the pool's health checks, oldest first."""
    done = server.cli("zone", "history", ZONE, "--json", "--limit", "1000")
    entries: list[dict[str, Any]] = json.loads(done.stdout)
    return sorted(
        (e for e in entries if e["author"] == f"health:{POOL}"), key=lambda e: e["serial_after"]
    )


def serving(
    tmp_path: Path, backends: Backends, signed: bool = False, metrics_port: int | None = None
) -> ZonefanServer:
    db = example_store(tmp_path / "zonefan.db", signed=signed)
    extra = "" if metrics_port is None else f'[serve]\nmetrics = "127.0.0.1:{metrics_port}"\n'
    config = pool_config(tmp_path / "zonefan.toml", backends.port, extra)
    return ZonefanServer(tmp_path / "serve", db=db, probe_name=ZONE, config=config)


def pool_gauges(port: int) -> tuple[float | None, float | None, float | None]:
    """The pool's members, healthy members and degraded flag, as a scrape reports them."""
    found = samples(scrape(port))
    return tuple(  # type: ignore[return-value]
        value(found, f"zonefan_pool_{name}", pool=POOL)
        for name in ("members", "healthy_members", "degraded")
    )


def test_a_dead_backend_is_withdrawn_and_comes_back(tmp_path: Path, backends: Backends) -> None:
    backends.start(FRA)
    backends.start(AMS)
    metrics = free_port()
    with serving(tmp_path, backends, metrics_port=metrics) as server:
        wait_until(lambda: addresses(server) == {FRA, AMS}, what="both members published")
        assert pool_gauges(metrics) == (2, 2, 0)
        [started] = pool_history(server)
        assert "health checks started" in started["message"]

        backends.stop(FRA)
        stopped = time.monotonic()
        wait_until(lambda: addresses(server) == {AMS}, FAILOVER_DEADLINE, 0.02, "fra withdrawn")
        failover = time.monotonic() - stopped
        print(f"failover: backend stopped -> answer without it in {failover:.2f} s")
        withdrawn = pool_history(server)[-1]
        assert f"{FRA} (fra) withdrawn" in withdrawn["message"]
        wait_until(lambda: pool_gauges(metrics) == (2, 1, 0), what="1 of 2 healthy, scraped")
        assert "down for local: 1 of 1 checkers" in withdrawn["message"]

        backends.start(FRA)
        wait_until(lambda: addresses(server) == {FRA, AMS}, FAILOVER_DEADLINE, 0.02, "fra restored")
        restored = pool_history(server)[-1]
        assert f"{FRA} (fra) restored" in restored["message"]
        assert len(pool_history(server)) == 3

        def counted() -> float | None:
            return value(samples(scrape(metrics)), "zonefan_changesets_total", zone=ZONE)

        # The pools' commits count in the server's metrics like an UPDATE's.
        wait_until(lambda: counted() == 3, what="the three pool changesets counted")
        stopped_cleanly(server)
    with Store(server.db) as store:
        events = [(e.event, e.member) for e in store.health_events(dns.name.from_text(POOL))]
    assert events == [("started", None), ("withdrawn", FRA), ("restored", FRA)]


CDN = "cdn.example.test."


def cname_target(server: _Process) -> str | None:
    found = answer(server, CDN, "CNAME").get_rrset(
        dns.message.ANSWER, dns.name.from_text(CDN), dns.rdataclass.IN, dns.rdatatype.CNAME
    )
    return None if found is None else str(found[0].target)


def test_a_cname_pool_fails_over_to_the_next_members_target(
    tmp_path: Path, backends: Backends
) -> None:
    """Active/passive: the first member up, in the configured order, is the one CNAME."""
    backends.start(FRA)
    backends.start(AMS)
    db = example_store(tmp_path / "zonefan.db")
    check = (
        f'{{ kind = "http", path = "/healthz", port = {backends.port}, '
        f'interval = "{INTERVAL:g}s", timeout = "0.5s", rise = {RISE}, fall = {FALL} }}'
    )
    config = write_private(
        tmp_path / "zonefan.toml",
        f"""[pool."{CDN}"]
type = "CNAME"
ttl = 60
members = [{{ target = "fra.cdn.example.net.", address = "{FRA}", region = "fra" }},
           {{ target = "ams.cdn.example.net.", address = "{AMS}", region = "ams" }}]
check = {check}
""",
    )
    with ZonefanServer(tmp_path / "serve", db=db, probe_name=ZONE, config=config) as server:
        wait_until(lambda: cname_target(server) == "fra.cdn.example.net.", what="fra first")
        backends.stop(FRA)
        wait_until(
            lambda: cname_target(server) == "ams.cdn.example.net.",
            FAILOVER_DEADLINE,
            0.02,
            "failed over to ams",
        )
        backends.start(FRA)
        wait_until(
            lambda: cname_target(server) == "fra.cdn.example.net.",
            FAILOVER_DEADLINE,
            0.02,
            "back on fra",
        )
        stopped_cleanly(server)


def stopped_cleanly(server: ZonefanServer) -> None:
    """SIGTERM ends serve and its health checks with exit status 0 and no traceback."""
    assert server.proc is not None
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(10) == 0, server.log_text()[-3000:]
    assert "Traceback" not in server.log_text(), server.log_text()[-3000:]


def test_a_signed_zone_serves_the_new_rrset_signed(tmp_path: Path, backends: Backends) -> None:
    backends.start(FRA)
    backends.start(AMS)
    with serving(tmp_path, backends, signed=True) as server:
        wait_until(lambda: addresses(server) == {FRA, AMS}, what="both members published")
        backends.stop(AMS)
        wait_until(lambda: addresses(server) == {FRA}, FAILOVER_DEADLINE, 0.02, "ams withdrawn")
        assert_signed(server, {FRA})
        stopped_cleanly(server)


def assert_signed(server: _Process, expected: set[str]) -> None:
    """The pool's A RRset as ``server`` serves it is ``expected``, with a signature that
    validates against the zone's DNSKEY RRset as the same server serves it."""
    response = answer(server)
    name = dns.name.from_text(POOL)
    rrset = response.find_rrset(dns.message.ANSWER, name, dns.rdataclass.IN, dns.rdatatype.A)
    sig = response.find_rrset(
        dns.message.ANSWER, name, dns.rdataclass.IN, dns.rdatatype.RRSIG, dns.rdatatype.A
    )
    keys = answer(server, ZONE, "DNSKEY").find_rrset(
        dns.message.ANSWER, dns.name.from_text(ZONE), dns.rdataclass.IN, dns.rdatatype.DNSKEY
    )
    dns.dnssec.validate(rrset, sig, {dns.name.from_text(ZONE): keys})
    assert {r.address for r in rrset} == expected and rrset.ttl == 30


def test_every_member_down_keeps_them_all_and_is_recorded_once(
    tmp_path: Path, backends: Backends
) -> None:
    backends.start(FRA)
    backends.start(AMS)
    pool = dns.name.from_text(POOL)

    def events(kind: str) -> list[Any]:
        with Store(server.db, read_only=True) as store:
            return [e for e in store.health_events(pool) if e.event == kind]

    metrics = free_port()
    with serving(tmp_path, backends, metrics_port=metrics) as server:
        wait_until(lambda: addresses(server) == {FRA, AMS}, what="both members published")
        backends.stop(FRA)
        backends.stop(AMS)
        wait_until(lambda: events("degraded"), FAILOVER_DEADLINE, 0.05, "pool degraded")
        assert addresses(server) == {FRA, AMS}
        wait_until(lambda: pool_gauges(metrics) == (2, 0, 1), what="degraded in the metrics")
        [degraded] = events("degraded")
        assert "all members down: keeping all 2" in degraded.reason
        # Rounds go by with both down (rise = 2 rounds at least before AMS is back).
        backends.start(AMS)
        wait_until(lambda: events("recovered"), FAILOVER_DEADLINE, 0.05, "pool recovered")
        assert len(events("degraded")) == 1
        wait_until(lambda: addresses(server) == {AMS}, FAILOVER_DEADLINE, 0.02, "ams only")
        stopped_cleanly(server)


def test_a_flapping_backend_is_held_out_not_a_changeset_storm(
    tmp_path: Path, backends: Backends
) -> None:
    """Default damping (penalty 1000 per withdrawal, suppress at 2000, half-life 5 min):
    the third withdrawal within seconds holds the member out while it keeps flapping."""
    backends.start(FRA)
    backends.start(AMS)
    with serving(tmp_path, backends) as server:
        wait_until(lambda: addresses(server) == {FRA, AMS}, what="both members published")
        for flap in range(1, 4):
            backends.stop(FRA)
            wait_until(lambda: FRA not in addresses(server), FAILOVER_DEADLINE, 0.02, "fra out")
            reason = pool_history(server)[-1]["message"]
            assert f"{FRA} (fra) withdrawn" in reason
            if flap == 3:
                assert "flapping (penalty" in reason and "held out" in reason
                break
            backends.start(FRA)
            wait_until(lambda: FRA in addresses(server), FAILOVER_DEADLINE, 0.02, "fra back")
        # It keeps flapping: each cycle is long enough to withdraw and restore it undamped.
        for _ in range(3):
            backends.start(FRA)
            time.sleep(INTERVAL * (RISE + 0.5))  # the stimulus: up this long, then down
            backends.stop(FRA)
            time.sleep(INTERVAL * (FALL + 0.5))
        backends.start(FRA)
        # A change that comes after all of that: AMS fails, and FRA, healthy but held out
        # for flapping, serves rather than nothing.
        backends.stop(AMS)
        wait_until(lambda: addresses(server) == {FRA}, 4 * FAILOVER_DEADLINE, 0.02, "fra only")
        messages = [e["message"] for e in pool_history(server)]
        assert sum(f"{FRA} (fra) withdrawn" in m for m in messages) == 3, messages
        assert sum(f"{FRA} (fra) restored" in m for m in messages) == 2, messages
        # started, 3 withdrawals, 2 restorations, AMS out (and at most a degraded moment
        # if AMS failed while FRA was failing too); undamped it would be 6 more.
        assert len(messages) <= 8, messages
        print(f"flapping: {len(messages)} changesets: " + " | ".join(messages))
        stopped_cleanly(server)


def test_a_drain_reaches_a_running_server_and_the_checks_keep_to_it(
    tmp_path: Path, backends: Backends
) -> None:
    backends.start(FRA)
    backends.start(AMS)
    pool = dns.name.from_text(POOL)

    def seen(kind: str, count: int) -> bool:
        with Store(server.db, read_only=True) as store:
            events = [e for e in store.health_events(pool) if e.event == kind]
        return len(events) == count

    with serving(tmp_path, backends) as server:
        assert server.config is not None
        conf = ("--config", str(server.config))
        wait_until(lambda: addresses(server) == {FRA, AMS}, what="both members published")
        server.cli(*conf, "drain", "fra", "-m", "maintenance", "--author", "ops")
        took = wait_until(lambda: addresses(server) == {AMS}, 10, 0.01, "fra drained")
        print(f"drain: committed -> served without fra in {took:.3f} s")
        newest = json.loads(server.cli("zone", "history", ZONE, "--json").stdout)[-1]
        assert (newest["author"], newest["message"]) == ("ops", "maintenance")
        # The checks go on while fra is drained; what they say does not bring it back.
        backends.stop(FRA)
        wait_until(lambda: seen("withdrawn", 1), FAILOVER_DEADLINE, 0.05, "fra seen down")
        backends.start(FRA)
        wait_until(lambda: seen("restored", 1), FAILOVER_DEADLINE, 0.05, "fra seen up")
        assert addresses(server) == {AMS}
        server.cli(*conf, "undrain", "fra", "-m", "done")
        wait_until(lambda: addresses(server) == {FRA, AMS}, 10, 0.01, "fra back")
        stopped_cleanly(server)


KEY = XfrKey("xfr-key", "cG9vbHMtdGVzdC1zZWNyZXQtMDEyMzQ1Njc4OWFiY2Q=")


@contextlib.contextmanager
def serving_to_knot(
    tmp_path: Path, backends: Backends
) -> Iterator[tuple[ZonefanServer, KnotSecondary]]:
    """Both backends up, `zonefan serve` of the signed zone with the pool, and a Knot
    secondary NOTIFYd by it that serves both members; serve stopped cleanly after."""
    backends.start(FRA)
    backends.start(AMS)
    db = example_store(tmp_path / "zonefan.db", signed=True)
    knot_port = free_port()
    config = pool_config(
        tmp_path / "zonefan.toml",
        backends.port,
        transfer_config(KEY, notify_port=knot_port, zones=[ZONE]),
    )
    primary = ZonefanServer(tmp_path / "serve", db=db, probe_name=ZONE, config=config)
    with primary:
        knot = KnotSecondary(tmp_path / "knot", [ZONE], primary.port, KEY)
        knot.fixed_port = knot_port
        with knot:
            wait_until(lambda: addresses(knot) == {FRA, AMS}, 20, what="knot has both")
            yield primary, knot
        stopped_cleanly(primary)


@pytest.mark.external
def test_a_knot_secondary_serves_the_withdrawal_signed(tmp_path: Path, backends: Backends) -> None:
    """The withdrawal reaches a secondary the ordinary way: NOTIFY, then IXFR."""
    for tool in ("knotd", "knotc"):
        require_tool(tool)
    with serving_to_knot(tmp_path, backends) as (primary, knot):
        db = primary.db
        backends.stop(FRA)
        stopped = time.monotonic()
        wait_until(lambda: addresses(knot) == {AMS}, FAILOVER_DEADLINE + 5, 0.02, "knot: fra out")
        print(
            f"failover via knot: stopped -> knot answers without it in "
            f"{time.monotonic() - stopped:.2f} s"
        )
        assert_signed(knot, {AMS})

        def transfers() -> list[str]:
            # Logged after the transfer, off the server's event loop: polled.
            with Store(db, read_only=True) as store:
                serial = store.serial(dns.name.from_text(ZONE))
                log = store.transfers(dns.name.from_text(ZONE), limit=20)
            return [e.kind for e in log if e.serial_to == serial]

        wait_until(transfers, what="the transfer of the new serial logged")
        assert transfers() == ["IXFR"]
