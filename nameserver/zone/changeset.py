"""A changeset: one versioned change to one zone, the unit of the journal.

Like an IXFR difference sequence (RFC 1995 §4), ``removed`` holds the old SOA and ``added``
the new one, so the journal can serve IXFR and history without extra bookkeeping.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import dns.name
import dns.rdatatype

from nameserver.zone.records import AnyRecord


@dataclass(frozen=True)
class Changeset:
    """RRs removed and added between two serials of one zone, with who, when and why."""

    zone: dns.name.Name
    serial_before: int | None  # None: the zone is created by this changeset
    serial_after: int
    removed: tuple[AnyRecord, ...]
    added: tuple[AnyRecord, ...]
    author: str
    message: str
    time: float  # seconds since the epoch, UTC
    id: int | None = field(default=None, compare=False)  # assigned by the store

    @property
    def is_empty(self) -> bool:
        """True when nothing but the SOA changes."""
        return not any(r.rdtype != dns.rdatatype.SOA for r in (*self.removed, *self.added))
