"""One worker thread with its own store connection, for the parts of ``zonefan serve``
that read or write the store off the event loop (the store follower, transfers, DNSSEC
maintenance, UPDATE, NOTIFY status): SQLite connections stay in the thread that opened
them, and the loop never waits on the disk."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from nameserver.store.store import Store

P = ParamSpec("P")
T = TypeVar("T")


class StoreThread:
    """A single worker thread owning one lazily opened :class:`Store`."""

    def __init__(self, path: str | os.PathLike[str], name: str) -> None:
        self._path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"zonefan-{name}")
        self._store: Store | None = None

    @property
    def store(self) -> Store:
        """The thread's store (opened on first use; call only from work run here)."""
        if self._store is None:
            self._store = Store(self._path)
        return self._store

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn`` in the thread and wait for it without blocking the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    def submit(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Queue ``fn`` in the thread without waiting."""
        return self._executor.submit(fn, *args, **kwargs)

    def close(self) -> None:
        """Finish queued work, close the store connection and stop the thread."""

        def shut() -> None:
            if self._store is not None:
                self._store.close()
                self._store = None

        self._executor.submit(shut).result()
        self._executor.shutdown()
