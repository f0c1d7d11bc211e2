"""An HTTP reverse proxy for tests that puts faults between the sidecar and a provider
API (real, or an emulator): the provider down, HTTP 500, HTTP 429 with Retry-After, a
request that hangs past the client's timeout, or one answered only after a while. Faults
can wait for the Nth request (``after``), so one lands in the middle of a large push. It
runs an aiohttp server in its own thread on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from sync.providers.testkit.serve import AppThread


@dataclass
class Fault:
    """What the next ``count`` requests get instead of the provider's answer."""

    kind: str  # "down" (connection closed), "500", "429", "hang", "slow" (then forwarded)
    count: int
    retry_after: float = 1
    method: str | None = None  # only requests of this method (None: any)
    after: int = 0  # requests (of that method) let through before the fault starts


@dataclass
class FaultProxy:
    """Forwards every request to ``upstream`` (``http://127.0.0.1:PORT``) unless a fault is
    queued. ``log`` records (method, path, status) for every request seen, ``arrived`` the
    time (``time.monotonic``) each of those requests arrived, in the same order."""

    upstream: str
    hang_seconds: float = 30.0
    port: int = 0
    faults: list[Fault] = field(default_factory=list)
    log: list[tuple[str, str, int]] = field(default_factory=list)
    arrived: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server = AppThread(self._handle, "fault proxy", self.port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        self._server.start()
        self.port = self._server.port
        return self

    def stop(self) -> None:
        self._server.stop()

    def inject(
        self,
        kind: str,
        count: int = 1,
        retry_after: float = 1,
        method: str | None = None,
        after: int = 0,
    ) -> None:
        with self._lock:
            self.faults.append(Fault(kind, count, retry_after, method, after))

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()

    def _next_fault(self, method: str) -> Fault | None:
        with self._lock:
            if not self.faults or self.faults[0].method not in (None, method):
                return None
            fault = self.faults[0]
            if fault.after > 0:
                fault.after -= 1
                return None
            fault.count -= 1
            if fault.count <= 0:
                self.faults.pop(0)
            return fault

    def _record(self, request: web.Request, status: int, arrived: float) -> None:
        with self._lock:
            self.log.append((request.method, request.path, status))
            self.arrived.append(arrived)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        arrived = time.monotonic()
        fault = self._next_fault(request.method)
        body = await request.read()
        if fault is not None and fault.kind == "slow":  # a provider taking its time
            await asyncio.sleep(self.hang_seconds)
            fault = None
        if fault is not None:
            self._record(request, -1 if fault.kind == "down" else 0, arrived)
            if fault.kind == "down":
                assert request.transport is not None
                request.transport.close()
                return web.Response(status=500)
            if fault.kind == "hang":
                await asyncio.sleep(self.hang_seconds)
                return web.Response(status=504)
            if fault.kind == "429":
                return web.json_response(
                    {"error": "rate limited"},
                    status=429,
                    headers={"Retry-After": f"{fault.retry_after:g}"},
                )
            return web.json_response({"error": "injected server error"}, status=500)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        async with (
            aiohttp.ClientSession(auto_decompress=False) as session,
            session.request(
                request.method,
                self.upstream + request.path_qs,
                data=body,
                headers=headers,
                allow_redirects=False,
            ) as upstream,
        ):
            payload = await upstream.read()
            self._record(request, upstream.status, arrived)
            keep = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP}
            return web.Response(body=payload, status=upstream.status, headers=keep)


# Headers that belong to one connection, or that aiohttp sets for the body it sends.
_HOP = frozenset(
    {
        "host",
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
        "te",
        "trailer",
        "upgrade",
        "proxy-authorization",
        "proxy-authenticate",
    }
)
