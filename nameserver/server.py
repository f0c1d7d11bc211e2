"""The authoritative DNS server: UDP and TCP listeners on asyncio (uvloop when present)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import dns.name
import dns.rdatatype

from nameserver.acl import TransferAcl
from nameserver.errors import NameserverError
from nameserver.loader import StoreFollower
from nameserver.maintenance import MaintenanceScheduler, ManagerFactory
from nameserver.notify import Notifier, NotifyStatus, NotifyTarget
from nameserver.responder import Responder
from nameserver.snapshot import ZoneSnapshot, decode_rdata
from nameserver.store import NotifyRecord, Store
from nameserver.storethread import StoreThread
from nameserver.tsig import Keyring, tsig_offset
from nameserver.update_service import UpdateService, is_update
from nameserver.updatepolicy import UpdatePolicy
from nameserver.wirename import key_of
from nameserver.xfr import TransferService, transfer_qtype
from nameserver.zones import ZoneRegistry
from settings import Address

log = logging.getLogger(__name__)

SOA_TYPE = int(dns.rdatatype.SOA)
# UDP UPDATE answers in flight: referenced so they are not collected mid-way, and bounded
# so a flood of UPDATEs cannot queue without end (a dropped one is retried by its client).
_background: set[asyncio.Task[None]] = set()
MAX_PENDING_UPDATES = 256

TCP_IDLE_TIMEOUT = 10.0  # seconds; RFC 7766 §6.2.3 asks servers to close idle connections
TCP_MAX_CONNECTIONS = 512


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


class UdpHandler(asyncio.DatagramProtocol):
    """One UDP socket. The cache hit is inlined: it is nearly every query under load."""

    def __init__(
        self,
        responder: Responder,
        transfers: TransferService | None = None,
        updates: UpdateService | None = None,
    ) -> None:
        self.responder = responder
        self.transfers = transfers
        self.updates = updates
        self.transport: asyncio.DatagramTransport | None = None

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
                        log.warning("UPDATE from %s dropped: too many pending", addr[0])
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
        if response is not None and self.transport is not None:
            self.transport.sendto(response, addr)

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
            return
        if response is not None and self.transport is not None:
            self.transport.sendto(response, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP error: %s", exc)


class TcpHandler(asyncio.Protocol):
    """One TCP connection: length-prefixed messages, answered in order (pipelining, RFC 7766
    §6.2.1.1), closed after an idle period."""

    open_connections = 0

    def __init__(
        self,
        responder: Responder,
        idle_timeout: float,
        max_connections: int,
        transfers: TransferService | None = None,
        updates: UpdateService | None = None,
    ) -> None:
        self.responder = responder
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.transfers = transfers
        self.updates = updates
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.peer: tuple[str, int] = ("", 0)
        # A zone transfer in progress: later queries wait in ``queued`` (answers stay in
        # order), and writes wait while the transport's buffer is full (flow control).
        self.transfer: asyncio.Task[None] | None = None
        self.queued: list[bytes] = []
        self.writable = asyncio.Event()
        self.writable.set()
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = self.transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.peer = (str(peer[0]), int(peer[1]))
        TcpHandler.open_connections += 1
        if TcpHandler.open_connections > self.max_connections:
            self.transport.close()
            return
        self._arm_timer()

    def _arm_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(self.idle_timeout, self._idle)

    def _idle(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= 2:
            length = int.from_bytes(self.buffer[:2], "big")
            if len(self.buffer) < 2 + length:
                break
            message = bytes(self.buffer[2 : 2 + length])
            del self.buffer[: 2 + length]
            if self.transfer is not None:
                self.queued.append(message)
            else:
                self._answer(message)
        if self.transfer is None:
            self._arm_timer()

    def _answer(self, message: bytes) -> None:
        if self.updates is not None and is_update(message):
            # Like a transfer: answered later, later queries on the connection wait.
            self.transfer = asyncio.get_running_loop().create_task(self._update(message))
            return
        if self.transfers is not None and transfer_qtype(message) is not None:
            if self.timer is not None:
                self.timer.cancel()  # a long transfer is not idleness
            self.transfer = asyncio.get_running_loop().create_task(self._transfer(message))
            return
        try:
            if self.transfers is not None and (offset := tsig_offset(message)) is not None:
                response = self.transfers.signed_response(message, offset, self._tcp_answer)
            else:
                response = self.responder.respond(message, tcp=True)
        except Exception:
            log.exception("failed to answer a TCP query")
            response = None
        if response is None:
            if self.transport is not None:
                self.transport.close()  # nothing sensible to say: end the stream
            return
        if self.transport is not None:
            self.transport.write(len(response).to_bytes(2, "big") + response)

    async def _transfer(self, message: bytes) -> None:
        assert self.transfers is not None
        try:
            handled = await self.transfers.serve_tcp(message, self.peer, self._write)
        except Exception:
            log.exception("zone transfer to %s failed", self.peer[0])
            handled = True
            if self.transport is not None:
                self.transport.close()
        self.transfer = None
        if self.closed:
            return
        if not handled:
            self._plain(message)
        self._drain_queue()

    async def _update(self, message: bytes) -> None:
        assert self.updates is not None
        try:
            response = await self.updates.respond(message, self.peer)
        except Exception:
            log.exception("failed to answer an UPDATE from %s", self.peer[0])
            response = None
        if response is not None and not self.closed:
            await self._write(response)
        self.transfer = None
        if not self.closed:
            self._drain_queue()

    def _drain_queue(self) -> None:
        queued, self.queued = self.queued, []
        for i, later in enumerate(queued):
            self._answer(later)
            if self.transfer is not None:  # another long answer: the rest waits for it
                self.queued = queued[i + 1 :] + self.queued
                return
        self._arm_timer()

    def _tcp_answer(self, data: bytes) -> bytes | None:
        return self.responder.respond(data, tcp=True)

    def _plain(self, message: bytes) -> None:
        try:
            response = self.responder.respond(message, tcp=True)
        except Exception:
            log.exception("failed to answer a TCP query")
            response = None
        if self.transport is not None and response is not None:
            self.transport.write(len(response).to_bytes(2, "big") + response)

    async def _write(self, wire: bytes) -> bool:
        """Write one message of a transfer once the transport takes more; False when the
        connection is gone."""
        await self.writable.wait()
        if self.closed or self.transport is None or self.transport.is_closing():
            return False
        self.transport.write(len(wire).to_bytes(2, "big") + wire)
        return True

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        TcpHandler.open_connections -= 1
        self.closed = True
        self.writable.set()  # a transfer waiting to write finds the connection gone
        if self.timer is not None:
            self.timer.cancel()


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
        self.follower = StoreFollower(config.store_path, self.registry)
        self.transfers = TransferService(
            self.registry, config.store_path, config.tsig_keys, config.transfer_acl
        )
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
                config.dnssec,
                shared=self.served,
            )
        self.notifier = Notifier(self._notify_targets, on_status=self._record_notify)
        self._status = StoreThread(config.store_path, "status")
        self._notified: dict[bytes, int] = {}

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
        for host, port, udp_sock, tcp_sock in bound:
            udp, _ = await loop.create_datagram_endpoint(
                lambda: UdpHandler(self.responder, self.transfers, self.updates), sock=udp_sock
            )
            self._closers.append(udp)
            tcp = await loop.create_server(
                lambda: TcpHandler(
                    self.responder,
                    cfg.tcp_idle_timeout,
                    cfg.tcp_max_connections,
                    self.transfers,
                    self.updates,
                ),
                sock=tcp_sock,
            )
            self._closers.append(tcp)
            log.info("listening on %s (UDP and TCP)", Address(host, port))
        self._follow_task = asyncio.create_task(self.follower.follow(cfg.poll_interval))
        if cfg.journal_keep is not None:
            self._compact_task = asyncio.create_task(self._compact(cfg.journal_keep))
        self.registry.on_change(self._notify_new_serials)
        self._notify_new_serials()  # at start too: secondaries check what they hold
        if cfg.dnssec is not None:
            self.maintenance = MaintenanceScheduler(cfg.store_path, cfg.dnssec, shared=self.served)
            self._maintenance_task = asyncio.create_task(self.maintenance.run())

    async def stop(self) -> None:
        """Close listeners, the store follower and the maintenance scheduler."""
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

    def served(self, origin: dns.name.Name) -> ZoneSnapshot | None:
        """The snapshot being served for ``origin`` (shared with the maintenance and UPDATE
        workers, so a zone is held in memory once)."""
        return self.registry.get(key_of(origin))

    def _record_notify(
        self, origin: dns.name.Name, target: NotifyTarget, status: NotifyStatus
    ) -> None:
        """Keep the latest NOTIFY state in the store, for `zonefan zone status`."""
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
