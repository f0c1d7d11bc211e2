"""Keeping the served zones equal to the store: initial load, then following its journal.

Runs its SQLite reads in one worker thread with its own connection; the event loop only
installs finished snapshots, so a large reload never stalls the query path.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time

from nameserver.store.storethread import StoreThread
from nameserver.store.versions import brought_forward
from nameserver.zone.snapshot import ZoneSnapshot
from nameserver.zone.wirename import key_of, to_text
from nameserver.zone.zones import ZoneRegistry

log = logging.getLogger(__name__)

Update = tuple[bytes, ZoneSnapshot | None]  # origin key, new snapshot or None for "removed"


class StoreFollower:
    """Builds snapshots from the store and installs them into a registry."""

    def __init__(self, store_path: str | os.PathLike[str], registry: ZoneRegistry) -> None:
        self._registry = registry
        self._thread = StoreThread(store_path, "store")
        self._data_version: int | None = None
        self._stopping = threading.Event()

    async def refresh(self) -> int:
        """Bring every zone up to date with the store; returns how many zones changed."""
        served = {o: self._registry.get(o) for o in self._registry.origins()}
        started = time.perf_counter()
        updates = await self._thread.run(self._collect, served)
        for origin, snapshot in updates:
            if snapshot is None:
                self._registry.remove(origin)
                log.info("zone %s removed", to_text(origin))
            else:
                self._registry.install(snapshot)
                took = (time.perf_counter() - started) * 1000
                log.info(
                    "serving %s serial %d (%.1f ms)", snapshot.origin_name, snapshot.serial, took
                )
        return len(updates)

    async def follow(self, interval: float = 0.01) -> None:
        """Follow commits by other processes: the worker thread polls SQLite's data
        version (a cheap pragma, no event-loop wakeup) and the loop refreshes on a change."""
        while not self._stopping.is_set():
            try:
                await self._thread.run(self._wait_for_change, interval)
                if not self._stopping.is_set():
                    await self.refresh()
            except Exception:  # keep serving the last good versions, and say why
                log.exception("could not load changes from the store; will retry")
                self._data_version = None
                await asyncio.sleep(1.0)

    def stop(self) -> None:
        """Make :meth:`follow`'s worker return soon (call before cancelling it)."""
        self._stopping.set()

    def close(self) -> None:
        """Stop the worker thread and close the store connection."""
        self._thread.close()

    # -- worker thread ------------------------------------------------------------------

    def _wait_for_change(self, interval: float) -> None:
        """Return once the store changed (or :meth:`stop` was called)."""
        store = self._thread.store
        while not self._stopping.wait(interval):
            version = store.data_version()
            if version != self._data_version:
                return

    def _collect(self, served: dict[bytes, ZoneSnapshot | None]) -> list[Update]:
        store = self._thread.store
        self._data_version = store.data_version()
        serials = store.zone_serials()
        wanted = {key_of(name): name for name in serials}
        updates: list[Update] = [(o, None) for o in served if o not in wanted]
        for origin, name in wanted.items():
            current = served.get(origin)
            if current is not None and current.serial == serials[name]:
                continue
            snapshot = brought_forward(store, name, current)
            # Here, off the event loop: a first call walks the zone (its metrics read it).
            snapshot.earliest_expiration()
            updates.append((origin, snapshot))
        return updates
