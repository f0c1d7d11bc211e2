"""The TCP connection limits of the server (nameserver.server.TcpHandler and TcpConnections)
and the rate-limited log (nameserver.serve.lograte), on injected time.

The handlers run on a real asyncio loop whose clock the test sets (``ClockLoop``): a timer
fires when the test moves the clock past it, never because the machine was slow. Their
transport is an in-memory one that keeps what the server wrote until the test's "peer"
reads it, with asyncio's flow control (pause_writing above the high-water mark)."""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from nameserver.serve.lograte import LogLimiter
from nameserver.serve.responder import Responder
from nameserver.server import TcpConnections, TcpHandler, TcpLimits
from nameserver.transfer.acl import Secondary, TransferAcl
from nameserver.transfer.xfr import TransferService
from settings import parse_network
from tests.clock import FakeClock
from tests.tools import example_store
from tests.zonedata import registry

CLIENT = "192.0.2.10"
OTHER = "192.0.2.20"
ZONE = "example.test."


# -- the clock and the transport --------------------------------------------------------------


class ClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose time is what the test says."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 1000.0

    def time(self) -> float:
        return self.now


class MemoryTransport(asyncio.Transport):
    """What a socket transport does for the protocol, in memory: written octets wait in
    ``pending`` until the peer reads them; above ``high`` pending octets the protocol is
    paused, at ``low`` or below resumed (the server's own limits are taken, or the test's
    smaller ones)."""

    def __init__(
        self, loop: ClockLoop, peer: str, high: int | None = None, low: int | None = None
    ) -> None:
        super().__init__()
        self.loop = loop
        self.peer = (peer, 40000)
        self.fixed = (high, low) if high is not None and low is not None else None
        self.high, self.low = 65536, 16384
        self.protocol: TcpHandler | None = None
        self.pending = bytearray()
        self.received = bytearray()
        self.most_pending = 0
        self.paused = False
        self.reading = True
        self.closing = False
        self.aborted = False
        self.lost = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.peer if name == "peername" else default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        assert high is not None and low is not None
        self.high, self.low = self.fixed or (high, low)

    def get_write_buffer_size(self) -> int:
        return len(self.pending)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.lost, "written after the connection was lost"
        self.pending += data
        self.most_pending = max(self.most_pending, len(self.pending))
        if not self.paused and len(self.pending) > self.high:
            self.paused = True
            assert self.protocol is not None
            self.protocol.pause_writing()

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_reading(self) -> bool:
        return self.reading

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            self._maybe_lost()

    def abort(self) -> None:
        self.closing = self.aborted = True
        self.pending.clear()
        self._maybe_lost()

    def _maybe_lost(self) -> None:
        if self.closing and not self.pending and not self.lost:
            self.lost = True
            assert self.protocol is not None
            self.loop.call_soon(self.protocol.connection_lost, None)

    # -- the peer ----------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """The peer sends ``data``; the server must be reading."""
        assert self.reading, "sent to a connection the server does not read"
        assert self.protocol is not None and not self.lost
        self.protocol.data_received(data)

    def read(self) -> None:
        """The peer takes everything written so far."""
        self.received += self.pending
        self.pending.clear()
        if self.paused:
            self.paused = False
            assert self.protocol is not None
            self.protocol.resume_writing()
        self._maybe_lost()

    def frames(self) -> int:
        """How many whole messages the peer has read."""
        count, at, data = 0, 0, self.received
        while at + 2 <= len(data):
            at += 2 + (data[at] << 8 | data[at + 1])
            count += at <= len(data)
        return count

    def messages(self) -> list[dns.message.Message]:
        """The messages the peer has read, parsed."""
        out, data = [], bytes(self.received)
        while len(data) >= 2:
            (n,) = struct.unpack("!H", data[:2])
            out.append(dns.message.from_wire(data[2 : 2 + n], keyring=False))
            data = data[2 + n :]
        return out


