"""The set of zones being served: finding the zone for a name and swapping versions."""

from __future__ import annotations

from collections.abc import Callable

import dns.rdatatype

from nameserver.zone.snapshot import ZoneSnapshot
from nameserver.zone.wirename import label_starts

DS = int(dns.rdatatype.DS)


class ZoneRegistry:
    """Served snapshots by origin key. Every update replaces the whole mapping in one
    assignment, so a reader holding the old mapping keeps a consistent view."""

    def __init__(self) -> None:
        self._zones: dict[bytes, ZoneSnapshot] = {}
        self._listeners: list[Callable[[], None]] = []

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after every swap (the responder drops its cached answers)."""
        self._listeners.append(listener)

    def install(self, snapshot: ZoneSnapshot) -> None:
        """Serve ``snapshot``, replacing any earlier version of the same zone."""
        zones = dict(self._zones)
        zones[snapshot.origin] = snapshot
        self._swap(zones)

    def remove(self, origin: bytes) -> None:
        """Stop serving the zone with this origin key."""
        if origin in self._zones:
            zones = dict(self._zones)
            del zones[origin]
            self._swap(zones)

    def _swap(self, zones: dict[bytes, ZoneSnapshot]) -> None:
        self._zones = zones
        for listener in self._listeners:
            listener()

    def get(self, origin: bytes) -> ZoneSnapshot | None:
        """The snapshot of the zone with this origin key."""
        return self._zones.get(origin)

    def origins(self) -> list[bytes]:
        """Origin keys of all served zones."""
        return list(self._zones)

    def find(self, qkey: bytes, qtype: int) -> ZoneSnapshot | None:
        """The most specific zone holding ``qkey``. A DS question at a zone's apex belongs to
        the parent side of the cut (RFC 4035 §3.1.4.1), so a served parent answers it."""
        zones = self._zones
        found: ZoneSnapshot | None = None
        for start in label_starts(qkey):
            zone = zones.get(qkey[start:])
            if zone is None:
                continue
            if start == 0 and qtype == DS and found is None:
                found = zone  # the child, unless a parent is served too
                continue
            return zone
        return found
