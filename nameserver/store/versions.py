"""The latest version of each zone in memory, brought forward along the journal.

Loading a 100k-name zone from its rows takes seconds; patching the previous snapshot
with the changesets committed since takes milliseconds. Both the server (which follows
commits from other processes) and a long-lived editor (maintenance in ``zonefan serve``,
and later UPDATE and the API) keep their snapshots this way.
"""

from __future__ import annotations

from collections.abc import Callable

import dns.name

from nameserver.errors import JournalError
from nameserver.store.store import Store
from nameserver.zone.changeset import Changeset
from nameserver.zone.snapshot import ZoneSnapshot


def brought_forward(
    store: Store, origin: dns.name.Name, current: ZoneSnapshot | None, serial: int | None = None
) -> ZoneSnapshot:
    """The zone at ``serial`` (default: its stored serial): ``current`` patched along the
    journal when the journal reaches back to it, else the zone loaded whole."""
    if current is not None:
        try:
            snapshot = current
            for cs in store.changesets_between(origin, current.serial, serial):
                snapshot = snapshot.patched(cs.removed, cs.added)
            return snapshot
        except JournalError:
            pass  # compacted past our version, or a version that was never committed
    return ZoneSnapshot.from_rows(origin, store.rows(origin))


SnapshotSource = Callable[[dns.name.Name], ZoneSnapshot | None]


class ZoneVersions:
    """The current snapshot of each zone of one store, kept warm across changes.

    ``shared``: where up-to-date snapshots may already be (the server's registry), so a
    long-lived editor in the server process starts from them instead of loading a second
    copy of every zone (snapshots are immutable, and patched versions share their nodes).
    """

    def __init__(self, store: Store, shared: SnapshotSource | None = None) -> None:
        self.store = store
        self._shared = shared
        self._latest: dict[dns.name.Name, ZoneSnapshot] = {}
        # A commit of ours not yet applied: applied on the next read, off the commit's path.
        self._pending: dict[dns.name.Name, tuple[ZoneSnapshot, Changeset]] = {}

    def current(self, origin: dns.name.Name) -> ZoneSnapshot:
        """The zone as the store holds it now (patched forward when others committed)."""
        serial = self.store.serial(origin)
        cached = self._cached(origin)
        if cached is None or cached.serial != serial:
            if self._shared is not None:
                shared = self._shared(origin)
                if shared is not None and (cached is None or shared.serial == serial):
                    cached = shared
            if cached is None or cached.serial != serial:
                cached = brought_forward(self.store, origin, cached, serial)
            self._latest[origin] = cached
        return cached

    def committed(self, before: ZoneSnapshot, changeset: Changeset) -> None:
        """Record that ``changeset`` was committed on top of ``before``."""
        self._latest.pop(before.origin_name, None)
        self._pending[before.origin_name] = (before, changeset)

    def forget(self, origin: dns.name.Name) -> None:
        """Drop what is kept for ``origin`` (a deleted or replaced zone)."""
        self._latest.pop(origin, None)
        self._pending.pop(origin, None)

    def _cached(self, origin: dns.name.Name) -> ZoneSnapshot | None:
        pending = self._pending.pop(origin, None)
        if pending is not None:
            before, cs = pending
            self._latest[origin] = before.patched(cs.removed, cs.added)
        return self._latest.get(origin)


def current_snapshot(
    store: Store, origin: dns.name.Name, versions: ZoneVersions | None
) -> ZoneSnapshot:
    """The zone as stored now: from ``versions`` when a long-lived caller keeps them warm,
    else loaded whole from its rows (a one-shot command)."""
    if versions is not None:
        return versions.current(origin)
    return ZoneSnapshot.from_rows(origin, store.rows(origin))
