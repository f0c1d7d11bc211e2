"""Record-level changes to an immutable :class:`ZoneData`, costing the size of the change:
what an IXFR (RFC 1995) does to the local copy.

Only the RRsets a change touches are rebuilt; the others are shared with the base zone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from sync.errors import SyncError
from sync.model import WIRE_TYPES, RRset, RRsetKey, ZoneData, canonical_of_wire, rdtype_of

RecordData = bytes | dns.rdata.Rdata  # uncompressed wire (types in WIRE_TYPES) or parsed


class EditError(SyncError):
    """A change that does not apply to the zone (a record deleted that it does not hold)."""


@dataclass
class _Records:
    """One RRset being edited: its records by canonical form (uncompressed wire, original
    case, as the values) and its TTL."""

    ttl: int
    wires: dict[bytes, bytes]


@dataclass
class ZoneEdit:
    """Deletions and additions of single records against ``base``, in order; :meth:`result`
    is the new zone. RRSIGs of an owner form one RRset, as in :class:`ZoneData`."""

    base: ZoneData
    _touched: dict[RRsetKey, _Records] = field(default_factory=dict)

    def delete(self, owner: dns.name.Name, rdtype: int, rdata: RecordData) -> None:
        """Remove one record, which must be in the zone as it is by now."""
        records = self._records(owner, rdtype)
        canonical = _canonical(rdtype, rdata)
        if records.wires.pop(canonical, None) is None:
            kind = dns.rdatatype.to_text(rdtype_of(rdtype))
            raise EditError(f"deletes {owner} {kind} {_text(rdtype, rdata)}, which is not there")

    def add(self, owner: dns.name.Name, rdtype: int, ttl: int, rdata: RecordData) -> None:
        """Add one record (again: no change). The RRset's TTL becomes the smaller of its own
        and ``ttl``, or ``ttl`` when it was empty: what dnspython's zones do."""
        records = self._records(owner, rdtype)
        records.ttl = min(records.ttl, ttl) if records.wires else ttl
        records.wires[_canonical(rdtype, rdata)] = _wire(rdata)

    def result(self) -> ZoneData:
        """The zone after every change so far."""
        rrsets = dict(self.base.rrsets)
        for key, records in self._touched.items():
            if records.wires:
                owner, rdtype = key
                rrsets[key] = RRset.from_wires(owner, rdtype, records.ttl, records.wires.values())
            else:
                rrsets.pop(key, None)
        return ZoneData(self.base.origin, rrsets)

    def _records(self, owner: dns.name.Name, rdtype: int) -> _Records:
        key = (owner, rdtype_of(rdtype))
        records = self._touched.get(key)
        if records is None:
            old = self.base.rrsets.get(key)
            if old is None:
                records = _Records(0, {})
            else:
                # wire_set() and wires() are both in the RRset's canonical order.
                records = _Records(old.ttl, dict(zip(old.wire_set(), old.wires(), strict=True)))
            self._touched[key] = records
        return records


def _canonical(rdtype: int, rdata: RecordData) -> bytes:
    if isinstance(rdata, bytes):
        if rdtype not in WIRE_TYPES:
            raise ValueError(f"type {rdtype} rdata given as wire bytes")
        return canonical_of_wire(rdtype, rdata)
    return rdata.to_digestable()


def _wire(rdata: RecordData) -> bytes:
    if isinstance(rdata, bytes):
        return rdata
    wire = rdata.to_wire()
    assert wire is not None  # None only when writing to a file
    return wire


def _text(rdtype: int, rdata: RecordData) -> str:
    if isinstance(rdata, bytes):
        rdata = dns.rdata.from_wire(dns.rdataclass.IN, rdtype_of(rdtype), rdata, 0, len(rdata))
    return rdata.to_text()
