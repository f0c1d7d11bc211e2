"""A UDP flood from one client network against `zonefan serve` with response rate limiting,
and the same flood against NSD with its own RRL.

The flood (one name asked over and over, or random names of the zone) comes from
127.0.1.2; it must be mostly dropped or truncated (answered in full at most about the rate
times its duration), while a client in another network (127.0.2.3) asking for the same
name is answered every time, an allow-listed network is never limited, and the flooded
network still gets its answer over TCP. Each window of the flood is followed by a probe from
a network of its own: the server answers datagrams in order, so once the probe's answer is
in, every reply to the window before it has arrived too (no waiting for silence)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest

from tests.attack import cpu_seconds, rss_mib
from tests.servers import NsdServer, ZonefanServer
from tests.tools import PROJECT_ROOT, write_private

pytestmark = [pytest.mark.external, pytest.mark.timeout(180)]

ZONE = PROJECT_ROOT / "zones" / "example.test.zone"
ORIGIN = "example.test."
NAME = "web.example.test."
RATE = 50  # responses per second per group, on both servers
FLOODER = "127.0.1.2"
CLIENT = "127.0.2.3"  # another /24: its own limits
EXEMPT = "127.0.3.4"
EXEMPT_NETWORK = "127.0.3.0/24"
WINDOW = 50  # queries in flight at once: well inside the server's socket buffer
MIN_SECONDS = 2.0  # the flood goes on at least this long (past the burst: the rate shows)
MAX_WINDOWS = 1000  # and stops after this many windows whatever the time
CLIENT_EVERY = 20  # windows between two questions of the normal client
REPLY_TIMEOUT = 3.0


@dataclass
class Flood:
    sent: int = 0
    full: int = 0  # answered in full
    truncated: int = 0  # TC, no records (slip)
    seconds: float = 0.0
    client_asked: int = 0
    client_answered: int = 0  # in full, with the record

    @property
    def dropped(self) -> int:
        return self.sent - self.full - self.truncated

    def __str__(self) -> str:
        return (
            f"{self.sent} queries in {self.seconds:.2f} s: {self.full} answered, "
            f"{self.truncated} truncated, {self.dropped} dropped; the other network's "
            f"client got {self.client_answered} of {self.client_asked}"
        )


def _socket(source: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((source, 0))
    sock.settimeout(REPLY_TIMEOUT)
    return sock


def _answered_in_full(wire: bytes, name: str) -> bool:
    m = dns.message.from_wire(wire)
    return (
        m.rcode() == dns.rcode.NOERROR
        and not m.flags & dns.flags.TC
        and any(rrset.name.to_text() == name for rrset in m.answer)
    )


def _ask(sock: socket.socket, port: int, name: str) -> bytes:
    query = dns.message.make_query(name, "A")
    sock.sendto(query.to_wire(), ("127.0.0.1", port))
    while True:
        wire, _ = sock.recvfrom(65535)
        if wire[:2] == query.id.to_bytes(2, "big"):
            return wire


def flood(port: int, names: Callable[[int], str]) -> Flood:
    """Send the flood from FLOODER in windows, each followed by a probe; count replies."""
    result = Flood()
    flooder, client = _socket(FLOODER), _socket(CLIENT)
    try:
        started = time.monotonic()
        for w in range(MAX_WINDOWS):
            if result.seconds >= MIN_SECONDS:
                break
            for i in range(w * WINDOW, (w + 1) * WINDOW):
                flooder.sendto(dns.message.make_query(names(i), "A").to_wire(), ("127.0.0.1", port))
            result.sent += WINDOW
            with _socket(f"127.{1 + w // 256}.{w % 256}.1") as probe:
                assert _answered_in_full(_ask(probe, port, NAME), NAME), "a probe was limited"
            result.seconds = time.monotonic() - started  # the window has been answered
            if w % CLIENT_EVERY == 0:
                result.client_asked += 1
                result.client_answered += _answered_in_full(_ask(client, port, NAME), NAME)
            flooder.setblocking(False)
            while True:
                try:
                    wire = flooder.recv(65535)
                except BlockingIOError:
                    break
                if wire[2] & 0x02:
                    result.truncated += 1
                else:
                    result.full += 1
            flooder.setblocking(True)
    finally:
        flooder.close()
        client.close()
    return result


def _tcp_from(source: str, port: int, name: str) -> dns.message.Message:
    return dns.query.tcp(
        dns.message.make_query(name, "A"), "127.0.0.1", port=port, source=source, timeout=5
    )


def _check(flood_result: Flood, slack: float) -> None:
    r = flood_result
    assert r.client_answered == r.client_asked > 0, r
    # The burst of one second plus the rate for the flood's duration (NSD counts per
    # whole second, so it gets more slack).
    assert r.full <= slack * RATE * (r.seconds + 1) + 1, r
    assert r.full <= r.sent / 10, r  # mostly dropped or truncated
    limited = r.sent - r.full
    assert 0.4 * limited <= r.truncated <= 0.6 * limited, r  # slip 2: half go out truncated


ONE_NAME = pytest.param(lambda i: NAME, id="one-name")
RANDOM_NAMES = pytest.param(lambda i: f"r{i}-flood.{ORIGIN}", id="random-names")


@pytest.mark.parametrize("names", [ONE_NAME, RANDOM_NAMES])
def test_a_flood_from_one_network_is_limited_and_others_are_served(
    tmp_path: Path, names: Callable[[int], str]
) -> None:
    config = write_private(
        tmp_path / "zonefan.toml", f'[serve]\nrrl-exempt = ["{EXEMPT_NETWORK}"]\n'
    )
    server = ZonefanServer(
        tmp_path / "zonefan", extra_args=["--rrl-ratelimit", str(RATE)], config=config
    )
    server.cli("zone", "import", str(ZONE))
    with server:
        cpu, rss = cpu_seconds(server.pid), rss_mib(server.pid)
        result = flood(server.port, names)
        cpu, rss = cpu_seconds(server.pid) - cpu, rss_mib(server.pid) - rss
        print(f"zonefan: {result}; server CPU {cpu:.2f} s, RSS {rss:+.1f} MiB")
        _check(result, slack=1.0)
        assert _answered_in_full(_tcp_from(FLOODER, server.port, NAME).to_wire(), NAME)
        assert server.running(), server.log_text()
        assert "response rate limiting: limiting responses to 127.0.1.0/24" in server.log_text()

    nsd = NsdServer(tmp_path / "nsd", [(ORIGIN, ZONE)], rrl_ratelimit=RATE)
    with nsd:
        assert f"rrl-ratelimit: {RATE}" in nsd.conf.read_text(), "this NSD has no RRL"
        result = flood(nsd.port, names)
        print(f"NSD: {result}")
        _check(result, slack=2.5)
        assert _answered_in_full(_tcp_from(FLOODER, nsd.port, NAME).to_wire(), NAME)


def test_an_allow_listed_network_is_never_limited(tmp_path: Path) -> None:
    server = ZonefanServer(
        tmp_path,
        extra_args=["--rrl-ratelimit", "5", "--rrl-exempt", EXEMPT_NETWORK],
    )
    server.cli("zone", "import", str(ZONE))
    with server, _socket(EXEMPT) as sock:
        full = 0
        for _ in range(20):
            wires = [dns.message.make_query(NAME, "A") for _ in range(WINDOW)]
            for query in wires:
                sock.sendto(query.to_wire(), ("127.0.0.1", server.port))
            for _ in wires:  # every one comes back, or recv times out and the test fails
                full += _answered_in_full(sock.recv(65535), NAME)
        assert full == 20 * WINDOW
        with _socket(FLOODER) as other:  # the same rate, not exempt: limited
            replies = [_ask(other, server.port, NAME) for _ in range(5)]
            assert all(_answered_in_full(wire, NAME) for wire in replies)
            other.sendto(dns.message.make_query(NAME, "A").to_wire(), ("127.0.0.1", server.port))
            with _socket("127.0.9.9") as probe:
                assert _answered_in_full(_ask(probe, server.port, NAME), NAME)
            other.setblocking(False)
            with pytest.raises(BlockingIOError):
                other.recv(65535)  # the sixth was dropped (slip 2: the first goes)
