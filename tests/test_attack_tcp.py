"""Attacks on the TCP side of ``zonefan serve``, run from 127.0.0.0/8 against the server as a
process, each bounded in count and time, each asserting the protection:

* slowloris: hundreds of connections from many addresses, each sending a length prefix and
  then an octet every few seconds, reconnecting when cut off; a normal client meanwhile
  gets every TCP query answered (NSD with its defaults goes through the same attack first;
  what it does is printed, not asserted);
* one address opening many connections keeps only its allowance;
* a client that pipelines 150k queries and never reads: the server's memory stays bounded
  and it answers normally once the client is gone;
* 100k pipelined AXFR requests from a client that may not transfer: CPU per request does
  not grow with the count (it grew quadratically), and the log does not grow with it; the
  same for UPDATEs (the same queue behind the connection).

Distinct attacking clients are distinct loopback source addresses (127.0.0.2, ...)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import dns.message
import dns.rcode
import dns.update
import pytest

from nameserver.server import TCP_MAX_CONNECTIONS, TCP_MAX_PER_CLIENT
from tests.attack import cpu_seconds, peak_rss_mib, rss_mib
from tests.servers import NsdServer, ZonefanServer
from tests.tools import PROJECT_ROOT, write_private

pytestmark = [pytest.mark.external, pytest.mark.timeout(300)]

ZONE_FILE = PROJECT_ROOT / "zones" / "example.test.zone"
ZONE = "example.test."
HOST = f"www.{ZONE}"
BIG = f"big.{ZONE}"  # a TXT RRset of about 1.9 KB
ATTACK_SECONDS = 5.0  # of normal queries while the slowloris holds on
QUERY_TIMEOUT = 3.0  # for a normal TCP query: connect, send, read the answer


def framed(wire: bytes) -> bytes:
    return struct.pack("!H", len(wire)) + wire


def zonefan(workdir: Path, config: Path | None = None) -> ZonefanServer:
    """A server with the example zone and a large TXT RRset, not yet started."""
    server = ZonefanServer(workdir, probe_name=ZONE, config=config)
    server.cli("zone", "import", str(ZONE_FILE))
    texts = [f'"big-{i:02d}-' + "z" * 55 + '"' for i in range(30)]
    more = [arg for t in texts[1:] for arg in ("-r", t)]
    server.cli("record", "set", ZONE, "big", "300", "TXT", texts[0], *more)
    return server


# -- slowloris --------------------------------------------------------------------------------


@dataclass
class Slowloris:
    """Connections from ``sources``, ``per_source`` each, that send a length prefix and then
    one octet every ``interval`` seconds, never a whole message; cut off, they reconnect."""

    host: str
    port: int
    sources: list[str]
    per_source: int
    interval: float = 1.5
    opened: int = 0
    cut_off: int = 0
    open_now: int = 0
    connect_failures: int = 0

    async def one(self, source: str, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(self.host, self.port, local_addr=(source, 0)), 2.0
                )
            except (OSError, TimeoutError):
                self.connect_failures += 1
                await asyncio.sleep(0.1)  # the attacker's pace, not a measurement
                continue
            self.opened += 1
            self.open_now += 1
            try:
                writer.write(b"\x00\x40")  # 64 octets to come
                while not stop.is_set():
                    try:
                        data = await asyncio.wait_for(reader.read(1), self.interval)
                    except TimeoutError:
                        writer.write(b"\x00")
                        continue
                    if not data:
                        self.cut_off += 1
                        break
            except OSError:
                self.cut_off += 1
            finally:
                self.open_now -= 1
                writer.close()

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.gather(
            *(self.one(s, stop) for s in self.sources for _ in range(self.per_source))
        )


@dataclass
class NormalClient:
    """A resolver on 127.0.0.1 asking one question per new TCP connection (as after a
    truncated answer over UDP)."""

    host: str
    port: int
    asked: int = 0
    answered: int = 0
    slowest: float = 0.0
    failures: list[str] = field(default_factory=list)

    async def ask(self) -> None:
        q = dns.message.make_query(HOST, "A")
        self.asked += 1
        started = time.monotonic()
        writer = None
        try:
            async with asyncio.timeout(QUERY_TIMEOUT):
                reader, writer = await asyncio.open_connection(
                    self.host, self.port, local_addr=("127.0.0.1", 0)
                )
                writer.write(framed(q.to_wire()))
                (length,) = struct.unpack("!H", await reader.readexactly(2))
                answer = dns.message.from_wire(await reader.readexactly(length))
            assert answer.id == q.id and answer.rcode() == dns.rcode.NOERROR and answer.answer
            self.answered += 1
            self.slowest = max(self.slowest, time.monotonic() - started)
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as e:
            self.failures.append(f"{type(e).__name__} after {time.monotonic() - started:.1f} s")
        finally:
            if writer is not None:
                writer.close()

    async def run(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            await self.ask()
            await asyncio.sleep(0.1)  # pacing: about ten queries a second


@dataclass
class SlowlorisResult:
    attack: Slowloris
    client: NormalClient
    peak_open: int


async def slowloris(
    server: NsdServer | ZonefanServer, sources: int, per_source: int
) -> SlowlorisResult:
    attack = Slowloris(
        server.host, server.port, [f"127.0.0.{2 + i}" for i in range(sources)], per_source
    )
    client = NormalClient(server.host, server.port)
    stop = asyncio.Event()
    attackers = asyncio.create_task(attack.run(stop))
    try:
        # The attack is on once nearly all its connections are open (NSD keeps some of them
        # waiting in the kernel's queue): wait for that (bounded), then query meanwhile.
        deadline = time.monotonic() + 3
        peak = 0
        while attack.open_now < 0.9 * sources * per_source and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            peak = max(peak, attack.open_now)
        await client.run(ATTACK_SECONDS)
        peak = max(peak, attack.open_now)
    finally:
        stop.set()
        await asyncio.wait_for(attackers, 10)
    return SlowlorisResult(attack, client, peak)


def test_slowloris_leaves_tcp_service_to_normal_clients(tmp_path: Path) -> None:
    sources, per_source = 40, 13  # 520 connections, under the allowance of each address
    assert sources * per_source > TCP_MAX_CONNECTIONS and per_source < TCP_MAX_PER_CLIENT
    with NsdServer(tmp_path / "nsd", [(ZONE, ZONE_FILE)]) as nsd:
        baseline = NormalClient(nsd.host, nsd.port)
        asyncio.run(baseline.ask())
        assert baseline.answered == 1, f"NSD answers no TCP query at all: {baseline.failures}"
        nsd_result = asyncio.run(slowloris(nsd, sources, per_source))
    server = zonefan(tmp_path / "zonefan")
    with server:
        ours = asyncio.run(slowloris(server, sources, per_source))
        cpu = cpu_seconds(server.pid)
    for name, r in (("NSD", nsd_result), ("zonefan", ours)):
        print(
            f"{name}: {r.client.answered}/{r.client.asked} normal TCP queries answered "
            f"(slowest {r.client.slowest:.2f} s; failures {r.client.failures[:3]}); attack: "
            f"{r.attack.opened} connections opened, {r.attack.cut_off} cut off by the "
            f"server, {r.peak_open} open at the peak, {r.attack.connect_failures} connects "
            "failed"
        )
    print(f"zonefan CPU during the whole run: {cpu:.1f} s")
    # The attack filled the slots (seen from its side: a few of its connections are always
    # between being cut off and reconnecting).
    assert ours.peak_open >= 0.95 * TCP_MAX_CONNECTIONS, "the attack never filled the slots"
    assert ours.client.asked >= 20, "the normal client hardly asked"
    assert ours.client.answered == ours.client.asked, ours.client.failures
    # The trickled messages were cut off (2 s), not left to run.
    assert ours.attack.cut_off >= sources * per_source


def test_one_address_gets_only_its_connections(tmp_path: Path) -> None:
    with zonefan(tmp_path) as server:
        socks: list[socket.socket] = []
        try:
            for _ in range(TCP_MAX_PER_CLIENT + 10):
                s = socket.socket()
                s.bind(("127.0.0.50", 0))
                s.settimeout(5)
                s.connect((server.host, server.port))
                socks.append(s)
            wire = dns.message.make_query(HOST, "A").to_wire()
            answered = closed = 0
            for s in socks:
                try:
                    s.sendall(framed(wire))
                    head = s.recv(2)
                except (ConnectionResetError, BrokenPipeError):
                    head = b""
                if head:
                    answered += 1
                else:
                    closed += 1
        finally:
            for s in socks:
                s.close()
        assert (answered, closed) == (TCP_MAX_PER_CLIENT, 10)
        # Another address is not affected.
        assert server.query(HOST, "A", tcp=True).rcode() == dns.rcode.NOERROR


# -- a pipeline that is never read ------------------------------------------------------------


def test_a_pipeline_never_read_costs_bounded_memory(tmp_path: Path) -> None:
    count = 150_000
    with zonefan(tmp_path) as server:
        wire = dns.message.make_query(BIG, "TXT").to_wire()
        answer_size = len(server.query(BIG, "TXT", tcp=True).to_wire())
        assert answer_size > 1500
        for _ in range(3):  # warm up the answer path and the cache
            server.query(BIG, "TXT", tcp=True)
        before = rss_mib(server.pid)
        payload = framed(wire) * count
        sent = 0
        with socket.create_connection((server.host, server.port), timeout=5) as attacker:
            attacker.setblocking(False)
            stalled_since = time.monotonic()
            # Send all of it, or until the server has stopped taking it for a second.
            while sent < len(payload) and time.monotonic() - stalled_since < 1.0:
                try:
                    n = attacker.send(payload[sent : sent + 65536])
                except BlockingIOError:
                    time.sleep(0.01)
                    continue
                sent += n
                stalled_since = time.monotonic()
            during = _settled_rss(server.pid)
        after = rss_mib(server.pid)
        peak = peak_rss_mib(server.pid)
        # The server is itself again: it answers a normal query.
        response = server.query(BIG, "TXT", tcp=True)
        assert response.rcode() == dns.rcode.NOERROR and response.answer
    queries_sent = sent // len(framed(wire))
    print(
        f"attacker sent {queries_sent} of {count} queries ({sent / 2**20:.1f} MiB) before the "
        f"server stopped reading; answers of {answer_size} octets; server RSS {before:.1f} "
        f"MiB before, {during:.1f} during, {after:.1f} after (peak {peak:.1f})"
    )
    assert during - before < 30, f"RSS grew by {during - before:.1f} MiB"


def _settled_rss(pid: int, timeout: float = 20.0) -> float:
    """The server's largest RSS until it has done all the work it took on: until its CPU
    time stops growing for half a second (bounded)."""
    deadline = time.monotonic() + timeout
    largest, cpu, quiet_since = rss_mib(pid), cpu_seconds(pid), time.monotonic()
    while time.monotonic() - quiet_since < 0.5 and time.monotonic() < deadline:
        time.sleep(0.05)
        largest = max(largest, rss_mib(pid))
        now = cpu_seconds(pid)
        if now != cpu:
            cpu, quiet_since = now, time.monotonic()
    return largest


# -- pipelined transfer requests from a client that may not transfer --------------------------


def _pipeline(
    server: ZonefanServer, source: str, count: int, request: dns.message.Message | None = None
) -> list[int]:
    """Send ``count`` copies of ``request`` (an AXFR query by default), IDs counting up, on
    one connection from ``source`` while reading every answer; the rcodes."""
    q = request if request is not None else dns.message.make_query(ZONE, "AXFR")
    wires = []
    for i in range(count):
        q.id = i & 0xFFFF
        wires.append(framed(q.to_wire()))
    payload = b"".join(wires)
    rcodes: list[int] = []
    with socket.socket() as s:
        s.bind((source, 0))
        s.settimeout(30)
        s.connect((server.host, server.port))

        def send() -> None:
            with contextlib.suppress(OSError):
                s.sendall(payload)

        sender = threading.Thread(target=send)
        sender.start()
        buf = bytearray()
        while len(rcodes) < count:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            buf += chunk
            at = 0
            while at + 2 <= len(buf):
                end = at + 2 + (buf[at] << 8 | buf[at + 1])
                if end > len(buf):
                    break
                rcodes.append(buf[at + 5] & 0x0F)
                at = end
            del buf[:at]
        sender.join(30)
    return rcodes


def _config(path: Path) -> Path:
    """Transfers for 127.0.0.5 only."""
    return write_private(path, '[[secondary]]\naddress = "127.0.0.5"\n')


def test_pipelined_refused_transfers_cost_linear_cpu_and_bounded_log(tmp_path: Path) -> None:
    small, large = 10_000, 100_000
    with zonefan(tmp_path, config=_config(tmp_path / "zonefan.toml")) as server:
        costs = {}
        log_lines = {}
        for count in (small, large):
            lines = len(server.log_text().splitlines())
            cpu = cpu_seconds(server.pid)
            started = time.monotonic()
            rcodes = _pipeline(server, "127.0.0.3", count)
            took = time.monotonic() - started
            costs[count] = cpu_seconds(server.pid) - cpu
            log_lines[count] = len(server.log_text().splitlines()) - lines
            assert len(rcodes) == count and set(rcodes) == {dns.rcode.REFUSED}
            print(
                f"{count} refused AXFR requests: {took:.1f} s, server CPU {costs[count]:.2f} s "
                f"({costs[count] / count * 1e6:.0f} us each), {log_lines[count]} log lines"
            )
        assert server.query(HOST, "A", tcp=True).rcode() == dns.rcode.NOERROR
        text = server.log_text()
    per_small, per_large = costs[small] / small, costs[large] / large
    assert per_large < 3 * per_small, f"{per_large * 1e6:.0f} us vs {per_small * 1e6:.0f} us"
    # At most the limiter's lines per reason and interval, plus a summary, whatever the count.
    assert log_lines[small] + log_lines[large] <= 12, text[-3000:]
    assert "transfer of example.test. refused for 127.0.0.3" in text


def test_pipelined_refused_updates_are_each_answered_and_logged_bounded(tmp_path: Path) -> None:
    count = 3_000  # each goes through the UPDATE thread: about 1 ms apiece
    update = dns.update.UpdateMessage(ZONE)
    update.add("attack", 300, "A", "192.0.2.66")
    with zonefan(tmp_path) as server:  # no update-policy: every UPDATE is refused
        lines = len(server.log_text().splitlines())
        cpu = cpu_seconds(server.pid)
        started = time.monotonic()
        rcodes = _pipeline(server, "127.0.0.4", count, update)
        took = time.monotonic() - started
        cpu = cpu_seconds(server.pid) - cpu
        added = len(server.log_text().splitlines()) - lines
        assert server.query(f"attack.{ZONE}", "A").rcode() == dns.rcode.NXDOMAIN
    print(
        f"{count} refused UPDATEs pipelined: {took:.1f} s, server CPU {cpu:.2f} s "
        f"({cpu / count * 1e6:.0f} us each), {added} log lines"
    )
    assert len(rcodes) == count and set(rcodes) == {dns.rcode.REFUSED}
    assert added <= 12
