"""Is every copy of a zone current? The primary's own record of what each secondary was
told (NOTIFY, acknowledged or not) and what it fetched (its newest transfer), judged
against the zone's serial: what `zonefan zone status` shows and an auditor asks."""

from __future__ import annotations

from dataclasses import dataclass

import dns.name

from nameserver.store.logs import NotifyRecord, TransferLogEntry
from nameserver.store.store import Store


@dataclass(frozen=True)
class NotifiedCopy:
    """A secondary NOTIFY goes to: current when it acknowledged the zone's serial."""

    record: NotifyRecord
    current: bool


@dataclass(frozen=True)
class TransferredCopy:
    """A client's newest transfer: current when it completed at the zone's serial."""

    entry: TransferLogEntry
    current: bool


@dataclass(frozen=True)
class ZoneCopies:
    zone: dns.name.Name
    serial: int
    notified: tuple[NotifiedCopy, ...]
    transferred: tuple[TransferredCopy, ...]

    @property
    def all_current(self) -> bool:
        return all(c.current for c in self.notified) and all(c.current for c in self.transferred)


def zone_copies(store: Store, zone: dns.name.Name) -> ZoneCopies:
    """The copies of ``zone`` the primary knows of, each judged against its serial."""
    serial = store.serial(zone)
    notified = tuple(
        NotifiedCopy(n, n.serial == serial and n.acked is not None)
        for n in store.notify_status(zone)
    )
    transferred = tuple(
        TransferredCopy(t, t.serial_to == serial and not t.error)
        for t in store.last_transfers(zone)
    )
    return ZoneCopies(zone, serial, notified, transferred)
