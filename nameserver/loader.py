"""Keeping the served zones equal to the store: initial load, then following its journal.

Runs its SQLite reads in one worker thread with its own connection; the event loop only
installs finished snapshots, so a large reload never stalls the query path.
"""

from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor

import dns.name

from nameserver.errors import JournalError
from nameserver.snapshot import ZoneSnapshot
from nameserver.store import Store
from nameserver.wirename import key_of, to_text
from nameserver.zones import ZoneRegistry

log = logging.getLogger(__name__)

Update = tuple[bytes, ZoneSnapshot | None]  # origin key, new snapshot or None for "removed"


class StoreFollower:
    """Builds snapshots from the store and installs them into a registry."""

    def __init__(self, store_path: str | os.PathLike[str], registry: ZoneRegistry) -> None:
        self._path = store_path
        self._registry = registry
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="zonefan-store")
        self._store: Store | None = None
        self._data_version: int | None = None

    def _open(self) -> Store:
        if self._store is None:
            self._store = Store(self._path)
        return self._store

    async def refresh(self) -> int:
        """Bring every zone up to date with the store; returns how many zones changed."""
        served = {o: self._registry.get(o) for o in self._registry.origins()}
        loop = asyncio.get_running_loop()
        updates = await loop.run_in_executor(self._executor, self._collect, served)
        for origin, snapshot in updates:
            if snapshot is None:
                self._registry.remove(origin)
                log.info("zone %s removed", to_text(origin))
            else:
                self._registry.install(snapshot)
                log.info("serving %s serial %d", snapshot.origin_name, snapshot.serial)
        return len(updates)

    async def follow(self, interval: float = 0.1) -> None:
        """Poll for commits by other processes, refreshing when the store changed."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            changed = await loop.run_in_executor(self._executor, self._store_changed)
            if changed:
                try:
                    await self.refresh()
                except Exception:  # keep serving the last good versions, and say why
                    log.exception("could not load changes from the store; will retry")
                    self._data_version = None

    def close(self) -> None:
        """Stop the worker thread and close the store connection."""

        def shut() -> None:
            if self._store is not None:
                self._store.close()
                self._store = None

        self._executor.submit(shut).result()
        self._executor.shutdown()

    # -- worker thread ------------------------------------------------------------------

    def _store_changed(self) -> bool:
        version = self._open().data_version()
        changed = version != self._data_version
        self._data_version = version
        return changed

    def _collect(self, served: dict[bytes, ZoneSnapshot | None]) -> list[Update]:
        store = self._open()
        self._data_version = store.data_version()
        serials = store.zone_serials()
        wanted = {key_of(name): name for name in serials}
        updates: list[Update] = [(o, None) for o in served if o not in wanted]
        for origin, name in wanted.items():
            current = served.get(origin)
            if current is not None and current.serial == serials[name]:
                continue
            updates.append((origin, self._next_version(store, name, current)))
        return updates

    def _next_version(
        self, store: Store, name: dns.name.Name, current: ZoneSnapshot | None
    ) -> ZoneSnapshot:
        """Patch ``current`` along the journal when it reaches; else load the zone whole."""
        if current is not None:
            try:
                snapshot = current
                for cs in store.changesets_between(name, current.serial):
                    snapshot = snapshot.patched(cs.removed, cs.added)
                return snapshot
            except JournalError:
                pass
        return ZoneSnapshot.from_rows(name, store.rows(name))
