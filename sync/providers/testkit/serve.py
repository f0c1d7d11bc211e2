"""An aiohttp application served on 127.0.0.1 from a thread of its own: what the fault proxy
and the provider emulators run on, so a test's own event loop (or none) drives the client."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
START_TIMEOUT = 10.0
MAX_BODY = 64 * 1024 * 1024  # the largest request body taken (a large zone in one batch)


class AppThread:
    """Every request to ``handler``, on an ephemeral port (or ``port``). :meth:`start`
    returns once it listens; :meth:`stop` (in a ``finally``) closes it and ends the thread."""

    def __init__(self, handler: Handler, name: str, port: int = 0) -> None:
        self.handler = handler
        self.name = name
        self.port = port
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._runner: web.AppRunner | None = None
        self._failed: BaseException | None = None

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT) or self._failed is not None:
            raise RuntimeError(f"{self.name} did not start: {self._failed or 'timeout'}")

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        if self._runner is not None:
            runner = self._runner
            asyncio.run_coroutine_threadsafe(runner.cleanup(), self._loop).result(START_TIMEOUT)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(START_TIMEOUT)
        if not self._thread.is_alive():
            self._loop.close()

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            app = web.Application(client_max_size=MAX_BODY)
            app.router.add_route("*", "/{tail:.*}", self.handler)
            self._runner = web.AppRunner(app, access_log=None)
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", self.port)
            self._loop.run_until_complete(site.start())
            self.port = int(self._runner.addresses[0][1])
        except BaseException as exc:  # reported by start(), in the test's thread
            self._failed = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
