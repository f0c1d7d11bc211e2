"""The authoritative DNS server: UDP and TCP listeners on asyncio (uvloop when present)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from nameserver.loader import StoreFollower
from nameserver.maintenance import MaintenanceScheduler, ManagerFactory
from nameserver.responder import Responder
from nameserver.zones import ZoneRegistry

log = logging.getLogger(__name__)

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


class UdpHandler(asyncio.DatagramProtocol):
    """One UDP socket. The cache hit is inlined: it is nearly every query under load."""

    def __init__(self, responder: Responder) -> None:
        self.responder = responder
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio's interfaces without subclassing them.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        hit = self.responder.udp_cache.get(data[2:])
        if hit is not None:
            response: bytes | None = data[:2] + hit
        else:
            try:
                response = self.responder.respond(data, tcp=False)
            except Exception:  # a bug must cost one answer, never the server
                log.exception("failed to answer a UDP query from %s", addr)
                return
        if response is not None and self.transport is not None:
            self.transport.sendto(response, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP error: %s", exc)


class TcpHandler(asyncio.Protocol):
    """One TCP connection: length-prefixed messages, answered in order (pipelining, RFC 7766
    §6.2.1.1), closed after an idle period."""

    open_connections = 0

    def __init__(self, responder: Responder, idle_timeout: float, max_connections: int) -> None:
        self.responder = responder
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
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
            self._answer(message)
        self._arm_timer()

    def _answer(self, message: bytes) -> None:
        try:
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

    def connection_lost(self, exc: Exception | None) -> None:
        TcpHandler.open_connections -= 1
        if self.timer is not None:
            self.timer.cancel()


def parse_listen(text: str) -> tuple[str, int]:
    """``ADDR:PORT`` or ``[V6ADDR]:PORT`` to a host and port."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"listen address {text!r} must be ADDR:PORT, e.g. 127.0.0.1:5353")
    host = host.strip("[]")
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        raise ValueError(f"listen address {text!r}: {host!r} is not an IP address") from None
    return host, int(port)


class Server:
    """Listeners plus the store follower that keeps the served zones current."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.registry = ZoneRegistry()
        self.responder = Responder(self.registry)
        self.follower = StoreFollower(config.store_path, self.registry)
        self._closers: list[asyncio.BaseTransport | asyncio.base_events.Server] = []
        self._follow_task: asyncio.Task[None] | None = None
        self.maintenance: MaintenanceScheduler | None = None
        self._maintenance_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Load every zone, then open the listeners (answers never come from a half load)."""
        await self.follower.refresh()
        loop = asyncio.get_running_loop()
        cfg = self.config
        for host, port in cfg.listen:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            udp, _ = await loop.create_datagram_endpoint(
                lambda: UdpHandler(self.responder), local_addr=(host, port), family=family
            )
            self._closers.append(udp)
            tcp = await loop.create_server(
                lambda: TcpHandler(self.responder, cfg.tcp_idle_timeout, cfg.tcp_max_connections),
                host,
                port,
                family=family,
                reuse_address=True,
            )
            self._closers.append(tcp)
            log.info("listening on %s port %d (UDP and TCP)", host, port)
        self._follow_task = asyncio.create_task(self.follower.follow(cfg.poll_interval))
        if cfg.dnssec is not None:
            self.maintenance = MaintenanceScheduler(cfg.store_path, cfg.dnssec)
            self._maintenance_task = asyncio.create_task(self.maintenance.run())

    async def stop(self) -> None:
        """Close listeners, the store follower and the maintenance scheduler."""
        self.follower.stop()
        if self.maintenance is not None:
            self.maintenance.stop()
        for task in (self._follow_task, self._maintenance_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.maintenance is not None:
            self.maintenance.close()
        for closer in self._closers:
            closer.close()
        self.follower.close()


async def run_forever(config: ServerConfig, ready: asyncio.Event | None = None) -> None:
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
    await stop.wait()
    await server.stop()


def serve(config: ServerConfig) -> None:
    """Run the server in a fresh event loop (uvloop when installed)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(run_forever(config))
        return
    uvloop.run(run_forever(config))
