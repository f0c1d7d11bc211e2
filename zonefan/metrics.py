"""``--metrics ADDR:PORT``: Prometheus metrics over HTTP, on the process's event loop.

Why here: the collectors live with what they measure (:mod:`nameserver.metrics` for the
server, :mod:`sync.metrics` for the sidecar), each depending only on its own package and
``prometheus_client``; the HTTP endpoint that serves a registry of them is the CLI's, the
composition root, which alone may hold the server and the sidecar at once (``serve --sync``
serves both on one endpoint). A further part of the process (health-checked pools, drills)
registers its own ``prometheus_client`` Collector in the same :class:`CollectorRegistry`
and is served with the rest; nothing here changes for it.

The endpoint faces whoever can reach it, so it is bounded like the DNS listeners: it runs
on the event loop (aiohttp's low-level server; never a thread per connection), holds at
most ``max_connections`` (a new one closes the oldest), closes each connection after
``lifetime`` seconds whatever it does, refuses request lines and headers over a few KiB and
never reads a body. A scrape's work is bounded too: the collectors read precomputed values
(counters, the served zones' serials and signature expirations), and the rendered text is
reused for ``reuse`` seconds, so scraping in a loop costs at most one rendering a second.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from typing import Any

import click
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from prometheus_client import GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry

from settings import Address

log = logging.getLogger(__name__)

PATH = "/metrics"
MAX_CONNECTIONS = 16
LIFETIME = 10.0  # seconds a connection may stay open: a scrape takes milliseconds
REUSE = 1.0  # seconds a rendered scrape is served again
MAX_LINE = 2048  # octets of the request line (and of one header line)
MAX_HEADERS = 32


class MetricsError(click.ClickException):
    """The metrics endpoint cannot listen (the message says where and why)."""


class _Server(web.Server):
    """aiohttp's server, counting its connections from the moment each is accepted."""

    def __init__(self, endpoint: MetricsEndpoint, **kwargs: Any) -> None:
        super().__init__(endpoint.handle, **kwargs)
        self.endpoint = endpoint

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        self.endpoint.opened.pop(handler, None)
        super().connection_lost(handler, exc)


class MetricsEndpoint:
    """``GET /metrics`` of ``registry`` at ``address`` while started."""

    def __init__(
        self,
        registry: CollectorRegistry,
        address: Address,
        *,
        max_connections: int = MAX_CONNECTIONS,
        lifetime: float = LIFETIME,
        reuse: float = REUSE,
        clock: Callable[[], float] = time.monotonic,
        sock: socket.socket | None = None,
    ) -> None:
        self.registry = registry
        self.sock = sock  # bound to ``address`` already (see :func:`bind`), else bound by start
        self.address = address
        self.max_connections = max_connections
        self.lifetime = lifetime
        self.reuse = reuse
        self.clock = clock
        # Open connections and when each was accepted (the loop's time), oldest first.
        self.opened: dict[RequestHandler, float] = {}
        self.port = address.port
        self._server: _Server | None = None
        self._listener: asyncio.base_events.Server | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._rendered: dict[str, tuple[float, bytes, str]] = {}

    async def start(self) -> None:
        """Listen; raises :class:`MetricsError` when the address cannot be bound."""
        loop = asyncio.get_running_loop()
        self._server = _Server(
            self,
            keepalive_timeout=self.lifetime,
            max_line_size=MAX_LINE,
            max_field_size=MAX_LINE,
            max_headers=MAX_HEADERS,
            lingering_time=0,  # a body is never read: close rather than drain it
            access_log=None,
        )
        sock = self.sock if self.sock is not None else bind(self.address)
        self._listener = await loop.create_server(
            self._accept, sock=sock, backlog=self.max_connections
        )
        self.port = self._listener.sockets[0].getsockname()[1]
        self._sweeper = loop.call_later(self.lifetime / 4, self._sweep)
        log.info("metrics at http://%s%s", Address(self.address.host, self.port), PATH)

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._listener is not None:
            self._listener.close()
        for handler in list(self.opened):
            handler.force_close()
        self.opened.clear()
        if self._listener is not None:
            await self._listener.wait_closed()

    def _accept(self) -> RequestHandler:
        """A protocol for a new connection; the oldest one gives way when all are taken
        (whoever holds the slots idle cannot keep a scraper out)."""
        assert self._server is not None
        while len(self.opened) >= self.max_connections:
            oldest = next(iter(self.opened))
            del self.opened[oldest]
            oldest.force_close()
        handler = self._server()
        self.opened[handler] = asyncio.get_running_loop().time()
        return handler

    def _sweep(self) -> None:
        """Close the connections open longer than ``lifetime`` (a trickled request, an idle
        keep-alive), then look again in a while."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        for handler, since in list(self.opened.items()):
            if now - since < self.lifetime:
                break  # oldest first: the rest are younger
            del self.opened[handler]
            handler.force_close()
        self._sweeper = loop.call_later(self.lifetime / 4, self._sweep)

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.path != PATH:
            return web.Response(status=404, text=f"not found; metrics are at {PATH}\n")
        if request.method not in ("GET", "HEAD"):
            return web.Response(status=405, headers={"Allow": "GET, HEAD"})
        body, content_type = self.render(request.headers.get("Accept", ""))
        return web.Response(body=body, headers={"Content-Type": content_type})

    def render(self, accept: str) -> tuple[bytes, str]:
        """The registry in the format ``accept`` asks for (OpenMetrics or Prometheus text),
        rendered at most once per ``reuse`` seconds for each format."""
        encoder, content_type = choose_encoder(accept)
        now = self.clock()
        cached = self._rendered.get(content_type)
        if cached is not None and now - cached[0] < self.reuse:
            return cached[1], content_type
        body = encoder(self.registry)
        if len(self._rendered) > 8:  # formats are few; an odd Accept must not grow this
            self._rendered.clear()
        self._rendered[content_type] = (now, body, content_type)
        return body, content_type


def new_registry() -> CollectorRegistry:
    """A registry with the process's own metrics (CPU, memory, open files; Python's
    garbage collector and version), to which the server and the sidecar add theirs."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def bind(address: Address) -> socket.socket:
    """A TCP socket bound to ``address``, before anything else starts: a taken port fails
    the command at once with :class:`MetricsError`."""
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address.host, address.port))
        sock.setblocking(False)
    except OSError as e:
        sock.close()
        raise MetricsError(
            f"cannot serve metrics on {address}: {e.strerror or e}; pick another address or "
            "port with --metrics"
        ) from None
    return sock


async def serve_metrics(
    registry: CollectorRegistry, address: Address, sock: socket.socket | None = None
) -> None:
    """Serve ``registry`` at ``address`` (on ``sock`` when bound already) until cancelled."""
    endpoint = MetricsEndpoint(registry, address, sock=sock)
    await endpoint.start()
    try:
        await asyncio.Event().wait()
    finally:
        await endpoint.stop()