@dataclass
class Bench:
    """Handlers of one server on a clock loop."""

    loop: ClockLoop
    connections: TcpConnections
    responder: Responder
    transfers: TransferService | None = None

    def connect(self, peer: str = CLIENT, high: int | None = None) -> MemoryTransport:
        transport = MemoryTransport(self.loop, peer, high, None if high is None else high // 4)
        handler = TcpHandler(self.responder, self.connections, self.transfers)
        transport.protocol = handler
        handler.connection_made(transport)
        return transport

    async def at(self, offset: float) -> None:
        """Move the clock to ``offset`` seconds after the start and let due timers run."""
        self.loop.now = 1000.0 + offset
        await turns()


async def turns(n: int = 5) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def until(done: Callable[[], bool], what: str) -> None:
    """Turn the loop until ``done()``: a worker thread (the transfer log) may have to finish
    first, so real time passes too, bounded."""
    deadline = time.monotonic() + 10
    while not done():
        assert time.monotonic() < deadline, f"not within 10 s: {what}"
        await asyncio.sleep(0)
        time.sleep(0.0005)


async def take_all(peer: MemoryTransport, done: Callable[[], bool], what: str) -> None:
    """The peer reads whatever comes until ``done()``."""
    deadline = time.monotonic() + 10
    while not done():
        assert time.monotonic() < deadline, f"not within 10 s: {what}"
        peer.read()
        await asyncio.sleep(0)
        time.sleep(0.0005)


def whole_transfer(peer: MemoryTransport) -> Callable[[], bool]:
    def done() -> bool:
        rrs = [rr for m in peer.messages() for rr in m.answer]
        return len(rrs) > 1 and rrs[-1].rdtype == dns.rdatatype.SOA

    return done


def run(coro: Callable[[], Coroutine[Any, Any, None]]) -> None:
    loop = ClockLoop()
    try:
        loop.run_until_complete(coro())
    finally:
        loop.close()


def bench(loop: ClockLoop, transfers: TransferService | None = None, **limits: Any) -> Bench:
    return Bench(loop, TcpConnections(TcpLimits(**limits)), Responder(registry()), transfers)


def framed(wire: bytes) -> bytes:
    return struct.pack("!H", len(wire)) + wire


def query(name: str = f"host.{ZONE}", rdtype: str = "A", qid: int = 1) -> bytes:
    q = dns.message.make_query(name, rdtype)
    q.id = qid
    return framed(q.to_wire())


def current() -> ClockLoop:
    loop = asyncio.get_running_loop()
    assert isinstance(loop, ClockLoop)
    return loop


@pytest.fixture
def transfers(tmp_path: Path) -> Iterator[TransferService]:
    """Transfers of example.test to CLIENT and OTHER, unsigned."""
    db = example_store(tmp_path / "z.db", signed=False)
    acl = TransferAcl(
        tuple(
            Secondary(parse_network(address)[0], None, None, None, address)
            for address in (CLIENT, OTHER)
        )
    )
    # One RR per message: a transfer to a peer that does not read stops after the first.
    service = TransferService(registry(), str(db), {}, acl, message_size=600)
    yield service
    service.close()


# -- deadlines --------------------------------------------------------------------------------


def test_a_trickled_message_is_cut_off_at_the_message_timeout() -> None:
    async def main() -> None:
        b = bench(current(), message_timeout=2.0, idle_timeout=10.0)
        peer = b.connect()
        whole = query()
        await b.at(1.0)
        peer.send(whole[:2])  # the length: the message starts here
        for i, offset in enumerate((1.5, 2.0, 2.5, 2.9)):
            await b.at(offset)
            peer.send(whole[2 + i : 3 + i])  # one octet at a time keeps nothing alive
            assert not peer.closing, f"closed {offset - 1.0} s into the message"
        await b.at(3.0)
        assert peer.closing and peer.lost, "open 2 s after the message's first octet"
        assert peer.received == b"" and b.connections.open == {}

    run(main)


def test_whole_messages_keep_a_connection_and_idleness_closes_it() -> None:
    async def main() -> None:
        b = bench(current(), message_timeout=2.0, idle_timeout=10.0)
        peer = b.connect()
        for i in range(10):  # a query every 1.5 s: 13.5 s in all, longer than any timeout
            await b.at(i * 1.5)
            peer.send(query(qid=i))
        peer.read()
        assert [m.id for m in peer.messages()] == list(range(10))
        await b.at(13.5 + 9.75)
        assert not peer.closing, "closed before the idle timeout"
        await b.at(13.5 + 10.0)
        assert peer.closing and not peer.aborted, "an idle connection is closed gracefully"

    run(main)


def test_a_peer_that_takes_no_answers_is_cut_off() -> None:
    async def main() -> None:
        b = bench(current(), idle_timeout=10.0)
        peer = b.connect(high=256)
        peer.send(query(f"mail.{ZONE}", "AAAA") * 10)  # more answers than it will take
        assert peer.paused and not peer.reading
        await b.at(9.9)
        assert not peer.closing
        await b.at(10.0)
        # A graceful close would wait for the peer to read: it never would.
        assert peer.aborted and peer.lost

    run(main)


# -- how many ---------------------------------------------------------------------------------


def test_connections_over_the_per_client_cap_are_closed_at_once() -> None:
    async def main() -> None:
        b = bench(current(), max_per_client=3, max_connections=100)
        mine = [b.connect(CLIENT) for _ in range(5)]
        assert [t.closing for t in mine] == [False, False, False, True, True]
        other = b.connect(OTHER)
        assert not other.closing, "another address has its own allowance"
        assert b.connections.per_client == {CLIENT: 3, OTHER: 1}
        await turns()
        mine[0].send(query())
        mine[0].read()
        assert len(mine[0].messages()) == 1
        mine[1].abort()  # the client closes one: it may open another
        await turns()
        assert not b.connect(CLIENT).closing

    run(main)


def test_when_full_the_connection_stalled_longest_gives_way() -> None:
    async def main() -> None:
        b = bench(current(), max_connections=3, max_per_client=10)
        idle = b.connect("192.0.2.1")  # open since 0, nothing sent
        await b.at(0.5)
        slow = b.connect("192.0.2.2")
        slow.send(query()[:5])  # mid-message since 0.5
        await b.at(0.8)
        busy = b.connect("192.0.2.3")
        await b.at(1.0)
        busy.send(query())  # answered at 1.0: its last progress
        busy.read()
        newcomer = b.connect("192.0.2.4")
        assert idle.closing and not newcomer.closing, "the oldest stall did not give way"
        await b.at(1.2)
        assert not b.connect("192.0.2.5").closing
        assert slow.closing and not busy.closing
        assert len(b.connections.open) == 3

    run(main)


def test_connections_answering_transfers_are_not_taken(transfers: TransferService) -> None:
    async def main() -> None:
        b = bench(current(), transfers, max_connections=2, max_per_client=10)
        axfr = framed(dns.message.make_query(ZONE, "AXFR").to_wire())
        first, second = b.connect(CLIENT, high=256), b.connect(OTHER, high=256)
        first.send(axfr)  # neither peer reads: both transfers wait on their buffers
        second.send(axfr)
        await turns()
        assert first.paused and second.paused
        late = b.connect("192.0.2.30")
        assert late.closing and not first.closing and not second.closing
        for peer in (first, second):
            await take_all(peer, whole_transfer(peer), "the AXFR")
            rrs = [rr for m in peer.messages() for rr in m.answer]
            assert rrs[0].rdtype == rrs[-1].rdtype == dns.rdatatype.SOA

    run(main)


# -- flow control -----------------------------------------------------------------------------


def test_a_pipeline_that_is_not_read_stops_being_read() -> None:
    async def main() -> None:
        b = bench(current())
        peer = b.connect(high=1024)
        count = 2000
        peer.send(b"".join(query(f"mail.{ZONE}", "AAAA", qid=i) for i in range(count)))
        assert not peer.reading, "still reading with its answers piling up"
        held_back = len(b.connections.open and next(iter(b.connections.open)).buffer)
        assert held_back > 0, "every query was answered into the buffer"
        assert peer.most_pending < 1024 + 512, "more than one answer over the mark"
        while peer.frames() < count:
            peer.read()
            await turns()
        assert [m.id for m in peer.messages()] == list(range(count)), "order or loss"
        assert peer.most_pending < 1024 + 512
        assert peer.reading

    run(main)


def test_messages_behind_a_transfer_are_held_at_the_pipeline_depth(
    transfers: TransferService,
) -> None:
    async def main() -> None:
        b = bench(current(), transfers, pipeline_depth=8)
        peer = b.connect(CLIENT, high=256)
        axfr = framed(dns.message.make_query(ZONE, "AXFR").to_wire())
        peer.send(axfr + b"".join(query(qid=i) for i in range(100)))
        handler = next(iter(b.connections.open))
        assert len(handler.queued) == 8 and not peer.reading, "queued beyond the depth"
        assert len(handler.buffer) > 0, "the rest stays unread"
        await turns()
        assert peer.paused and len(handler.queued) <= 8

        def all_answered() -> bool:
            return [m.id for m in peer.messages()][-1:] == [99]

        await take_all(peer, all_answered, "every query behind the transfer")
        ids = [m.id for m in peer.messages() if m.question[0].rdtype == dns.rdatatype.A]
        assert ids == list(range(100)), "the queries after the transfer, in order"

    run(main)


def test_transfers_per_client_wait_their_turn(transfers: TransferService) -> None:
    async def main() -> None:
        b = bench(current(), transfers, transfers_per_client=1)
        axfr = framed(dns.message.make_query(ZONE, "AXFR").to_wire())
        first, second = b.connect(CLIENT, high=256), b.connect(CLIENT, high=256)
        other = b.connect(OTHER, high=256)
        for peer in (first, second, other):
            peer.send(axfr)
        await turns()
        assert first.pending and other.pending, "the first of each client runs"
        assert not second.pending, "a second transfer to the same client ran at once"
        await take_all(first, whole_transfer(first), "the first transfer")
        await until(lambda: bool(second.pending), "the waiting transfer to start")
        await take_all(second, whole_transfer(second), "the second transfer")

    run(main)


def test_refused_transfers_pipelined_are_each_answered(transfers: TransferService) -> None:
    async def main() -> None:
        b = bench(current(), transfers, pipeline_depth=16)
        peer = b.connect("192.0.2.99")  # not a secondary
        axfr = dns.message.make_query(ZONE, "AXFR")
        wires = []
        for i in range(300):
            axfr.id = i
            wires.append(framed(axfr.to_wire()))
        peer.send(b"".join(wires))
        handler = next(iter(b.connections.open))
        for _ in range(1000):
            assert len(handler.queued) <= 16
            await turns(1)
            peer.read()
            if len(peer.messages()) == 300:
                break
        answers = peer.messages()
        assert [m.id for m in answers] == list(range(300))
        assert {m.rcode() for m in answers} == {dns.rcode.REFUSED}

    run(main)


# -- the rate-limited log ---------------------------------------------------------------------


def test_log_lines_are_limited_per_reason_with_a_summary(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock(0.0)
    logger = logging.getLogger("zonefan.test.lograte")
    limiter = LogLimiter(logger, lines=3, interval=60.0, clock=clock)
    with caplog.at_level(logging.INFO, logger=logger.name):
        written = [limiter.info("refused", "refused %d", i) for i in range(100)]
        assert limiter.info("other", "another reason")
        clock.now = 59.9
        assert not limiter.info("refused", "still suppressed")
        clock.now = 60.0
        assert limiter.info("refused", "refused again")
    assert written == [True] * 3 + [False] * 97
    assert [r.getMessage() for r in caplog.records] == [
        "refused 0",
        "refused 1",
        "refused 2",
        "another reason",
        "98 similar log lines (refused) suppressed: at most 3 per 60 s",
        "refused again",
    ]


def test_log_flush_writes_what_was_suppressed(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock(0.0)
    logger = logging.getLogger("zonefan.test.lograte")
    limiter = LogLimiter(logger, lines=1, interval=10.0, clock=clock)
    with caplog.at_level(logging.INFO, logger=logger.name):
        for _ in range(5):
            limiter.info("closed", "closed")
        limiter.flush()
        limiter.flush()
    assert [r.getMessage() for r in caplog.records] == [
        "closed",
        "4 similar log lines (closed) suppressed: at most 1 per 10 s",
    ]


def test_log_limiter_refuses_a_limit_that_lets_nothing_through() -> None:
    with pytest.raises(ValueError, match="at least one line"):
        LogLimiter(logging.getLogger("x"), lines=0)
