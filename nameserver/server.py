"""The authoritative DNS server: UDP and TCP listeners on asyncio (uvloop when present)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import math
import os
import signal
import socket
from collections import deque
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import dns.name
import dns.rdatatype

from nameserver.dnssec.maintenance import MaintenanceScheduler
from nameserver.dnssec.manager import DnssecManager, ManagerFactory
from nameserver.edit.updatepolicy import UpdatePolicy
from nameserver.errors import NameserverError
from nameserver.serve.counts import Activity, QueryCounts, answer_slot
from nameserver.serve.lograte import LogLimiter, flush_all
from nameserver.serve.responder import Responder
from nameserver.serve.rrl import RateLimiter, RrlSettings
from nameserver.store.loader import StoreFollower
from nameserver.store.logs import NotifyRecord
from nameserver.store.store import Store
from nameserver.store.storethread import StoreThread
from nameserver.store.versions import ZoneVersions
from nameserver.transfer.acl import TransferAcl
from nameserver.transfer.health_reports import HealthReports
from nameserver.transfer.notify import Notifier, NotifyStatus, NotifyTarget
from nameserver.transfer.tsig import Keyring, tsig_offset
from nameserver.transfer.update_service import UpdateService, is_update
from nameserver.transfer.xfr import TransferService, transfer_qtype
from nameserver.zone.records import decode_rdata
from nameserver.zone.snapshot import ZoneSnapshot
from nameserver.zone.wirename import key_of
from nameserver.zone.zones import ZoneRegistry
from settings import Address

if TYPE_CHECKING:  # the metrics library is loaded only when metrics are served
    from prometheus_client.registry import Collector, CollectorRegistry

log = logging.getLogger(__name__)
_limited = LogLimiter(log)  # lines a client can cause

SOA_TYPE = int(dns.rdatatype.SOA)
# UDP UPDATE answers in flight: referenced so they are not collected mid-way, and bounded
# so a flood of UPDATEs cannot queue without end (a dropped one is retried by its client).
_background: set[asyncio.Task[None]] = set()
MAX_PENDING_UPDATES = 256
# UDP answers held for the end of one read burst (libuv reads up to 32 datagrams a poll);
# past this they are sent at once, so the queue stays small whatever the loop does.
MAX_PENDING_UDP_ANSWERS = 64

# TCP limits (RFC 7766 §6.2.3 and §10; the README's limits table lists them). Defaults in
# the spirit of NSD (tcp-count 100, tcp-timeout 120 s) and Knot (tcp-idle-timeout 10 s,
# tcp-io-timeout 500 ms): a connection that sends no complete message, or takes no answer,
# is closed within seconds, whatever it trickles in.
TCP_IDLE_TIMEOUT = 10.0  # seconds without an outstanding query before a connection is closed
TCP_MESSAGE_TIMEOUT = 2.0  # seconds from the first octet of a message to its last
TCP_MAX_CONNECTIONS = 512
TCP_MAX_PER_CLIENT = 16  # open connections per client address: 512 / 32
TCP_PIPELINE_DEPTH = 32  # messages read but waiting behind a transfer or UPDATE
TRANSFERS_PER_CLIENT = 4  # concurrent AXFR/IXFR per client address; more wait their turn
# Output queued in a connection's transport before it stops reading that connection's
# queries (asyncio's defaults, set explicitly: a peer that does not read holds this much).
TCP_WRITE_HIGH = 64 * 1024
TCP_WRITE_LOW = 16 * 1024
TCP_BACKLOG = 1024  # pending connections in the kernel while the event loop is busy
_YIELD_EVERY = 64  # queued messages answered between turns of the event loop


@dataclass(frozen=True)
class ServerConfig:
    """What ``zonefan serve`` needs to run."""

    store_path: str
    listen: Sequence[tuple[str, int]]
    tcp_idle_timeout: float = TCP_IDLE_TIMEOUT
    tcp_max_connections: int = TCP_MAX_CONNECTIONS
    poll_interval: float = 0.01  # seconds between checks for commits by other processes
    # Signed zones are maintained (key events, signature refresh) when this is given.
    dnssec: ManagerFactory | None = None
    # Zone transfers: TSIG keys and the [[secondary]] entries allowed to transfer.
    tsig_keys: Keyring = field(default_factory=dict)
    transfer_acl: TransferAcl = field(default_factory=TransferAcl)
    # Changesets kept per zone in the journal (older ones are compacted away after each
    # change and every compact_interval seconds); None keeps them all.
    journal_keep: int | None = None
    compact_interval: float = 300.0
    # RFC 2136 UPDATE: per-zone policies (a zone without one refuses every UPDATE).
    update_policies: Mapping[dns.name.Name, UpdatePolicy] = field(default_factory=dict)
    # Further NOTIFY targets of a zone, asked at every NOTIFY (a sidecar in this process,
    # whose listener may bind after the server starts).
    notify_extra: Callable[[dns.name.Name], list[NotifyTarget]] | None = None
    # The response cache's budget in bytes (0: none); None sizes it to the served zones.
    cache_size: int | None = None

    # TCP limits beyond the two above (see the TCP_* constants).
    tcp_message_timeout: float = TCP_MESSAGE_TIMEOUT
    tcp_max_per_client: int = TCP_MAX_PER_CLIENT
    tcp_pipeline_depth: int = TCP_PIPELINE_DEPTH
    transfers_per_client: int = TRANSFERS_PER_CLIENT
    # Response rate limiting of UDP answers (ratelimit 0: off).
    rrl: RrlSettings = field(default_factory=RrlSettings)
    # Prometheus: the server's collector is registered here while it runs (None: no
    # metrics). Whoever passes it serves it (the CLI's ``--metrics`` endpoint).
    metrics: CollectorRegistry | None = None
    # What the workers report for the metrics (commits, signing, NOTIFY); given, so that a
    # companion committing in the same process (the pools' health checks) counts in it.
    activity: Activity = field(default_factory=Activity)
    # Health-check reports of remote checkers, by TSIG-signed UPDATE (see
    # nameserver.transfer.health_reports); None refuses them.
    health_reports: HealthReports | None = None

    def tcp_limits(self) -> TcpLimits:
        """The TCP settings as the connection table takes them."""
        return TcpLimits(
            idle_timeout=self.tcp_idle_timeout,
            message_timeout=self.tcp_message_timeout,
            max_connections=self.tcp_max_connections,
            max_per_client=self.tcp_max_per_client,
            pipeline_depth=self.tcp_pipeline_depth,
            transfers_per_client=self.transfers_per_client,
        )


class UdpHandler(asyncio.DatagramProtocol):
    """One UDP socket. The cache hit is inlined: it is nearly every query under load."""

    def __init__(
        self,
        responder: Responder,
        transfers: TransferService | None = None,
        updates: UpdateService | None = None,
        rrl: RateLimiter | None = None,
        counts: QueryCounts | None = None,
    ) -> None:
        self.responder = responder
        self.transfers = transfers
        self.updates = updates
        self.rrl = rrl
        self.counts = counts if counts is not None else QueryCounts()
        self.answers = self.counts.udp  # one attribute read per answer (see metrics)
        self.transport: asyncio.DatagramTransport | None = None
        # Answers waiting for the end of the datagrams read in one go (see _flush).
        self._pending: list[tuple[bytes, tuple[str | int, ...]]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio's interfaces without subclassing them.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        hit = self.responder.cache.exact.get(data[2:])
        if hit is not None:
            response: bytes | None = data[:2] + hit
        else:
            try:
                response = None
                if self.updates is not None and is_update(data):
                    if len(_background) >= MAX_PENDING_UPDATES:
                        _limited.log(
                            logging.WARNING,
                            "update-pending",
                            "UPDATE from %s dropped: too many pending",
                            addr[0],
                        )
                        return
                    client = (str(addr[0]), int(addr[1]))
                    task = asyncio.get_running_loop().create_task(self._update(data, client, addr))
                    _background.add(task)
                    task.add_done_callback(_background.discard)
                    return
                if self.transfers is not None and transfer_qtype(data) is not None:
                    response = self.transfers.udp_response(data, (str(addr[0]), int(addr[1])))
                elif self.transfers is not None and (offset := tsig_offset(data)) is not None:
                    response = self.transfers.signed_response(
                        data, offset, self._udp_answer, tcp=False
                    )
                else:
                    response = self.responder.respond(data, tcp=False)
            except Exception:  # a bug must cost one answer, never the server
                log.exception("failed to answer a UDP query from %s", addr)
                return
        if response is not None and self.rrl is not None:
            response = self.rrl.limit(addr, data, response)
        if response is not None and self.transport is not None:
            self.answers[response[3]] += 1  # counts.answer_slot, inlined
            pending = self._pending
            pending.append((response, addr))
            if len(pending) == 1:
                asyncio.get_running_loop().call_soon(self._flush)
            elif len(pending) >= MAX_PENDING_UDP_ANSWERS:
                self._flush()  # the call_soon above then finds nothing to send
        else:
            self.counts.udp_unanswered += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self._pending.clear()
        self.transport = None

    def _flush(self) -> None:
        """Send the answers queued since the loop last turned: in a burst, one wake-up of
        the receiving process serves them all (one sendto each still)."""
        pending, self._pending = self._pending, []
        if self.transport is not None:
            sendto = self.transport.sendto
            for response, addr in pending:
                sendto(response, addr)

    def _udp_answer(self, data: bytes) -> bytes | None:
        return self.responder.respond(data, tcp=False)

    async def _update(
        self, data: bytes, client: tuple[str, int], addr: tuple[str | int, ...]
    ) -> None:
        assert self.updates is not None
        try:
            response = await self.updates.respond(data, client)
        except Exception:
            log.exception("failed to answer an UPDATE from %s", client[0])
            response = None
        if response is not None and self.transport is not None:
            self.answers[answer_slot(response)] += 1
            self.transport.sendto(response, addr)
        else:
            self.counts.udp_unanswered += 1

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP error: %s", exc)


@dataclass(frozen=True)
class TcpLimits:
    """The TCP limits of one server (every listener shares them)."""

    idle_timeout: float = TCP_IDLE_TIMEOUT
    message_timeout: float = TCP_MESSAGE_TIMEOUT
    max_connections: int = TCP_MAX_CONNECTIONS
    max_per_client: int = TCP_MAX_PER_CLIENT
    pipeline_depth: int = TCP_PIPELINE_DEPTH
    transfers_per_client: int = TRANSFERS_PER_CLIENT

    @property
    def check_every(self) -> float:
        """The longest a connection's timer sleeps. A deadline that starts while it sleeps
        (a message's first octet, the peer no longer reading) is at least this far away,
        so reads never have to re-arm the timer: the read path stays cheap. At least 0.1 s
        (a zero timeout, RFC 7766 §6.2.3's "close at once", is then kept within that)."""
        return max(0.1, min(self.idle_timeout, self.message_timeout))


class TcpConnections:
    """The open TCP connections of one server: the caps in total and per client address,
    which connection gives way when every slot is taken, and the per-client transfer slots.

    RFC 7766 §10 asks for a limit on connections in total and allows one per client; when
    the total is reached, the connection that made no progress for the longest is closed
    (§6.2.3: a server under attack may close idle connections at once), so that whoever
    holds the slots cannot keep new clients out. One answering a transfer or an UPDATE is
    never chosen; if every one is, the new connection is closed instead."""

    def __init__(self, limits: TcpLimits) -> None:
        self.limits = limits
        self.open: dict[TcpHandler, None] = {}  # an insertion-ordered set
        self.per_client: dict[str, int] = {}
        self._transfers: dict[str, int] = {}
        self._waiting: dict[str, deque[asyncio.Future[None]]] = {}

    def admit(self, conn: TcpHandler, now: float) -> bool:
        """Count ``conn`` in, making room if needed; False: close it at once."""
        client = conn.peer[0]
        count = self.per_client.get(client, 0)
        if count >= self.limits.max_per_client:
            _limited.info(
                "TCP per-client limit",
                "TCP connection from %s closed: %d are open from there "
                "(tcp-max-connections-per-client)",
                client,
                count,
            )
            return False
        if len(self.open) >= self.limits.max_connections:
            victim = self.victim()
            if victim is None:
                _limited.info(
                    "TCP limit",
                    "TCP connection from %s closed: all %d connections are answering "
                    "transfers or UPDATEs (tcp-max-connections)",
                    client,
                    len(self.open),
                )
                return False
            _limited.info(
                "TCP limit",
                "%d TCP connections open (tcp-max-connections): closed the one from %s, "
                "stalled for %.1f s, to let %s in",
                len(self.open),
                victim.peer[0],
                now - (victim.stalled_since() or now),
                client,
            )
            victim.drop()
        self.open[conn] = None
        self.per_client[client] = count + 1
        return True

    def remove(self, conn: TcpHandler) -> None:
        """Count ``conn`` out (again is harmless)."""
        if conn not in self.open:
            return
        del self.open[conn]
        client = conn.peer[0]
        count = self.per_client[client] - 1
        if count:
            self.per_client[client] = count
        else:
            del self.per_client[client]

    def victim(self) -> TcpHandler | None:
        """The connection stalled for the longest: mid-message, not taking its answers, or
        idle; None when every one is answering a transfer or an UPDATE."""
        chosen, oldest = None, math.inf
        for conn in self.open:
            since = conn.stalled_since()
            if since is not None and since < oldest:
                chosen, oldest = conn, since
        return chosen

    async def transfer_slot(self, client: str) -> None:
        """Take one of ``client``'s transfer slots, waiting in line while all are in use: a
        client cannot make the server walk many zones at once, and a secondary that asks for
        more only waits (BIND limits outgoing transfers to 10 in all, transfers-out, and its
        secondaries ask a primary for 2 at a time, transfers-per-ns). Returns without
        suspending when a slot is free: a refused request costs no turn of the loop."""
        running = self._transfers.get(client, 0)
        if running < self.limits.transfers_per_client:
            self._transfers[client] = running + 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(client, deque()).append(waiter)
        try:
            await waiter  # release_transfer hands its slot over
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release_transfer(client)
            raise

    def release_transfer(self, client: str) -> None:
        """Give back a slot taken with :meth:`transfer_slot`: to the next in line, if any."""
        waiting = self._waiting.get(client)
        while waiting:
            waiter = waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                if not waiting:
                    del self._waiting[client]
                return
        self._waiting.pop(client, None)
        running = self._transfers[client] - 1
        if running:
            self._transfers[client] = running
        else:
            del self._transfers[client]


class TcpHandler(asyncio.Protocol):
    """One TCP connection: length-prefixed messages, answered in order (pipelining, RFC 7766
    §6.2.1.1), with the limits of :class:`TcpLimits`.

    Deadlines (one timer per connection, see :meth:`_deadline`): a message must arrive
    whole within the message timeout of its first octet, however it trickles in (a byte
    every second does not keep a connection; Knot's tcp-io-timeout works the same way); a
    connection with nothing outstanding is closed after the idle timeout (RFC 7766 §6.2.3);
    a peer that takes none of its answers for the idle timeout is cut off.

    Flow control: while the transport holds more than TCP_WRITE_HIGH octets of answers,
    the connection is not read (its queries stay in the kernel, the peer's window closes);
    while more than the pipeline depth of messages wait behind a transfer or UPDATE, the
    same. A client that pipelines queries and never reads costs a bounded buffer."""

    def __init__(
        self,
        responder: Responder,
        connections: TcpConnections,
        transfers: TransferService | None = None,
        updates: UpdateService | None = None,
        counts: QueryCounts | None = None,
    ) -> None:
        self.responder = responder
        self.counts = counts if counts is not None else QueryCounts()
        self.connections = connections
        self.limits = connections.limits
        self.transfers = transfers
        self.updates = updates
        self.loop = asyncio.get_running_loop()
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.peer: tuple[str, int] = ("", 0)
        # Progress, in the loop's time: the last message taken or answered (idleness is
        # measured from there), the first octet of a message not yet whole, the moment the
        # transport's buffer went over its high-water mark (None: not the case).
        self.active = 0.0
        self.partial_since: float | None = None
        self.paused_since: float | None = None
        self.held = False  # the pipeline is full: read no more until it drains
        self.taking = True  # reading: neither paused nor held nor closing
        # Transfers and UPDATEs are answered by ``worker``; messages that come meanwhile
        # wait in ``queued`` (answers stay in order). A transfer writes only while the
        # transport takes more (``writable``).
        self.worker: asyncio.Task[None] | None = None
        self.queued: deque[bytes] = deque()
        self.writable = asyncio.Event()
        self.writable.set()
        self.closing = False
        self.closed = False

    # -- the connection -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = self.transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.peer = (str(peer[0]), int(peer[1]))
        self.transport.set_write_buffer_limits(high=TCP_WRITE_HIGH, low=TCP_WRITE_LOW)
        now = self.active = self.loop.time()
        if not self.connections.admit(self, now):
            self.closing, self.taking = True, False
            self.transport.close()
            return
        self.timer = self.loop.call_at(now + self.limits.check_every, self._check)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = self.closed = True
        self.taking = False
        self.connections.remove(self)
        self.queued.clear()
        self.writable.set()  # a transfer waiting to write finds the connection gone
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def pause_writing(self) -> None:
        self.writable.clear()
        self.paused_since = self.loop.time()
        self._set_reading()

    def resume_writing(self) -> None:
        self.writable.set()
        self.paused_since = None
        self._set_reading()

    def _set_reading(self) -> None:
        """Read or stop reading, as the output buffer and the pipeline allow."""
        taking = self.paused_since is None and not self.held and not self.closing
        if taking == self.taking:
            return
        self.taking = taking
        if self.closing or self.transport is None:
            return
        if not taking:
            self.transport.pause_reading()
            return
        self.transport.resume_reading()
        if self.partial_since is not None:
            self.partial_since = self.loop.time()  # we held the message up, not the peer
        if self.buffer:
            self.loop.call_soon(self._parse)  # what arrived before the pause

    def _close(self) -> None:
        """End the stream once what is written has been sent."""
        if not self.closing and self.transport is not None:
            self.closing = True
            self.taking = False
            self.transport.close()

    def drop(self) -> None:
        """Close at once: a deadline passed, or the connection gives way to a new one. Output
        not yet sent is discarded (a graceful close would wait for a peer that may never
        read, holding the slot)."""
        self.connections.remove(self)
        self.closing = True
        self.taking = False
        if self.transport is not None:
            if self.transport.get_write_buffer_size():
                self.transport.abort()
            else:
                self.transport.close()

    # -- deadlines ------------------------------------------------------------------------

    def stalled_since(self) -> float | None:
        """Since when the connection has made no progress; None while it answers a
        transfer or an UPDATE (those are not cut short to make room)."""
        if self.worker is not None or self.closing:
            return None
        if self.paused_since is not None:
            return self.paused_since
        if self.partial_since is not None:
            return self.partial_since
        return self.active

    def _deadline(self) -> tuple[float, str]:
        """When the connection is to be closed if nothing changes, and why."""
        limits = self.limits
        if self.paused_since is not None:
            return self.paused_since + limits.idle_timeout, "took none of its answers"
        if self.closing:
            return math.inf, ""
        if self.partial_since is not None and self.taking:
            return self.partial_since + limits.message_timeout, "sent no whole message"
        if self.worker is None:
            return self.active + limits.idle_timeout, ""  # idle: normal, not logged
        return math.inf, ""

    def _check(self) -> None:
        self.timer = None
        if self.closed:
            return
        now = self.loop.time()
        deadline, why = self._deadline()
        if now < deadline:
            self.timer = self.loop.call_at(
                min(deadline, now + self.limits.check_every), self._check
            )
            return
        if why:
            _limited.info(
                "TCP deadline",
                "TCP connection from %s closed: it %s in %g s",
                self.peer[0],
                why,
                now - (self.paused_since or self.partial_since or now),
            )
        self.drop()

    # -- messages -------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._parse()

    def _parse(self) -> None:
        """Take the whole messages in the buffer, as far as flow control lets."""
        buffer = self.buffer
        taken = False
        while self.taking:
            size = len(buffer)
            if size < 2:
                break
            end = 2 + (buffer[0] << 8 | buffer[1])
            if size < end:
                break
            message = bytes(buffer[2:end])
            del buffer[:end]
            taken = True
            if self.worker is None:
                self._answer(message)
                continue
            self.queued.append(message)
            if len(self.queued) >= self.limits.pipeline_depth:
                self.held = True
                self._set_reading()
        if taken or (buffer and self.partial_since is None):
            now = self.loop.time()
            if taken:
                self.active = now
            self.partial_since = now if buffer else None

    def _answer(self, message: bytes) -> None:
        if (self.updates is not None and is_update(message)) or (
            self.transfers is not None and transfer_qtype(message) is not None
        ):
            # Answered over several turns of the loop: later messages wait behind it.
            self.queued.append(message)
            self.worker = self.loop.create_task(self._work())
            return
        self._reply(message)

    def _reply(self, message: bytes) -> None:
        """Answer a query (anything but a transfer or an UPDATE) at once."""
        try:
            if self.transfers is not None and (offset := tsig_offset(message)) is not None:
                response = self.transfers.signed_response(message, offset, self._tcp_answer)
            else:
                response = self.responder.respond(message, tcp=True)
        except Exception:
            log.exception("failed to answer a TCP query from %s", self.peer[0])
            response = None
        if response is None:
            self.counts.tcp_unanswered += 1
            self._close()  # nothing sensible to say: end the stream
            return
        if self.transport is not None and not self.closing:
            self.counts.tcp[answer_slot(response)] += 1
            self.transport.write(len(response).to_bytes(2, "big") + response)

    def _tcp_answer(self, data: bytes) -> bytes | None:
        return self.responder.respond(data, tcp=True)

    async def _work(self) -> None:
        """Answer the queued messages in order, until none is left. A deque: each message
        costs O(1) however many wait, and the connection's deadlines keep running."""
        queued = self.queued
        answered = 0
        try:
            while queued and not self.closing:
                if not self.writable.is_set():
                    await self.writable.wait()  # the peer is not reading: make no more
                    continue
                message = queued.popleft()
                if self.held and len(queued) <= self.limits.pipeline_depth // 2:
                    self.held = False
                    self._set_reading()
                if self.updates is not None and is_update(message):
                    await self._update(message)
                elif self.transfers is not None and transfer_qtype(message) is not None:
                    await self._transfer(message)
                else:
                    self._reply(message)
                answered += 1
                if answered % _YIELD_EVERY == 0:
                    await asyncio.sleep(0)  # refusals come fast: let others have a turn
        finally:
            self.worker = None
            if not self.closed:
                self.active = self.loop.time()

    async def _transfer(self, message: bytes) -> None:
        assert self.transfers is not None
        client = self.peer[0]
        await self.connections.transfer_slot(client)
        try:
            if self.closing:
                return
            handled = await self.transfers.serve_tcp(message, self.peer, self._write)
        except Exception:
            log.exception("zone transfer to %s failed", client)
            self._close()
            return
        finally:
            self.connections.release_transfer(client)
        if not handled and not self.closing:
            self._plain(message)

    async def _update(self, message: bytes) -> None:
        assert self.updates is not None
        try:
            response = await self.updates.respond(message, self.peer)
        except Exception:
            log.exception("failed to answer an UPDATE from %s", self.peer[0])
            response = None
        if response is not None and await self._write(response):
            self.counts.tcp[answer_slot(response)] += 1
        else:
            self.counts.tcp_unanswered += 1

    def _plain(self, message: bytes) -> None:
        """A transfer query the transfer service left to the responder (malformed)."""
        try:
            response = self.responder.respond(message, tcp=True)
        except Exception:
            log.exception("failed to answer a TCP query from %s", self.peer[0])
            response = None
        if self.transport is not None and response is not None and not self.closing:
            self.counts.tcp[answer_slot(response)] += 1
            self.transport.write(len(response).to_bytes(2, "big") + response)
        else:
            self.counts.tcp_unanswered += 1

    async def _write(self, wire: bytes) -> bool:
        """Write one message of a transfer (or an UPDATE's answer) once the transport takes
        more; False when the connection is gone."""
        await self.writable.wait()
        if self.closing or self.transport is None or self.transport.is_closing():
            return False
        self.transport.write(len(wire).to_bytes(2, "big") + wire)
        return True


class ListenError(NameserverError):
    """A listen address that cannot be bound; the message says why and what to do."""


# What to do about the usual reasons a bind fails.
_BIND_ADVICE = {
    errno.EADDRINUSE: "another server is using this port, pick another with --listen",
    errno.EACCES: "ports below 1024 need root or CAP_NET_BIND_SERVICE; listen on a higher "
    "port with --listen (and map or forward port 53 to it)",
    errno.EADDRNOTAVAIL: "this host has no interface with that address; pick one of its "
    "addresses, or 0.0.0.0 / [::] for all, with --listen",
    errno.EAFNOSUPPORT: "this host has no IPv6 (or no IPv4); leave that address out of --listen",
}


def bind_listener(host: str, port: int, kind: socket.SocketKind) -> socket.socket:
    """A non-blocking UDP (``SOCK_DGRAM``) or TCP (``SOCK_STREAM``) socket bound to host:port.

    IPv6 sockets are IPv6-only (IPV6_V6ONLY), whatever the host's net.ipv6.bindv6only: a
    ``[::]`` listener then does not also claim the IPv4 port, so it can run beside a
    ``0.0.0.0`` one (asyncio sets the option for TCP servers, not for datagram endpoints).
    TCP sockets reuse the address (a restart is not blocked by connections in TIME_WAIT);
    UDP sockets do not, since on Linux that would let two servers share the port unnoticed.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock: socket.socket | None = None
    try:
        sock = socket.socket(family, kind)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.setblocking(False)
    except OSError as e:
        if sock is not None:
            sock.close()
        proto = "TCP" if kind == socket.SOCK_STREAM else "UDP"
        reason = e.strerror or str(e)
        advice = _BIND_ADVICE.get(e.errno or 0)
        raise ListenError(
            f"cannot listen on {Address(host, port)} ({proto}): {reason}"
            + (f"; {advice}" if advice else "")
        ) from e
    return sock


class Server:
    """Listeners plus the store follower that keeps the served zones current."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.registry = ZoneRegistry()
        self.responder = Responder(self.registry, config.cache_size)
        self.rrl = RateLimiter(config.rrl, self.registry) if config.rrl.enabled else None
        self.follower = StoreFollower(config.store_path, self.registry)
        self.transfers = TransferService(
            self.registry, config.store_path, config.tsig_keys, config.transfer_acl
        )
        self.tcp = TcpConnections(config.tcp_limits())
        self.counts = QueryCounts()
        self.activity = config.activity
        self._collector: Collector | None = None  # registered in config.metrics by start()
        self._compact_task: asyncio.Task[None] | None = None
        self._closers: list[asyncio.BaseTransport | asyncio.base_events.Server] = []
        self._follow_task: asyncio.Task[None] | None = None
        self.maintenance: MaintenanceScheduler | None = None
        self._maintenance_task: asyncio.Task[None] | None = None
        self.updates: UpdateService | None = None
        if config.dnssec is not None:
            self.updates = UpdateService(
                config.store_path,
                config.tsig_keys,
                config.update_policies,
                self._managed,
                shared=self.served,
                health_reports=config.health_reports,
            )
        self.notifier = Notifier(self._notify_targets, on_status=self._record_notify)
        self._status = StoreThread(config.store_path, "status")
        self._notified: dict[bytes, int] = {}

    def _managed(self, store: Store, versions: ZoneVersions) -> DnssecManager:
        """A DNSSEC manager of ``config.dnssec`` whose signing and commits are counted."""
        assert self.config.dnssec is not None
        return counted(self.config.dnssec, self.activity)(store, versions)

    def _notify_targets(self, origin: dns.name.Name) -> list[NotifyTarget]:
        cfg = self.config
        targets = cfg.transfer_acl.notify_targets(origin, cfg.tsig_keys)
        if cfg.notify_extra is not None:
            targets += cfg.notify_extra(origin)
        return list(dict.fromkeys(targets))  # one NOTIFY per address and port

    async def start(self) -> None:
        """Bind every listen address (a taken port fails before any zone is loaded), load
        every zone, then serve (answers never come from a half load).

        Raises :class:`ListenError` when an address cannot be bound."""
        cfg = self.config
        bound: list[tuple[str, int, socket.socket, socket.socket]] = []
        try:
            for host, port in cfg.listen:
                udp_sock = bind_listener(host, port, socket.SOCK_DGRAM)
                try:
                    tcp_sock = bind_listener(host, port, socket.SOCK_STREAM)
                except ListenError:
                    udp_sock.close()
                    raise
                bound.append((host, port, udp_sock, tcp_sock))
            await self.follower.refresh()
        except BaseException:
            for _, _, udp_sock, tcp_sock in bound:
                udp_sock.close()
                tcp_sock.close()
            raise
        loop = asyncio.get_running_loop()
        # Every TCP listener first: whoever has had an answer over UDP (a readiness probe, a
        # truncated answer) can then connect over TCP at once, on any address.
        for _, _, _, tcp_sock in bound:
            tcp = await loop.create_server(
                lambda: TcpHandler(
                    self.responder, self.tcp, self.transfers, self.updates, self.counts
                ),
                sock=tcp_sock,
                backlog=TCP_BACKLOG,
            )
            self._closers.append(tcp)
        for host, port, udp_sock, _ in bound:
            udp, _ = await loop.create_datagram_endpoint(
                lambda: UdpHandler(
                    self.responder, self.transfers, self.updates, self.rrl, self.counts
                ),
                sock=udp_sock,
            )
            self._closers.append(udp)
            log.info("listening on %s (UDP and TCP)", Address(host, port))
        self._follow_task = asyncio.create_task(self.follower.follow(cfg.poll_interval))
        if cfg.journal_keep is not None:
            self._compact_task = asyncio.create_task(self._compact(cfg.journal_keep))
        self.registry.on_change(self._notify_new_serials)
        self._notify_new_serials()  # at start too: secondaries check what they hold
        if cfg.metrics is not None:
            from nameserver.serve.metrics import ServerCollector

            self._collector = ServerCollector(
                self.registry, self.counts, self.activity, self.rrl, lambda: len(self.tcp.open)
            )
            cfg.metrics.register(self._collector)
        if cfg.dnssec is not None:
            self.maintenance = MaintenanceScheduler(
                cfg.store_path, self._managed, shared=self.served
            )
            self._maintenance_task = asyncio.create_task(self.maintenance.run())

    async def stop(self) -> None:
        """Close listeners, the store follower and the maintenance scheduler."""
        if self.config.metrics is not None and self._collector is not None:
            self.config.metrics.unregister(self._collector)
            self._collector = None
        self.follower.stop()
        if self.maintenance is not None:
            self.maintenance.stop()
        for task in (self._follow_task, self._maintenance_task, self._compact_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.maintenance is not None:
            self.maintenance.close()
        if self.updates is not None:
            self.updates.close()
        await self.notifier.close()
        self._status.close()
        for closer in self._closers:
            closer.close()
        self.follower.close()
        self.transfers.close()
        flush_all()  # what the log limits held back is counted in the log

    def served(self, origin: dns.name.Name) -> ZoneSnapshot | None:
        """The snapshot being served for ``origin`` (shared with the maintenance and UPDATE
        workers, so a zone is held in memory once)."""
        return self.registry.get(key_of(origin))

    def _record_notify(
        self, origin: dns.name.Name, target: NotifyTarget, status: NotifyStatus
    ) -> None:
        """Keep the latest NOTIFY state in the store, for `zonefan zone status`, and in
        the metrics."""
        self.activity.notify_attempt(
            origin.to_text(), str(target), status.acked is not None, bool(status.error)
        )
        record = NotifyRecord(
            origin,
            str(target),
            status.serial,
            status.attempts,
            status.first_sent,
            status.last_sent,
            status.acked,
            status.error,
        )
        self._status.submit(self._write_notify, record)

    def _write_notify(self, record: NotifyRecord) -> None:
        try:
            self._status.store.record_notify(record)
        except NameserverError as e:
            log.warning("could not record NOTIFY status of %s: %s", record.zone, e)

    def _notify_new_serials(self) -> None:
        """NOTIFY the secondaries of every zone whose served serial changed."""
        for origin in self.registry.origins():
            zone = self.registry.get(origin)
            if zone is None or self._notified.get(origin) == zone.serial:
                continue
            self._notified[origin] = zone.serial
            soa = zone.rrset(origin, SOA_TYPE)
            if soa is not None:
                rdata = decode_rdata(SOA_TYPE, soa.rdatas[0])
                self.notifier.serial_changed(zone.origin_name, rdata, soa.ttl)

    async def _compact(self, keep: int) -> None:
        """Keep at most ``keep`` changesets per zone in the journal: after every new serial
        served, and every compact_interval seconds (changes by other processes)."""
        loop = asyncio.get_running_loop()
        changed = asyncio.Event()
        changed.set()
        self.registry.on_change(changed.set)
        store: Store | None = None

        def compact() -> None:
            nonlocal store
            if store is None:
                store = Store(self.config.store_path)
            for zone in store.zone_names():
                gone = store.compact_journal(zone, keep)
                if gone:
                    log.info("journal of %s compacted: %d changesets removed", zone, gone)

        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), self.config.compact_interval)
                changed.clear()
                try:
                    await loop.run_in_executor(None, compact)
                except Exception:
                    log.exception("journal compaction failed; will retry")
        finally:
            if store is not None:
                store.close()


# A coroutine run beside the server once it listens, cancelled when the server stops (the
# CLI's `serve --sync` runs the sync sidecar this way; this package does not know it).
Companion = Callable[[], Coroutine[Any, Any, None]]


async def run_forever(
    config: ServerConfig,
    ready: asyncio.Event | None = None,
    companions: Sequence[Companion] = (),
) -> None:
    """Serve until SIGINT or SIGTERM."""
    server = Server(config)
    await server.start()
    if ready is not None:
        ready.set()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    zones = len(server.registry.origins())
    log.info("zonefan serving %d zone(s), pid %d", zones, os.getpid())
    tasks = [asyncio.create_task(companion()) for companion in companions]
    for task in tasks:
        task.add_done_callback(lambda t: _companion_ended(t, stop))
    await stop.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await server.stop()


def _companion_ended(task: asyncio.Task[None], stop: asyncio.Event) -> None:
    """A companion that fails stops the whole process, with its error in the log."""
    if not task.cancelled() and task.exception() is not None:
        log.error("stopping: %s", task.exception())
        stop.set()


def serve(config: ServerConfig, companions: Sequence[Companion] = ()) -> None:
    """Run the server in a fresh event loop (uvloop when installed)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(run_forever(config, companions=companions))
        return
    uvloop.run(run_forever(config, companions=companions))


def counted(factory: ManagerFactory, activity: Activity) -> ManagerFactory:
    """``factory`` with its managers' signing steps and commits reported to ``activity``."""

    def make(store: Store, versions: ZoneVersions) -> DnssecManager:
        manager = factory(store, versions)
        manager.on_signed = activity.signed
        manager.on_commit = activity.committed
        return manager

    return make
